"""Per-system health: active probes plus passive figures from live traffic.

Every instance runs a :class:`HealthMonitor`. The instance holding the ``health-prober`` lock
runs each adapter's probe on ``ops.probe_interval_seconds`` and stores the result, so every
instance shows the same answer. Each instance also publishes its own outbound figures
(latency, error rate, last success and failure) under its instance id; readers merge them.
:func:`assess` turns the figures into up / degraded / down with a reason an operator can act on.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import structlog

from gateway.errors import StoreUnavailable
from gateway.outbound import OperationStats

if TYPE_CHECKING:
    from gateway.runtime import Runtime

__all__ = [
    "REASON_TEXTS",
    "Diagnosis",
    "HealthMonitor",
    "PassiveFigures",
    "ProbeRecord",
    "SystemHealth",
    "assess",
    "diagnose",
    "merge_figures",
]

log = structlog.get_logger(__name__)

State = Literal["up", "degraded", "down", "unknown"]

PROBE_KEY = "health:probe:"
PASSIVE_KEY = "health:passive:"
PROBER_LOCK = "health-prober"

#: thresholds for "degraded"; deliberately simple and documented in docs/dashboard.md
ERROR_RATE_DEGRADED = 0.05
ERROR_RATE_DOWN = 0.5
P95_DEGRADED_MS = 3000.0
CERT_WARNING_DAYS = 30.0


@dataclass(frozen=True, slots=True)
class ProbeRecord:
    ok: bool
    at: float
    latency_ms: float | None = None
    detail: str | None = None


#: what live traffic says about one system: the outbound layer's own figures, so the two
#: never drift; each instance publishes its own and readers merge them
PassiveFigures = OperationStats


def merge_figures(parts: list[OperationStats]) -> OperationStats:
    """Combine instances: counts add up; latency takes the worst instance (conservative)."""
    if not parts:
        return OperationStats()
    successes = [p.last_success for p in parts if p.last_success]
    failures = [p for p in parts if p.last_failure]
    latest_failure = max(failures, key=lambda p: p.last_failure or 0.0) if failures else None

    def worst(values: list[float | None]) -> float | None:
        known = [v for v in values if v is not None]
        return max(known) if known else None

    return OperationStats(
        calls_5m=sum(p.calls_5m for p in parts),
        errors_5m=sum(p.errors_5m for p in parts),
        calls_1h=sum(p.calls_1h for p in parts),
        errors_1h=sum(p.errors_1h for p in parts),
        p50_ms=worst([p.p50_ms for p in parts]),
        p95_ms=worst([p.p95_ms for p in parts]),
        p50_ms_1h=worst([p.p50_ms_1h for p in parts]),
        p95_ms_1h=worst([p.p95_ms_1h for p in parts]),
        last_success=max(successes) if successes else None,
        last_failure=latest_failure.last_failure if latest_failure else None,
        last_failure_reason=latest_failure.last_failure_reason if latest_failure else None,
    )


@dataclass(frozen=True, slots=True)
class SystemHealth:
    name: str
    title: str
    state: State
    reason: str | None
    circuit: str
    probe_ok: bool | None
    probe_at: float | None
    probe_latency_ms: float | None
    #: latency over the last 5 minutes
    p50_ms: float | None
    p95_ms: float | None
    #: latency over the last hour (a slow spell that has passed still shows here)
    p50_ms_1h: float | None
    p95_ms_1h: float | None
    error_rate_5m: float | None
    error_rate_1h: float | None
    last_success: float | None
    last_failure: float | None
    last_failure_reason: str | None
    cert_days_left: float | None
    #: the adapter's English title (``title`` is the Vietnamese one when it has one)
    title_en: str | None = None
    #: the reason as a key of REASON_TEXTS and its arguments (for translations)
    reason_code: str | None = None
    reason_args: dict[str, Any] = field(default_factory=dict)

    @property
    def error_rate_5m_pct(self) -> float | None:
        return None if self.error_rate_5m is None else self.error_rate_5m * 100

    @property
    def error_rate_1h_pct(self) -> float | None:
        return None if self.error_rate_1h is None else self.error_rate_1h * 100

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


#: the English text of each reason (the JSON view and the logs); the dashboard translates the
#: code with the same arguments (gateway/ops/i18n.py, keys ``reason_<code>``)
REASON_TEXTS: dict[str, str] = {
    "circuit_open": "circuit open: calls are paused after repeated failures",
    "probe_failed": "probe failed: {detail}",
    "errors_down": "{rate:.0%} of calls failed in the last 5 minutes",
    "certificate_expired": "certificate expired",
    "no_probe": "no probe result yet",
    "circuit_half_open": "circuit half-open: probing recovery",
    "errors_degraded": "{rate:.0%} of calls failed in the last 5 minutes",
    "slow": "slow: p95 {ms:.0f} ms",
    "slow_probe": "slow probe: {ms:.0f} ms",
    "certificate_expiring": "certificate expires in {days:.0f} days",
    "probe_stale": "probe result is stale",
}


@dataclass(frozen=True, slots=True)
class Diagnosis:
    state: State
    #: a key of REASON_TEXTS, None when up
    code: str | None = None
    args: dict[str, Any] = field(default_factory=dict)

    @property
    def reason(self) -> str | None:
        return REASON_TEXTS[self.code].format(**self.args) if self.code else None


def diagnose(
    probe: ProbeRecord | None,
    passive: PassiveFigures,
    circuit: str,
    cert_days_left: float | None,
    *,
    now: float,
    probe_interval: float,
) -> Diagnosis:
    """up / degraded / down with the first reason that applies, worst first."""
    if circuit == "open":
        return Diagnosis("down", "circuit_open")
    if probe is not None and not probe.ok:
        return Diagnosis("down", "probe_failed", {"detail": probe.detail or "no answer"})
    rate = passive.error_rate_5m
    if rate is not None and passive.calls_5m >= 5 and rate >= ERROR_RATE_DOWN:
        return Diagnosis("down", "errors_down", {"rate": rate})
    if cert_days_left is not None and cert_days_left < 0:
        return Diagnosis("down", "certificate_expired")
    if probe is None and passive.calls_5m == 0:
        return Diagnosis("unknown", "no_probe")
    if circuit == "half_open":
        return Diagnosis("degraded", "circuit_half_open")
    if rate is not None and rate >= ERROR_RATE_DEGRADED:
        return Diagnosis("degraded", "errors_degraded", {"rate": rate})
    if passive.p95_ms is not None and passive.p95_ms >= P95_DEGRADED_MS:
        return Diagnosis("degraded", "slow", {"ms": passive.p95_ms})
    if probe is not None and probe.latency_ms is not None and probe.latency_ms >= P95_DEGRADED_MS:
        return Diagnosis("degraded", "slow_probe", {"ms": probe.latency_ms})
    if cert_days_left is not None and cert_days_left < CERT_WARNING_DAYS:
        return Diagnosis("degraded", "certificate_expiring", {"days": cert_days_left})
    if probe is not None and now - probe.at > probe_interval * 4:
        return Diagnosis("degraded", "probe_stale")
    return Diagnosis("up")


def assess(
    probe: ProbeRecord | None,
    passive: PassiveFigures,
    circuit: str,
    cert_days_left: float | None,
    *,
    now: float,
    probe_interval: float,
) -> tuple[State, str | None]:
    """:func:`diagnose` as (state, English reason)."""
    found = diagnose(
        probe, passive, circuit, cert_days_left, now=now, probe_interval=probe_interval
    )
    return found.state, found.reason


class HealthMonitor:
    """Runs probes (lock holder only), publishes passive figures, and answers snapshots."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.instance_id = uuid.uuid4().hex[:12]
        self.interval = runtime.settings.ops.probe_interval_seconds
        self._task: asyncio.Task[None] | None = None
        self._chain_task: asyncio.Task[None] | None = None

    # -- writing ---------------------------------------------------------------------------
    async def probe_all(self) -> None:
        store = self.runtime.store
        for name, adapter in self.runtime.registry.instances.items():
            started = time.perf_counter()
            try:
                result = await asyncio.wait_for(adapter.probe(), timeout=max(1.0, self.interval))
                record = ProbeRecord(
                    ok=result.ok,
                    at=time.time(),
                    latency_ms=result.latency_ms
                    if result.latency_ms is not None
                    else (time.perf_counter() - started) * 1000,
                    detail=result.detail,
                )
            except TimeoutError:
                record = ProbeRecord(ok=False, at=time.time(), detail="probe timed out")
            except Exception as exc:  # a probe must never take the monitor down
                detail = getattr(exc, "detail", None) or type(exc).__name__
                record = ProbeRecord(ok=False, at=time.time(), detail=str(detail)[:200])
            await store.set(
                PROBE_KEY + name,
                json.dumps(asdict(record)).encode(),
                ttl=self.interval * 20,
            )

    async def publish_passive(self) -> None:
        store = self.runtime.store
        for name, client in list(self.runtime.outbound_clients.items()):
            figures = client.stats().overall
            await store.set(
                f"{PASSIVE_KEY}{name}:{self.instance_id}",
                json.dumps(asdict(figures)).encode(),
                ttl=self.interval * 4,
            )

    async def tick(self) -> None:
        token = await self.runtime.store.acquire_lock(
            PROBER_LOCK, self.instance_id, ttl=self.interval * 3
        )
        if token is not None:
            await self.probe_all()
            if self._chain_task is None or self._chain_task.done():
                self._chain_task = asyncio.create_task(
                    self.check_audit_chain(), name="audit-chain-check"
                )
        await self.publish_passive()

    async def check_audit_chain(self) -> None:
        """Keep the audit chain's status fresh off the request path: a full walk when one is
        due (it takes seconds on a large log), else the records appended since. The exchange
        log page then only checks the few records added after this."""
        from gateway.audit import chain_status

        try:
            await chain_status(self.runtime.store)
        except Exception as exc:  # the store may be down; the next tick tries again
            log.warning("audit chain check failed", error=type(exc).__name__)

    async def _loop(self) -> None:
        while True:
            try:
                await self.tick()
            except Exception as exc:  # the store may be down; readiness reports that
                log.warning("health tick failed", error=type(exc).__name__)
            await asyncio.sleep(self.interval)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="health-monitor")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._chain_task is not None:
            self._chain_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._chain_task
            self._chain_task = None
        # releasing lets another instance probe at once; if the store is down the lock
        # simply expires, so a shutdown never fails on it
        with contextlib.suppress(StoreUnavailable):
            await self.runtime.store.release_lock(PROBER_LOCK, self.instance_id)

    # -- reading ---------------------------------------------------------------------------
    async def snapshot(self) -> list[SystemHealth]:
        store = self.runtime.store
        now = time.time()
        passive_raw = await store.scan(PASSIVE_KEY)
        out: list[SystemHealth] = []
        for name, adapter in sorted(self.runtime.registry.instances.items()):
            raw = await store.get(PROBE_KEY + name)
            probe = ProbeRecord(**json.loads(raw)) if raw else None
            parts = [
                PassiveFigures(**json.loads(v))
                for k, v in passive_raw.items()
                if k.startswith(f"{PASSIVE_KEY}{name}:")
            ]
            passive = merge_figures(parts)
            client = self.runtime.outbound_clients.get(name)
            circuit = str(await client.circuit_state()) if client is not None else "closed"
            cert_days = adapter.certificate_days_left()
            found = diagnose(
                probe, passive, circuit, cert_days, now=now, probe_interval=self.interval
            )
            lang_title = getattr(adapter, "title_vi", None) or getattr(adapter, "title", name)
            out.append(
                SystemHealth(
                    name=name,
                    title=str(lang_title),
                    state=found.state,
                    reason=found.reason,
                    circuit=circuit,
                    probe_ok=probe.ok if probe else None,
                    probe_at=probe.at if probe else None,
                    probe_latency_ms=probe.latency_ms if probe else None,
                    p50_ms=passive.p50_ms,
                    p95_ms=passive.p95_ms,
                    p50_ms_1h=passive.p50_ms_1h,
                    p95_ms_1h=passive.p95_ms_1h,
                    error_rate_5m=passive.error_rate_5m,
                    error_rate_1h=passive.error_rate_1h,
                    last_success=passive.last_success or (probe.at if probe and probe.ok else None),
                    last_failure=passive.last_failure
                    or (probe.at if probe and not probe.ok else None),
                    last_failure_reason=passive.last_failure_reason
                    or (probe.detail if probe and not probe.ok else None),
                    cert_days_left=cert_days,
                    title_en=str(getattr(adapter, "title", None) or name),
                    reason_code=found.code,
                    reason_args=found.args,
                )
            )
        return out
