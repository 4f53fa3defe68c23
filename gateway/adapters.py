"""The adapter contract and the registry.

An adapter connects the gateway to one national system. It is a subclass of :class:`Adapter`
living in ``adapters/<system>/`` and named by an entry point in the group
``dvc_gateway.adapters`` (``pyproject.toml``). The core never imports ``adapters.*``: it finds
them here, validates each one's configuration at start-up and asks each for what it offers:

- the capabilities it serves (``identity``, ``dossiers``, ...), as objects that satisfy the
  Protocols in ``gateway.capabilities``;
- its callback routes, mounted under ``/callbacks/<name>/``;
- its job handlers (kind -> coroutine) and its scheduled jobs;
- its health probe;
- its simulator (an ASGI app the sandbox mounts under ``/<name>/``).

Configuration maps each capability to one adapter (``[capabilities] identity = "population_db"``),
so a province can swap one platform for another without touching the core.
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gateway.errors import ConfigurationError
from gateway.outbound import OutboundPolicy

if TYPE_CHECKING:
    from litestar.types import ASGIApp, ControllerRouterHandler

    from gateway.audit import Auditor
    from gateway.callbacks import CallbackIntake
    from gateway.jobs import JobQueue
    from gateway.outbound import OutboundClient
    from gateway.settings import Settings
    from gateway.store.base import Job, Store
    from gateway.webhooks import EventPublisher
    from signing.service import SigningService

__all__ = [
    "ENTRY_POINT_GROUP",
    "Adapter",
    "AdapterConfig",
    "AdapterContext",
    "AdapterRegistry",
    "JobHandler",
    "ProbeResult",
    "ScheduledJob",
    "SimulatorContext",
    "discover_adapters",
]

ENTRY_POINT_GROUP = "dvc_gateway.adapters"

#: runs one job; returns a JSON-able result stored with the acknowledged job
JobHandler = Callable[["Job"], Awaitable[dict[str, Any] | None]]


class AdapterConfig(BaseModel):
    """Base of every adapter's configuration model. Unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: where the national system (or the integration platform in front of it) listens
    base_url: str = ""
    #: verify the upstream's TLS certificate (never off in production)
    tls_verify: bool = True
    #: PEM bundle of the upstream's CA, when it is not in the system store
    tls_ca_file: Path | None = None
    #: client certificate and key for mutual TLS to the upstream
    tls_client_cert: Path | None = None
    tls_client_key: Path | None = None
    #: timeouts, retries, circuit breaker, bulkhead, rate limit: see gateway.outbound
    outbound: dict[str, Any] = Field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ProbeResult:
    ok: bool
    latency_ms: float | None = None
    #: short reason shown to ops when not ok (no secrets, no personal data)
    detail: str | None = None


@dataclass(frozen=True, slots=True)
class ScheduledJob:
    """A periodic job an adapter declares; the scheduler lock holder enqueues it."""

    name: str  # unique per adapter, e.g. "catalogue-refresh"
    kind: str  # the job kind its handler serves
    payload: dict[str, Any] = field(default_factory=dict)
    interval_seconds: float | None = None
    cron: str | None = None  # a cron expression, Asia/Ho_Chi_Minh


@dataclass(slots=True)
class AdapterContext:
    """What the core lends an adapter. Built once per process by the app."""

    name: str
    settings: Settings
    store: Store
    audit: Auditor
    jobs: JobQueue
    events: EventPublisher
    callbacks: CallbackIntake
    #: builds this adapter's one long-lived resilient client
    outbound: Callable[[OutboundPolicy | None], OutboundClient]
    #: the process's XML signing and verification (its key, trust store and
    #: ``[signing.peers.<peer>]`` policies), run on one thread pool; the runtime closes it
    signing: SigningService


@dataclass(frozen=True, slots=True)
class SimulatorContext:
    """What the sandbox gives a simulator."""

    name: str
    seed: int
    #: where this simulator is reachable, e.g. http://127.0.0.1:8081/population_db
    base_url: str
    #: the gateway, for simulators that push callbacks to it
    gateway_url: str
    #: development PKI made by ``gateway keys dev-pki`` (certificates per simulator)
    pki_dir: Path
    #: the adapter's own configuration (credentials the simulator must accept)
    config: AdapterConfig
    settings: Settings


class Adapter:
    """Base class of every adapter. Subclasses set the class attributes and override hooks."""

    #: the folder name and configuration key, e.g. "population_db"
    name: ClassVar[str]
    #: a human name, shown on the ops dashboard
    title: ClassVar[str]
    title_vi: ClassVar[str]
    config_model: ClassVar[type[AdapterConfig]] = AdapterConfig
    #: names of the capabilities this adapter can serve
    capabilities: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, config: AdapterConfig, context: AdapterContext) -> None:
        self.config = config
        self.context = context

    async def start(self) -> None:
        """Build clients (zeep, httpx) once; called in the app's lifespan."""

    async def stop(self) -> None:
        """Close clients."""

    def capability(self, name: str) -> object:
        """The object implementing capability ``name`` (default: the adapter itself)."""
        if name not in self.capabilities:
            raise KeyError(name)
        return self

    def callback_routes(self) -> Sequence[ControllerRouterHandler]:
        """Route handlers mounted under /callbacks/<name>."""
        return ()

    def job_handlers(self) -> Mapping[str, JobHandler]:
        return {}

    def scheduled_jobs(self) -> Sequence[ScheduledJob]:
        return ()

    async def probe(self) -> ProbeResult:
        """A cheap call proving the national system answers (health)."""
        return ProbeResult(ok=True, detail="no probe defined")

    def certificate_days_left(self) -> float | None:
        """Days until the soonest expiry among the certificates this adapter relies on
        (its peer's pinned certificate, its client certificate); None when it uses none."""
        return None

    @classmethod
    def simulator(cls, ctx: SimulatorContext) -> ASGIApp | None:
        """A faithful fake of the system for the sandbox, demo and tests."""
        return None

    @classmethod
    def simulator_config(cls, config: AdapterConfig, sandbox_base_url: str) -> AdapterConfig:
        """The adapter configuration pointed at its simulator (sandbox mode)."""
        return config.model_copy(update={"base_url": sandbox_base_url})

    @classmethod
    def simulator_operation(cls, path: str, body: bytes) -> str:
        """The operation a request to the simulator invokes, for the sandbox's per-operation
        faults. ``path`` is relative to the simulator's prefix. Default: the last path
        segment; SOAP and RPC-style systems override it to read the operation from the body."""
        return path.rstrip("/").rsplit("/", 1)[-1] or "/"


def _load_object(spec: str) -> object:
    module_name, _, attr = spec.partition(":")
    if not attr:
        raise ConfigurationError(f"extra_adapters: {spec!r} is not 'module:attribute'")
    try:
        module = importlib.import_module(module_name)
        return getattr(module, attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigurationError(f"extra_adapters: cannot load {spec!r}: {exc}") from None


def discover_adapters(extra: Sequence[str] = ()) -> dict[str, type[Adapter]]:
    """Installed adapters (entry points) plus ``extra`` ("module:attr") ones, by name."""
    found: dict[str, type[Adapter]] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        obj = ep.load()
        if not (isinstance(obj, type) and issubclass(obj, Adapter)):
            raise ConfigurationError(f"entry point {ep.name!r} does not name an Adapter subclass")
        found[obj.name] = obj
    for spec in extra:
        obj = _load_object(spec)
        if not (isinstance(obj, type) and issubclass(obj, Adapter)):
            raise ConfigurationError(f"extra_adapters: {spec!r} is not an Adapter subclass")
        found[obj.name] = obj
    return found


def _config_problem(name: str, exc: ValidationError) -> str:
    first = exc.errors()[0]
    loc = ".".join(str(p) for p in first["loc"])
    return f"adapters.{name}.{loc}: {first['msg']}"


class AdapterRegistry:
    """The adapters configured in this deployment, validated, and the capability map."""

    def __init__(self, settings: Settings, available: Mapping[str, type[Adapter]]) -> None:
        self.available = dict(available)
        self.configs: dict[str, AdapterConfig] = {}
        for name, raw in settings.adapters.items():
            cls = self.available.get(name)
            if cls is None:
                installed = ", ".join(sorted(self.available)) or "none"
                raise ConfigurationError(
                    f"adapters.{name}: unknown adapter; installed adapters: {installed}"
                )
            try:
                self.configs[name] = cls.config_model.model_validate(raw)
            except ValidationError as exc:
                raise ConfigurationError(_config_problem(name, exc)) from None
            try:  # the outbound policy too, so a bad one stops the start, not the first call
                OutboundPolicy.model_validate(self.configs[name].outbound)
            except ValidationError as exc:
                raise ConfigurationError(_config_problem(f"{name}.outbound", exc)) from None
        self.capability_map: dict[str, str] = {}
        for capability, name in settings.capabilities.items():
            if name not in self.configs:
                raise ConfigurationError(
                    f"capabilities.{capability}: adapter {name!r} "
                    "is not configured under [adapters]"
                )
            if capability not in self.available[name].capabilities:
                raise ConfigurationError(
                    f"capabilities.{capability}: adapter {name!r} does not serve it "
                    f"(it serves: {', '.join(sorted(self.available[name].capabilities))})"
                )
            self.capability_map[capability] = name
        self.instances: dict[str, Adapter] = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> AdapterRegistry:
        return cls(settings, discover_adapters(settings.extra_adapters))

    def point_at_sandbox(self, sandbox_url: str) -> None:
        """Sandbox mode: every configured adapter talks to its simulator."""
        for name, config in list(self.configs.items()):
            adapter_cls = self.available[name]
            self.configs[name] = adapter_cls.simulator_config(config, f"{sandbox_url}/{name}")

    def instantiate(self, make_context: Callable[[str], AdapterContext]) -> None:
        for name, config in self.configs.items():
            self.instances[name] = self.available[name](config, make_context(name))

    def capability(self, capability: str) -> object:
        name = self.capability_map.get(capability)
        if name is None:
            raise ConfigurationError(f"no adapter is configured for capability {capability!r}")
        return self.instances[name].capability(capability)

    def has_capability(self, capability: str) -> bool:
        return capability in self.capability_map
