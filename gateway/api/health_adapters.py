"""``GET /health/adapters``: per national system, up / degraded / down with the reason."""

from __future__ import annotations

from typing import Any

from litestar import get
from litestar.types import ControllerRouterHandler

from gateway.api.jobs import iso
from gateway.api.openapi import AUTHENTICATED, problem_responses, secured
from gateway.health import SystemHealth
from gateway.runtime import Runtime

__all__ = ["overall_status", "routes"]

#: kept as epoch seconds inside (the dashboard formats them), RFC 3339 like every API time
_TIMES = ("probe_at", "last_success", "last_failure")


def overall_status(states: list[str]) -> str:
    """``down`` if any system is down; else ``degraded`` if any is degraded or unknown (a
    system without a probe result is not known to work); else ``up``."""
    if "down" in states:
        return "down"
    if "degraded" in states or "unknown" in states:
        return "degraded"
    return "up"


def _view(system: SystemHealth) -> dict[str, Any]:
    view = system.as_dict()
    for name in _TIMES:
        view[name] = iso(view[name])
    return view


@get(
    "/health/adapters",
    tags=["health"],
    summary="Health of every national system: state, reason, circuit, latency, errors",
    description=(
        "The lock-holding instance probes each system every `ops.probe_interval_seconds`; "
        "every instance adds its live-traffic figures. `state` is up, degraded, down or "
        "unknown (no probe result yet); `reason` says why when it is not up. The top-level "
        "`status` is `down` when any system is down, else `degraded` when any is degraded "
        "or unknown, else `up`. Times (`probe_at`, `last_success`, `last_failure`) are "
        "RFC 3339 UTC."
    ),
    responses=problem_responses(AUTHENTICATED),
    security=secured("ops:read"),
    opt={"scopes": ["ops:read"]},
)
async def adapters_health(runtime: Runtime) -> dict[str, Any]:
    systems = await runtime.health.snapshot()
    status = overall_status([s.state for s in systems])
    return {"status": status, "systems": [_view(s) for s in systems]}


routes: list[ControllerRouterHandler] = [adapters_health]
