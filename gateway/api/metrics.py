"""``GET /metrics``: Prometheus exposition of the default registry (scope ``ops:read``).

Every module registers its ``gateway_*`` metrics in prometheus_client's default registry, so
they all appear here. With ``PROMETHEUS_MULTIPROC_DIR`` set (several server processes on one
port), the figures of every process are merged instead of those of whichever process answered.
"""

from __future__ import annotations

import os

from litestar import Response, get
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

from gateway.api.openapi import AUTHENTICATED, problem_responses, secured

__all__ = ["metrics", "routes"]


def _registry() -> CollectorRegistry:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return registry
    return REGISTRY


@get(
    "/metrics",
    tags=["ops"],
    summary="Prometheus metrics",
    responses=problem_responses(AUTHENTICATED),
    security=secured("ops:read"),
    opt={"scopes": ["ops:read"]},
    sync_to_thread=False,
)
def metrics() -> Response[bytes]:
    # Litestar appends the charset itself; keep the exposition format version only
    media_type = CONTENT_TYPE_LATEST.replace("; charset=utf-8", "")
    return Response(generate_latest(_registry()), media_type=media_type)


routes = [metrics]
