"""A gateway and the population database simulator over real HTTP.

The sandbox (``gateway.sandbox.build_sandbox``: the simulator behind the fault injector) and
the gateway (``create_app`` pointed at the sandbox) each run in uvicorn on 127.0.0.1 with a
free port. Tests call the gateway as the provincial system would, make the registry misbehave
through :attr:`Rig.simulator`'s controls (protocol-level faults) and the sandbox's fault table
(latency, hangs, error statuses, garbled answers), and pick citizens from the simulator's own
synthetic population, so expectations never come from the code under test.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from support.jobs_app import ApiClient, drop_redis_prefix, gateway_settings, make_client
from support.jobs_app import store_settings as _store_settings
from support.uvicorn_server import serving

from adapters.population_db.models import OPERATION, CongDan
from adapters.population_db.population import (
    LICENSED_PROCEDURES,
    PERMITTED_OFFICERS,
    Population,
    population,
)
from adapters.population_db.simulator import PopulationSimulator
from gateway.app import create_app
from gateway.runtime import Runtime
from gateway.sandbox import FaultSpec, SandboxApp, build_sandbox
from gateway.settings import Settings
from signing.keys import DevPki, ensure_dev_pki

__all__ = [
    "FULL",
    "LOOKUP_ONLY",
    "NO_SCOPES",
    "SYSTEM",
    "VERIFY_ONLY",
    "LogCapture",
    "Rig",
    "birth_text",
    "outbound_policy",
    "population_db_rig",
    "purpose",
]

SYSTEM = "population_db"


class LogCapture(logging.Handler):
    """Everything any logger emits, as handed to logging: before the gateway's masking, so a
    check on it proves personal data never reached a logger, not that it was masked later."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        parts = [record.name, repr(record.msg), repr(record.args)]
        parts.append(repr({k: v for k, v in record.__dict__.items() if k not in _RECORD_ATTRS}))
        if record.exc_info:
            parts.append(logging.Formatter().formatException(record.exc_info))
        self.lines.append(" ".join(parts))

    def leaks(self, secrets: set[str]) -> list[tuple[str, str]]:
        return [(s, line[:200]) for line in self.lines for s in secrets if s in line]


_RECORD_ATTRS = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message"}
FULL = make_client("dossier-system", "identity:verify", "identity:lookup")
VERIFY_ONLY = make_client("verify-only", "identity:verify")
LOOKUP_ONLY = make_client("lookup-only", "identity:lookup")
NO_SCOPES = make_client("no-identity", "dossiers:read")
CLIENTS = (FULL, VERIFY_ONLY, LOOKUP_ONLY, NO_SCOPES)

#: fast enough for tests, real enough to exercise every path: short timeouts, three
#: attempts, a breaker that opens after three failures and probes after 1.5 s (long enough
#: for a loaded machine to make the second call while it is still open)
TEST_OUTBOUND: dict[str, Any] = {
    "timeouts": {"connect": 1.0, "read": 0.4, "write": 1.0, "pool": 1.0, "total": 0.6},
    "retry": {"max_attempts": 3, "backoff_initial": 0.01, "backoff_max": 0.05, "deadline": 5.0},
    "circuit": {
        "failure_threshold": 3,
        "window": 30.0,
        "open_duration": 1.5,
        "state_cache_seconds": 0.0,
    },
}


def outbound_policy() -> dict[str, Any]:
    return {k: dict(v) for k, v in TEST_OUTBOUND.items()}


def purpose(
    procedure: str = LICENSED_PROCEDURES[0],
    officer: str = PERMITTED_OFFICERS[0],
    dossier: str | None = "000.00.19.H47-260105-0001",
) -> dict[str, Any]:
    out: dict[str, Any] = {"procedure_code": procedure, "officer_id": officer}
    if dossier is not None:
        out["dossier_code"] = dossier
    return out


def birth_text(citizen: CongDan, form: str = "iso") -> str:
    """The citizen's birth date as a caller would write it (``iso``, ``vn`` or ``year``)."""
    raw = citizen.NgayThangNamSinh
    if len(raw) == 4 or form == "year":
        return raw[:4]
    if form == "vn":
        return f"{raw[6:]}/{raw[4:6]}/{raw[:4]}"
    return f"{raw[:4]}-{raw[4:6]}-{raw[6:]}"


@dataclass
class Rig:
    gateway: str
    sandbox_url: str
    sandbox: SandboxApp
    runtime: Runtime
    settings: Settings
    pki: DevPki
    http: httpx.AsyncClient
    #: the identifiers and names the test sent, for the log checks
    used: set[str] = field(default_factory=set)

    @property
    def simulator(self) -> PopulationSimulator:
        app = self.sandbox.simulators[SYSTEM].app
        assert isinstance(app, PopulationSimulator)
        return app

    @property
    def population(self) -> Population:
        return population(self.settings.sandbox.seed)

    def remember(self, citizen: CongDan) -> CongDan:
        self.used.update({citizen.SoDinhDanh, citizen.HoVaTen.day_du()})
        if citizen.SoCMND:
            self.used.add(citizen.SoCMND)
        return citizen

    def verify_body(self, citizen: CongDan, **overrides: Any) -> dict[str, Any]:
        self.remember(citizen)
        body: dict[str, Any] = {
            "id_number": citizen.SoDinhDanh,
            "full_name": citizen.HoVaTen.day_du(),
            "birth_date": birth_text(citizen),
            "purpose": purpose(),
        }
        body.update(overrides)
        return {k: v for k, v in body.items() if v is not ...}

    async def verify(
        self, body: dict[str, Any], client: ApiClient = FULL, **kw: Any
    ) -> httpx.Response:
        for key in ("id_number", "legacy_id_number", "full_name"):
            if isinstance(body.get(key), str):
                self.used.add(body[key])
        return await self.http.post(
            f"{self.gateway}/v1/citizens/verify", json=body, headers=client.headers, **kw
        )

    async def lookup(self, body: dict[str, Any], client: ApiClient = FULL) -> httpx.Response:
        for key in ("id_number", "legacy_id_number"):
            if isinstance(body.get(key), str):
                self.used.add(body[key])
        return await self.http.post(
            f"{self.gateway}/v1/citizens/lookup", json=body, headers=client.headers
        )

    def fault(self, operation: str = OPERATION, **spec: Any) -> None:
        self.sandbox.faults.set(SYSTEM, operation, FaultSpec.model_validate(spec))

    def clear_faults(self) -> None:
        self.sandbox.faults.clear()

    async def reset(self) -> None:
        """Between tests sharing one rig: no faults, zero counters, normal answers."""
        await self.http.delete(f"{self.sandbox_url}/_sandbox/faults")
        await self.http.delete(f"{self.sandbox_url}/_sandbox/requests")
        self.simulator.controls.reset()

    def attempts(self, operation: str = OPERATION) -> int:
        """Requests the sandbox saw for the operation (faulted ones included)."""
        return self.sandbox.counters.requests.get(SYSTEM, {}).get(operation, 0)


def rig_settings(
    tmp_path: Path,
    pki: DevPki,
    store: dict[str, Any],
    *,
    adapter: dict[str, Any] | None = None,
    logging_level: str = "WARNING",
    signing_peers: dict[str, Any] | None = None,
) -> Settings:
    config: dict[str, Any] = {
        "base_url": "http://127.0.0.1:9/population_db",  # replaced by the sandbox URL
        "outbound": outbound_policy(),
        **(adapter or {}),
    }
    return gateway_settings(
        store,
        tmp_path,
        clients=CLIENTS,
        adapters={SYSTEM: config},
        capabilities={"identity": SYSTEM},
        signing={
            "key_path": str(pki.gateway.key_path),
            "cert_path": str(pki.gateway.cert_path),
            "trust_paths": [str(pki.ca.cert_path)],
            "dev_pki_dir": str(pki.directory),
            "peers": signing_peers or {},
        },
        logging={"level": logging_level, "format": "json"},
    )


async def _first_probe_done(runtime: Runtime) -> None:
    """The health monitor probes every adapter at start; a probe's success resets the circuit
    breaker's failure count, so tests begin once it is done, not in the middle of it."""
    async with asyncio.timeout(10.0):
        while await runtime.store.get(f"health:probe:{SYSTEM}") is None:  # noqa: ASYNC110 - polls the store
            await asyncio.sleep(0.02)


@asynccontextmanager
async def population_db_rig(
    tmp_path: Path,
    *,
    backend: str = "sqlite",
    redis_url: str | None = None,
    adapter: dict[str, Any] | None = None,
    logging_level: str = "WARNING",
    log_handler: logging.Handler | None = None,
    signing_peers: dict[str, Any] | None = None,
) -> AsyncIterator[Rig]:
    """``log_handler`` is attached to the root logger once the sandbox is built (building a
    Litestar simulator app reconfigures the standard library's logging, dropping handlers)."""
    pki = ensure_dev_pki(tmp_path / "pki", [SYSTEM])
    store, prefix = _store_settings(backend, tmp_path, redis_url)
    settings = rig_settings(
        tmp_path,
        pki,
        store,
        adapter=adapter,
        logging_level=logging_level,
        signing_peers=signing_peers,
    )
    sandbox = build_sandbox(settings)
    if log_handler is not None and log_handler not in logging.getLogger().handlers:
        logging.getLogger().addHandler(log_handler)
    try:
        async with serving(sandbox) as sandbox_url:
            app = create_app(settings, sandbox_url=sandbox_url)
            async with serving(app) as gateway, httpx.AsyncClient(timeout=30) as http:
                await _first_probe_done(app.state.runtime)
                yield Rig(
                    gateway=gateway,
                    sandbox_url=sandbox_url,
                    sandbox=sandbox,
                    runtime=app.state.runtime,
                    settings=settings,
                    pki=pki,
                    http=http,
                )
    finally:
        if backend == "redis" and redis_url is not None:
            await drop_redis_prefix(redis_url, prefix)
