"""``GET /health/adapters``: per national system, up / degraded / down with the reason."""

from __future__ import annotations

from typing import Any

from litestar import get
from litestar.types import ControllerRouterHandler

from gateway.api.openapi import AUTHENTICATED, problem_responses, secured
from gateway.runtime import Runtime

__all__ = ["routes"]


@get(
    "/health/adapters",
    tags=["health"],
    summary="Health of every national system: state, reason, circuit, latency, errors",
    description=(
        "The lock-holding instance probes each system every `ops.probe_interval_seconds`; "
        "every instance adds its live-traffic figures. `state` is up, degraded, down or "
        "unknown; `reason` says why when it is not up."
    ),
    responses=problem_responses(AUTHENTICATED),
    security=secured("ops:read"),
    opt={"scopes": ["ops:read"]},
)
async def adapters_health(runtime: Runtime) -> dict[str, Any]:
    systems = await runtime.health.snapshot()
    worst = "up"
    for s in systems:
        if s.state == "down" or (s.state == "degraded" and worst == "up"):
            worst = s.state
    return {"status": worst, "systems": [s.as_dict() for s in systems]}


routes: list[ControllerRouterHandler] = [adapters_health]
