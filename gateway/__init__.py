"""dvc-gateway: the province's integration gateway to the national systems.

This module is the public API adapters may use; everything else in ``gateway`` is internal and
may change. Names load lazily, so ``import gateway.settings`` stays cheap and free of cycles.
The error classes live in ``gateway.errors`` (itself public: raise them from adapters).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gateway.adapters import (
        Adapter,
        AdapterConfig,
        AdapterContext,
        JobHandler,
        ProbeResult,
        ScheduledJob,
        SimulatorContext,
    )
    from gateway.errors import FieldError, GatewayError
    from gateway.observability import request_id_var
    from gateway.outbound import OutboundClient, OutboundPolicy
    from gateway.security import Client, require_unit

__all__ = [
    "Adapter",
    "AdapterConfig",
    "AdapterContext",
    "Client",
    "FieldError",
    "GatewayError",
    "JobHandler",
    "OutboundClient",
    "OutboundPolicy",
    "ProbeResult",
    "ScheduledJob",
    "SimulatorContext",
    "request_id_var",
    "require_unit",
]

_SOURCES = {
    "Adapter": "gateway.adapters",
    "AdapterConfig": "gateway.adapters",
    "AdapterContext": "gateway.adapters",
    "JobHandler": "gateway.adapters",
    "ProbeResult": "gateway.adapters",
    "ScheduledJob": "gateway.adapters",
    "SimulatorContext": "gateway.adapters",
    "FieldError": "gateway.errors",
    "GatewayError": "gateway.errors",
    "OutboundClient": "gateway.outbound",
    "OutboundPolicy": "gateway.outbound",
    "Client": "gateway.security",
    "require_unit": "gateway.security",
    "request_id_var": "gateway.observability",
}


def __getattr__(name: str) -> Any:
    module = _SOURCES.get(name)
    if module is None:
        raise AttributeError(f"module 'gateway' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
