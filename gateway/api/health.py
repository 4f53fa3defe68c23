"""Liveness and readiness: the only anonymous routes besides the OpenAPI documents."""

from __future__ import annotations

from litestar import Response, get
from litestar.status_codes import HTTP_200_OK, HTTP_503_SERVICE_UNAVAILABLE

from gateway.runtime import Runtime


@get("/health/live", tags=["health"], summary="The process is up", opt={"anonymous": True})
async def live() -> dict[str, str]:
    return {"status": "up"}


@get(
    "/health/ready",
    tags=["health"],
    summary="Store reachable and workers running",
    opt={"anonymous": True},
)
async def ready(runtime: Runtime) -> Response[dict[str, str]]:
    ok = runtime.started and await runtime.store.ping()
    return Response(
        {"status": "ready" if ok else "not-ready"},
        status_code=HTTP_200_OK if ok else HTTP_503_SERVICE_UNAVAILABLE,
    )


routes = [live, ready]
