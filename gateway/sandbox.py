"""The sandbox: every installed adapter's simulator in one ASGI app, with fault injection.

Each simulator is served under ``/<adapter-name>/`` (the ASGI ``root_path`` carries the
prefix; ``path`` stays whole, as the ASGI spec says). In front of each one sits the fault
injector: per system and operation (``Adapter.simulator_operation`` names the operation,
reading the body for SOAP and RPC-style systems) it can add latency, answer an error status
(optionally with ``Retry-After``), hang until the client gives up, garble the answer, or drop
the connection mid-answer. Decisions come from a seeded random generator per (system,
operation), so a run is reproducible.

Faults come from ``[sandbox.faults]`` in the configuration and can be changed at run time
through ``/_sandbox/faults``, which answers loopback clients only:

- ``GET /_sandbox/faults``: the table and the seed
- ``PUT /_sandbox/faults``: replace the table, body ``{"faults": {system: {operation: spec}},
  "seed": optional}``
- ``PUT /_sandbox/faults/{system}/{operation}``: set one spec (``*`` = every operation)
- ``DELETE /_sandbox/faults`` or ``/_sandbox/faults/{system}[/{operation}]``: clear
- ``GET /_sandbox/requests`` (``DELETE`` resets): requests seen per system and operation,
  and the faults applied, so a test can count attempts
- ``GET /_sandbox/``: the systems served and their URLs

A spec (:class:`FaultSpec`) is ``{"latency_ms", "jitter_ms", "error_rate", "status",
"retry_after", "timeout_rate", "malformed_rate", "drop_rate", "count"}``; rates are
probabilities (1.0 = every request), ``count`` limits the spec to the next N requests.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import random
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any, Literal

import structlog
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from gateway.adapters import Adapter, AdapterConfig, AdapterRegistry, SimulatorContext
from gateway.errors import ConfigurationError
from gateway.heap import settle_heap
from gateway.settings import Settings

__all__ = [
    "FaultSpec",
    "FaultTable",
    "SandboxApp",
    "build_sandbox",
    "quiet_dropped_connections",
    "sandbox_url",
]

log = structlog.get_logger(__name__)

Scope = MutableMapping[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

ANY_OPERATION = "*"
#: how long a "timeout" fault hangs at most when the client never gives up
HANG_SECONDS = 600.0
DROP_MESSAGE = "ASGI callable returned without completing response."

FaultKind = Literal["error", "timeout", "malformed", "drop"]


class FaultSpec(BaseModel):
    """What to do to requests of one system and operation."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    latency_ms: float = Field(0.0, ge=0)
    #: extra latency, uniform in [0, jitter_ms]
    jitter_ms: float = Field(0.0, ge=0)
    error_rate: float = Field(0.0, ge=0, le=1)
    #: the status of injected errors
    status: int = Field(503, ge=400, le=599)
    #: ``Retry-After`` (seconds) sent with injected errors
    retry_after: float | None = Field(None, ge=0)
    #: hang without answering until the client gives up (longer than any client timeout)
    timeout_rate: float = Field(0.0, ge=0, le=1)
    #: the simulator's answer, garbled (same status and media type, unparseable body)
    malformed_rate: float = Field(0.0, ge=0, le=1)
    #: the connection closes in the middle of the answer
    drop_rate: float = Field(0.0, ge=0, le=1)
    #: apply to the next ``count`` requests only, then disappear
    count: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _rates(self) -> FaultSpec:
        total = self.error_rate + self.timeout_rate + self.malformed_rate + self.drop_rate
        if total > 1.0 + 1e-9:
            raise ValueError("error_rate + timeout_rate + malformed_rate + drop_rate must be <= 1")
        return self


@dataclass(slots=True)
class _Armed:
    spec: FaultSpec
    rng: random.Random
    remaining: int | None


@dataclass(frozen=True, slots=True)
class Decision:
    latency_s: float = 0.0
    kind: FaultKind | None = None
    spec: FaultSpec | None = None


_NO_FAULT = Decision()


@dataclass
class FaultTable:
    """The faults in force, by system and operation; reproducible from ``seed``."""

    seed: int
    _armed: dict[str, dict[str, _Armed]] = field(default_factory=dict)

    def _rng(self, system: str, operation: str) -> random.Random:
        return random.Random(f"{self.seed}/{system}/{operation}")

    def set(self, system: str, operation: str, spec: FaultSpec) -> None:
        self._armed.setdefault(system, {})[operation] = _Armed(
            spec, self._rng(system, operation), spec.count
        )

    def clear(self, system: str | None = None, operation: str | None = None) -> None:
        if system is None:
            self._armed.clear()
        elif operation is None:
            self._armed.pop(system, None)
        else:
            self._armed.get(system, {}).pop(operation, None)

    def replace(self, table: Mapping[str, Mapping[str, FaultSpec]], seed: int | None) -> None:
        if seed is not None:
            self.seed = seed
        self._armed.clear()
        for system, ops in table.items():
            for operation, spec in ops.items():
                self.set(system, operation, spec)

    def as_dict(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "faults": {
                system: {
                    op: {
                        **armed.spec.model_dump(exclude_defaults=True),
                        **({"remaining": armed.remaining} if armed.remaining is not None else {}),
                    }
                    for op, armed in ops.items()
                }
                for system, ops in self._armed.items()
                if ops
            },
        }

    def decide(self, system: str, operation: str) -> Decision:
        ops = self._armed.get(system)
        if not ops:
            return _NO_FAULT
        key = operation if operation in ops else ANY_OPERATION
        armed = ops.get(key)
        if armed is None:
            return _NO_FAULT
        if armed.remaining is not None:
            armed.remaining -= 1
            if armed.remaining <= 0:
                del ops[key]
        spec, rng = armed.spec, armed.rng
        latency = spec.latency_ms + (rng.uniform(0, spec.jitter_ms) if spec.jitter_ms else 0.0)
        draw = rng.random()
        kind: FaultKind | None = None
        for candidate, rate in (
            ("drop", spec.drop_rate),
            ("timeout", spec.timeout_rate),
            ("error", spec.error_rate),
            ("malformed", spec.malformed_rate),
        ):
            if draw < rate:
                kind = candidate  # type: ignore[assignment]
                break
            draw -= rate
        return Decision(latency / 1000.0, kind, spec)


def parse_fault_table(raw: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, FaultSpec]]:
    """Validate ``{system: {operation: spec}}``; raises ValueError naming the bad entry."""
    out: dict[str, dict[str, FaultSpec]] = {}
    for system, ops in raw.items():
        if not isinstance(ops, Mapping):
            raise ValueError(f"faults.{system}: expected a table of operations")
        for operation, spec in ops.items():
            try:
                out.setdefault(system, {})[operation] = FaultSpec.model_validate(spec)
            except ValidationError as exc:
                first = exc.errors()[0]
                loc = ".".join(str(p) for p in first["loc"])
                where = f"faults.{system}.{operation}" + (f".{loc}" if loc else "")
                raise ValueError(f"{where}: {first['msg']}") from None
    return out


# ---------------------------------------------------------------- ASGI helpers


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break  # disconnected
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


async def _respond(
    send: Send,
    status: int,
    body: bytes,
    *,
    media_type: bytes = b"application/json",
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", media_type),
                (b"content-length", str(len(body)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def _json(send: Send, status: int, data: Any) -> None:
    await _respond(send, status, json.dumps(data, ensure_ascii=False).encode())


async def _problem(send: Send, status: int, title: str, detail: str) -> None:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    await _respond(
        send,
        status,
        json.dumps(body).encode(),
        media_type=b"application/problem+json",
    )


def _garble(body: bytes) -> bytes:
    # keep a plausible start (so the parser gets going), then break the syntax for good
    return body[: max(1, len(body) // 3)] + b"\x00<<<malformed sandbox answer"


def _is_loopback(scope: Scope) -> bool:
    client = scope.get("client")
    if not client:
        return False
    try:
        return ipaddress.ip_address(client[0]).is_loopback
    except ValueError:
        return False


class _DropFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != DROP_MESSAGE


def quiet_dropped_connections() -> None:
    """Uvicorn logs an error for every connection the sandbox drops on purpose; hide those."""
    logging.getLogger("uvicorn.error").addFilter(_DropFilter())


# ---------------------------------------------------------------- the app


@dataclass(frozen=True, slots=True)
class Simulator:
    name: str
    adapter: type[Adapter]
    app: App
    base_url: str


@dataclass
class _Counters:
    requests: dict[str, dict[str, int]] = field(default_factory=dict)
    faults: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)

    def count(self, system: str, operation: str, kind: str | None) -> None:
        ops = self.requests.setdefault(system, {})
        ops[operation] = ops.get(operation, 0) + 1
        if kind is not None:
            kinds = self.faults.setdefault(system, {}).setdefault(operation, {})
            kinds[kind] = kinds.get(kind, 0) + 1

    def as_dict(self) -> dict[str, Any]:
        return {"requests": self.requests, "faults": self.faults}


class SandboxApp:
    """The ASGI app ``gateway sandbox`` serves."""

    def __init__(self, simulators: Mapping[str, Simulator], faults: FaultTable) -> None:
        self.simulators = dict(simulators)
        self.faults = faults
        self.counters = _Counters()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self._lifespan(scope, receive, send)
            return
        if kind != "http":
            return  # no websockets in the simulators
        path: str = scope["path"]
        if path == "/_sandbox" or path.startswith("/_sandbox/"):
            await self._control(scope, receive, send)
            return
        name = path.split("/", 2)[1] if path.count("/") >= 1 else ""
        simulator = self.simulators.get(name)
        if simulator is None:
            await _problem(send, 404, "Not found", f"no simulator is mounted at /{name}")
            return
        prefix = "/" + name
        child = dict(scope)
        child["root_path"] = scope.get("root_path", "") + prefix
        await self._faulted(simulator, path[len(prefix) :] or "/", child, receive, send)

    # -- faults -------------------------------------------------------------------------
    async def _faulted(
        self, sim: Simulator, relative: str, scope: Scope, receive: Receive, send: Send
    ) -> None:
        body = await _read_body(receive)
        try:
            operation = sim.adapter.simulator_operation(relative, body)
        except Exception:  # a simulator's own parser must not break the sandbox
            operation = relative.rstrip("/").rsplit("/", 1)[-1] or "/"
        decision = self.faults.decide(sim.name, operation)
        self.counters.count(sim.name, operation, decision.kind)
        if decision.latency_s:
            await asyncio.sleep(decision.latency_s)
        replayed = _replay(body, receive)
        if decision.kind is None:
            await sim.app(scope, replayed, send)
        elif decision.kind == "error":
            spec = decision.spec
            assert spec is not None
            headers = []
            if spec.retry_after is not None:
                headers.append((b"retry-after", str(round(spec.retry_after)).encode()))
            await _respond(
                send,
                spec.status,
                json.dumps(
                    {
                        "title": "Injected sandbox fault",
                        "status": spec.status,
                        "operation": operation,
                    }
                ).encode(),
                media_type=b"application/problem+json",
                headers=headers,
            )
        elif decision.kind == "timeout":
            await self._hang(replayed)
        elif decision.kind == "drop":
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-length", b"4096")],
                }
            )
            await send({"type": "http.response.body", "body": b"<partial", "more_body": True})
            # returning with the body incomplete makes the server close the connection
        else:
            await self._malformed(sim.app, scope, replayed, send)

    @staticmethod
    async def _hang(receive: Receive) -> None:
        await receive()  # the replayed body
        try:
            async with asyncio.timeout(HANG_SECONDS):
                while (await receive())["type"] != "http.disconnect":
                    pass
        except TimeoutError:
            pass

    @staticmethod
    async def _malformed(app: App, scope: Scope, receive: Receive, send: Send) -> None:
        start: Message | None = None
        chunks: list[bytes] = []

        async def capture(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await app(scope, receive, capture)
        if start is None:
            return
        body = _garble(b"".join(chunks))
        headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": start["status"], "headers": headers})
        await send({"type": "http.response.body", "body": body, "more_body": False})

    # -- the control API ----------------------------------------------------------------
    async def _control(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not _is_loopback(scope):
            await _problem(send, 403, "Forbidden", "the sandbox control API is local-only")
            return
        method: str = scope["method"]
        parts = [p for p in scope["path"].split("/") if p][1:]  # after "_sandbox"
        body = await _read_body(receive)
        if not parts:
            await _json(send, 200, self.index())
            return
        if parts[0] == "requests" and len(parts) == 1:
            if method == "DELETE":
                self.counters = _Counters()
            await _json(send, 200, self.counters.as_dict())
            return
        if parts[0] != "faults" or len(parts) > 3:
            await _problem(send, 404, "Not found", "unknown sandbox control path")
            return
        target = parts[1:]
        try:
            if method == "GET":
                pass
            elif method == "DELETE":
                self.faults.clear(*target)
            elif method == "PUT" and len(target) == 2:
                self.faults.set(target[0], target[1], FaultSpec.model_validate_json(body or b"{}"))
            elif method == "PUT" and not target:
                data = json.loads(body or b"{}")
                if not isinstance(data, dict):
                    raise ValueError("expected a JSON object")
                unknown = set(data) - {"faults", "seed"}
                if unknown:
                    raise ValueError(f"unknown key {sorted(unknown)[0]!r}")
                seed = data.get("seed")
                if seed is not None and not isinstance(seed, int):
                    raise ValueError("seed: expected an integer")
                self.faults.replace(parse_fault_table(data.get("faults") or {}), seed)
            else:
                await _problem(send, 405, "Method not allowed", f"{method} is not allowed here")
                return
        except ValidationError as exc:
            first = exc.errors()[0]
            loc = ".".join(str(p) for p in first["loc"]) or "(body)"
            await _problem(send, 422, "Invalid fault", f"{loc}: {first['msg']}")
            return
        except ValueError as exc:
            await _problem(send, 422, "Invalid fault", str(exc))
            return
        if method != "GET":
            log.info("sandbox faults changed", faults=self.faults.as_dict()["faults"])
        await _json(send, 200, self.faults.as_dict())

    def index(self) -> dict[str, Any]:
        return {
            "simulators": {name: sim.base_url for name, sim in sorted(self.simulators.items())},
            "faults": self.faults.as_dict(),
        }

    # -- lifespan: fan out to every simulator that has one ---------------------------------
    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        children: list[_ChildLifespan] = []
        message = await receive()
        if message["type"] == "lifespan.startup":
            try:
                for sim in self.simulators.values():
                    child = _ChildLifespan(sim.app, scope)
                    if await child.startup():
                        children.append(child)
            except Exception as exc:
                await send({"type": "lifespan.startup.failed", "message": str(exc)})
                return
            # the simulators' start-up data (12,000 synthetic citizens, catalogues) out of the
            # collector's way: else each full collection walks it, stalling every simulated
            # system for 100-300 ms at random moments (seen as p99 spikes in bench/dossiers.py)
            settle_heap()
            await send({"type": "lifespan.startup.complete"})
            message = await receive()
        if message["type"] == "lifespan.shutdown":
            for child in reversed(children):
                await child.shutdown()
            await send({"type": "lifespan.shutdown.complete"})


class _ChildLifespan:
    """Runs one simulator's lifespan protocol inside the sandbox's own."""

    def __init__(self, app: App, scope: Scope) -> None:
        self.app = app
        self.scope = {**scope, "state": {}}
        self.inbox: asyncio.Queue[Message] = asyncio.Queue()
        self.outbox: asyncio.Queue[Message] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        try:
            await self.app(self.scope, self.inbox.get, self.outbox.put)
        except Exception:  # an app without lifespan support raises on the lifespan scope
            return

    async def _reply(self) -> Message | None:
        assert self.task is not None
        getter = asyncio.ensure_future(self.outbox.get())
        done, _ = await asyncio.wait({getter, self.task}, return_when=asyncio.FIRST_COMPLETED)
        if getter in done:
            return getter.result()
        # the app ended without answering: it does not speak lifespan, nothing to start
        getter.cancel()
        return None

    async def startup(self) -> bool:
        self.task = asyncio.create_task(self._run())
        await self.inbox.put({"type": "lifespan.startup"})
        reply = await self._reply()
        if reply is None:
            return False
        if reply["type"] == "lifespan.startup.failed":
            raise ConfigurationError(f"a simulator failed to start: {reply.get('message', '')}")
        return True

    async def shutdown(self) -> None:
        await self.inbox.put({"type": "lifespan.shutdown"})
        await self._reply()


# ---------------------------------------------------------------- building


def sandbox_url(settings: Settings) -> str:
    host = settings.sandbox.host
    if host in ("0.0.0.0", "::"):  # noqa: S104 - the URL the gateway dials, not a bind
        host = "127.0.0.1"
    return f"http://{host}:{settings.sandbox.port}"


def _simulator_config(
    name: str, cls: type[Adapter], registry: AdapterRegistry
) -> AdapterConfig | None:
    config = registry.configs.get(name)
    if config is not None:
        return config
    try:
        return cls.config_model()
    except ValidationError:
        log.warning("sandbox: adapter not configured and its defaults are incomplete", adapter=name)
        return None


def build_sandbox(
    settings: Settings,
    *,
    base_url: str | None = None,
    gateway_url: str | None = None,
    registry: AdapterRegistry | None = None,
) -> SandboxApp:
    """Every installed adapter's simulator (configured or not) behind the fault injector."""
    registry = registry or AdapterRegistry.from_settings(settings)
    base = (base_url or sandbox_url(settings)).rstrip("/")
    try:
        table = parse_fault_table(settings.sandbox.faults)
    except ValueError as exc:
        raise ConfigurationError(f"sandbox.{exc}") from None
    simulators: dict[str, Simulator] = {}
    for name, cls in sorted(registry.available.items()):
        config = _simulator_config(name, cls, registry)
        if config is None:
            continue
        ctx = SimulatorContext(
            name=name,
            seed=settings.sandbox.seed,
            base_url=f"{base}/{name}",
            gateway_url=(gateway_url or settings.public_url()).rstrip("/"),
            pki_dir=settings.signing.dev_pki_dir,
            config=config,
            settings=settings,
        )
        app = cls.simulator(ctx)
        if app is None:
            continue
        simulators[name] = Simulator(name, cls, app, ctx.base_url)  # type: ignore[arg-type]
    faults = FaultTable(seed=settings.sandbox.seed)
    faults.replace(table, None)
    return SandboxApp(simulators, faults)
