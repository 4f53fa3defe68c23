"""Liveness and readiness: the only anonymous routes besides the OpenAPI documents.

Both answer a status only (load balancers call them without credentials); the per-system view
is ``GET /health/adapters`` (scope ``ops:read``).
"""

from __future__ import annotations

import asyncio

import structlog
from litestar import Response, get
from litestar.status_codes import HTTP_200_OK, HTTP_503_SERVICE_UNAVAILABLE

from gateway.errors import GatewayError
from gateway.runtime import Runtime

__all__ = ["live", "ready", "routes"]

#: a store that does not answer within this many seconds makes the instance not ready
READY_PING_TIMEOUT = 2.0

log = structlog.get_logger(__name__)


@get("/health/live", tags=["health"], summary="The process is up", opt={"anonymous": True})
async def live() -> dict[str, str]:
    return {"status": "up"}


async def _store_answers(runtime: Runtime) -> bool:
    try:
        return await asyncio.wait_for(runtime.store.ping(), READY_PING_TIMEOUT)
    except (TimeoutError, GatewayError, OSError) as exc:
        log.warning("health.store_unreachable", error=type(exc).__name__)
        return False


@get(
    "/health/ready",
    tags=["health"],
    summary="Store reachable and workers running",
    opt={"anonymous": True},
)
async def ready(runtime: Runtime) -> Response[dict[str, str]]:
    # started is set once the store is open and the workers and scheduler run
    ok = runtime.started and await _store_answers(runtime)
    return Response(
        {"status": "ready" if ok else "not-ready"},
        status_code=HTTP_200_OK if ok else HTTP_503_SERVICE_UNAVAILABLE,
    )


routes = [live, ready]
