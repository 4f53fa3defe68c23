"""The composition root's state: every long-lived service of one gateway process.

``create_app`` builds a Runtime, starts it in the lifespan and stops it on shutdown. Route
handlers reach it through the ``runtime`` dependency (``gateway.api.deps``). A standalone
``gateway worker`` builds the same Runtime without the HTTP app.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gateway.adapters import AdapterRegistry
from gateway.security import ClientDirectory
from gateway.settings import Settings
from gateway.store import create_store
from gateway.store.base import Store

__all__ = ["Runtime"]


@dataclass
class Runtime:
    settings: Settings
    store: Store
    registry: AdapterRegistry
    #: True once start() has finished (readiness)
    started: bool = False
    #: services registered by subsystems during start(), by name (for diagnostics)
    extras: dict[str, Any] = field(default_factory=dict)
    #: the configured callers (settings' [[clients]] plus security.clients_file)
    clients: ClientDirectory = field(default_factory=ClientDirectory)

    @classmethod
    def build(cls, settings: Settings, *, sandbox_url: str | None = None) -> Runtime:
        registry = AdapterRegistry.from_settings(settings)
        if sandbox_url is not None:
            registry.point_at_sandbox(sandbox_url)
        return cls(
            settings=settings,
            store=create_store(settings),
            registry=registry,
            clients=ClientDirectory.from_settings(settings),
        )

    async def start(self) -> None:
        await self.store.open()
        self.started = True

    async def stop(self) -> None:
        self.started = False
        await self.store.close()
