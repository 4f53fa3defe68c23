"""The composition root's state: every long-lived service of one gateway process.

``create_app`` builds a Runtime, starts it in the lifespan and stops it on shutdown. Route
handlers reach it through the ``runtime`` dependency (``gateway.api.deps``). A standalone
``gateway worker`` builds the same Runtime without the HTTP app.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gateway import retention
from gateway.adapters import AdapterContext, AdapterRegistry
from gateway.audit import Auditor, VerifyResult, chain_status
from gateway.callbacks import CallbackIntake
from gateway.health import HealthMonitor
from gateway.jobs import JobQueue, WorkerPool, default_owner
from gateway.ops.sessions import OpsSessions
from gateway.outbound import OutboundClient, OutboundPolicy
from gateway.scheduler import Scheduler
from gateway.security import ClientDirectory
from gateway.settings import Settings
from gateway.store import create_store
from gateway.store.base import Store
from gateway.webhooks import (
    DELIVER_KIND,
    EndpointStatus,
    EventPublisher,
    WebhookDeliverer,
    delivery_policy,
)
from signing.service import SigningService

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
    #: each adapter's resilient client, by adapter name (stats, circuit state, closing)
    outbound_clients: dict[str, OutboundClient] = field(default_factory=dict)
    _extra_outbound: list[OutboundClient] = field(default_factory=list, repr=False)
    #: the durable queue's front door: enqueue, handlers, policies (gateway.jobs)
    jobs: JobQueue = field(init=False)
    #: in-process workers (None with jobs.workers = 0) and the scheduler, while started
    workers: WorkerPool | None = None
    scheduler: Scheduler | None = None
    #: the exchange log, events and webhooks, callback intake (gateway.audit, .webhooks,
    #: .callbacks); built with the runtime so a bad webhook configuration fails at start-up
    audit: Auditor = field(init=False)
    events: EventPublisher = field(init=False)
    webhooks: WebhookDeliverer = field(init=False)
    callbacks: CallbackIntake = field(init=False)
    #: per-system health (probes by the lock holder, passive figures from every instance)
    health: HealthMonitor = field(init=False)
    #: dashboard sign-in sessions, in the store so every instance honours them
    ops_sessions: OpsSessions = field(init=False)
    #: XML signing and verification with the configured keys, trust and peers, off the loop
    signing: SigningService = field(init=False)
    #: how often every process re-checks certificate expiry (metric and warnings); daily is
    #: plenty for a threshold counted in days, tests shorten it
    certificate_check_seconds: float = 86_400.0
    _certificate_watch: asyncio.Task[None] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.jobs = JobQueue(self.settings.jobs, self.store, registry=self.registry)
        self._build_delivery()
        self.health = HealthMonitor(self)
        self.ops_sessions = OpsSessions(self.store, self.settings.ops.session_ttl_seconds)
        self.signing = SigningService(
            self.settings.signing, max_bytes=self.settings.server.max_body_bytes
        )

    def _build_delivery(self) -> None:
        s = self.settings
        self.audit = Auditor(self.store, s.digest_key())
        self.events = EventPublisher(self.store, s.webhooks, self.jobs)
        self.webhooks = WebhookDeliverer(
            self.store, s.webhooks, auditor=self.audit, publisher=self.events
        )
        self.jobs.register_handler(DELIVER_KIND, self.webhooks, policy=delivery_policy(s.webhooks))
        self.callbacks = CallbackIntake(self.store, self.audit, self.events, s.retention)
        purger = retention.RetentionPurger(self.store, s.retention, self.audit)
        self.jobs.register_handler(retention.PURGE_KIND, purger)

    async def audit_chain_status(self) -> VerifyResult:
        """The audit chain's state for the dashboard (new records checked, a full walk
        every few minutes): ``ok``, ``checked``, ``first_broken_seq``, ``reason``."""
        return await chain_status(self.store)

    async def webhook_endpoint_states(self) -> list[EndpointStatus]:
        """Each webhook endpoint: ``state`` (delivering / failing / disabled), last success
        and failure, ``last_error``."""
        return await self.events.statuses()

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
        await self._start_adapters()  # before the workers: they run adapters' handlers
        self._start_jobs()
        self.health.start()
        self.signing.start()  # certificate expiry metric and warnings, now and then daily
        self._certificate_watch = asyncio.create_task(
            self.signing.watch_certificates(self.certificate_check_seconds),
            name="certificate-expiry-check",
        )
        self.started = True

    async def stop(self) -> None:
        self.started = False
        await self.health.stop()
        await self._stop_jobs()
        await self.webhooks.aclose()
        await self._stop_adapters()
        if self._certificate_watch is not None:
            self._certificate_watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._certificate_watch
            self._certificate_watch = None
        self.signing.close()
        await self.store.close()

    def outbound_factory(self, name: str) -> Callable[[OutboundPolicy | None], OutboundClient]:
        """``AdapterContext.outbound`` of adapter ``name``: builds its resilient client from
        its configuration (base URL, TLS, and the ``outbound`` policy unless one is given)."""

        def make(policy: OutboundPolicy | None = None) -> OutboundClient:
            client = OutboundClient.for_adapter(
                name, self.registry.configs[name], self.store, policy
            )
            previous = self.outbound_clients.get(name)
            if previous is not None:  # a second client of one adapter: still closed on stop
                self._extra_outbound.append(previous)
            self.outbound_clients[name] = client
            return client

        return make

    def adapter_context(self, name: str) -> AdapterContext:
        """What the core lends adapter ``name``, built in start() once the services exist;
        a service no subsystem has wired (yet) is None."""
        return AdapterContext(
            name=name,
            settings=self.settings,
            store=self.store,
            audit=self._service("audit"),
            jobs=self.jobs,
            events=self._service("events"),
            callbacks=self._service("callbacks"),
            outbound=self.outbound_factory(name),
            signing=self.signing,
        )

    def _service(self, name: str) -> Any:
        return getattr(self, name, None)

    def instantiate_adapters(self) -> None:
        """Create the adapter objects once: the app needs their callback routes before
        start(); start() then starts these same objects."""
        if not self.registry.instances:
            self.registry.instantiate(self.adapter_context)

    async def _start_adapters(self) -> None:
        self.instantiate_adapters()
        for adapter in self.registry.instances.values():
            await adapter.start()

    async def _stop_adapters(self) -> None:
        for adapter in self.registry.instances.values():
            await adapter.stop()
        for client in [*self.outbound_clients.values(), *self._extra_outbound]:
            await client.aclose()
        self.outbound_clients.clear()
        self._extra_outbound.clear()

    def _start_jobs(self) -> None:
        if self.settings.jobs.workers > 0:
            self.workers = WorkerPool(
                self.jobs,
                concurrency=self.settings.jobs.workers,
                events=lambda: self.events,
            )
            self.workers.start()
        if self.settings.jobs.scheduler_enabled:
            self.scheduler = Scheduler(self.jobs, owner=default_owner(), registry=self.registry)
            self.scheduler.register(retention.schedule(self.settings.retention))
            self.scheduler.start()

    async def _stop_jobs(self) -> None:
        # first of all: stop leasing and let in-flight jobs finish while the store is open
        if self.scheduler is not None:
            await self.scheduler.stop()
            self.scheduler = None
        if self.workers is not None:
            await self.workers.stop()
            self.workers = None
