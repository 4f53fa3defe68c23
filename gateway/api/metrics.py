"""``GET /metrics``: Prometheus exposition of the default registry (scope ``ops:read``).

Every module registers its ``gateway_*`` metrics in prometheus_client's default registry, so
they all appear here. With ``PROMETHEUS_MULTIPROC_DIR`` set (several server processes on one
port), the figures of every process are merged instead of those of whichever process answered;
``gateway serve --processes N`` sets it to a fresh folder per run.

The queue gauges (``gateway_queue_jobs``, ``gateway_queue_oldest_due_age_seconds``) are read
from the store at each scrape, so a server without workers exports them too.
"""

from __future__ import annotations

import os

import structlog
from litestar import Response, get
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

from gateway.api.openapi import AUTHENTICATED, problem_responses, secured
from gateway.jobs import export_queue_stats
from gateway.runtime import Runtime

__all__ = ["metrics", "routes"]

log = structlog.get_logger(__name__)


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
)
async def metrics(runtime: Runtime) -> Response[bytes]:
    try:
        await export_queue_stats(runtime.store)
    except Exception:
        # the store is down (readiness says so): the other figures still matter most now
        log.debug("queue stats unavailable at scrape")
    # Litestar appends the charset itself; keep the exposition format version only
    media_type = CONTENT_TYPE_LATEST.replace("; charset=utf-8", "")
    return Response(generate_latest(_registry()), media_type=media_type)


routes = [metrics]
