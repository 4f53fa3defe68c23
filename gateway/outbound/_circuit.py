"""A circuit breaker whose state lives in the store, so every instance agrees.

Keys (under the store's own prefix):

- ``outbound:circuit:<adapter>``: JSON ``{"state": "closed" | "open" | "half_open", ...}``;
  absent means closed. Every transition is a compare-and-set against the exact bytes read,
  so two instances can never both win a transition: in particular exactly one call becomes
  the half-open probe.
- ``outbound:circuit:<adapter>:failures``: a counter of breaker failures, created with a TTL
  of ``window`` seconds; reaching ``failure_threshold`` opens the circuit.

The hot path costs no store round trip: an instance trusts its last reading for
``state_cache_seconds`` (and an open circuit until it may be probed). A success resets the
shared failure counter when this instance saw failures recently (consecutive-failure
semantics without a write per successful call).

If the store is unreachable the breaker fails open (calls proceed, a warning is logged):
losing the shared breaker must not take every national system down with it.
"""

from __future__ import annotations

import enum
import json
import time
import uuid
from dataclasses import dataclass

import structlog

from gateway.errors import CircuitOpen, StoreUnavailable
from gateway.outbound._metrics import CIRCUIT_STATE, CIRCUIT_STATE_VALUES
from gateway.outbound._policy import CircuitPolicy
from gateway.store.base import Store

__all__ = ["CircuitBreaker", "CircuitState", "Permit"]

log = structlog.get_logger(__name__)


class CircuitState(enum.StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True, slots=True)
class _Reading:
    state: CircuitState
    raw: bytes | None
    #: open: when a probe may be tried
    open_until: float = 0.0
    #: half-open: when the probe's claim lapses (its caller died or gave up)
    probe_until: float = 0.0
    reason: str | None = None
    #: time.monotonic() of the reading
    read_at: float = 0.0


@dataclass(frozen=True, slots=True)
class Permit:
    """Leave to make one attempt; a probe must report its outcome to settle the circuit."""

    probe: bool = False
    claim: bytes | None = None


_NO_PROBE = Permit()


def _decode(raw: bytes | None, read_at: float) -> _Reading:
    if raw is None:
        return _Reading(CircuitState.CLOSED, None, read_at=read_at)
    try:
        data = json.loads(raw)
        state = CircuitState(data.get("state", "closed"))
    except (ValueError, TypeError):
        return _Reading(CircuitState.CLOSED, raw, read_at=read_at)
    return _Reading(
        state,
        raw,
        open_until=float(data.get("open_until") or 0.0),
        probe_until=float(data.get("probe_until") or 0.0),
        reason=data.get("reason"),
        read_at=read_at,
    )


def _encode(**fields: object) -> bytes:
    return json.dumps(fields, separators=(",", ":"), sort_keys=True).encode()


class CircuitBreaker:
    def __init__(self, adapter: str, policy: CircuitPolicy, store: Store) -> None:
        self.adapter = adapter
        self.policy = policy
        self.store = store
        self._key = f"outbound:circuit:{adapter}"
        self._failures_key = f"outbound:circuit:{adapter}:failures"
        self._owner = uuid.uuid4().hex
        self._reading: _Reading | None = None
        #: this instance counted a failure until then (a success should reset the counter)
        self._saw_failures_until = 0.0
        CIRCUIT_STATE.labels(adapter=adapter).set(0)

    # -- reading ----------------------------------------------------------------------
    def _remember(self, reading: _Reading) -> _Reading:
        previous = self._reading.state if self._reading else None
        self._reading = reading
        CIRCUIT_STATE.labels(adapter=self.adapter).set(CIRCUIT_STATE_VALUES[reading.state])
        if previous is not None and previous != reading.state:
            log.info(
                "circuit state seen",
                adapter=self.adapter,
                state=str(reading.state),
                previous=str(previous),
            )
        return reading

    async def _read(self, *, fresh: bool = False) -> _Reading:
        cached = self._reading
        now_mono = time.monotonic()
        if not fresh and cached is not None:
            if cached.state is CircuitState.OPEN and time.time() < cached.open_until:
                return cached  # nothing can change before it may be probed
            if now_mono - cached.read_at < self.policy.state_cache_seconds:
                return cached
        try:
            raw = await self.store.get(self._key)
        except StoreUnavailable:
            log.warning("circuit state unreadable; failing open", adapter=self.adapter)
            return _Reading(CircuitState.CLOSED, None, read_at=now_mono)
        return self._remember(_decode(raw, now_mono))

    async def state(self) -> CircuitState:
        """The shared state, read now. An open circuit whose pause is over reports
        half-open: the next call will probe."""
        reading = await self._read(fresh=True)
        if reading.state is CircuitState.OPEN and time.time() >= reading.open_until:
            return CircuitState.HALF_OPEN
        return reading.state

    def local_state(self) -> CircuitState:
        """This instance's last reading (no store round trip)."""
        return self._reading.state if self._reading else CircuitState.CLOSED

    # -- before a call ------------------------------------------------------------------
    async def before_call(self, *, probe_lease: float) -> Permit:
        """Raise CircuitOpen, or give leave to call (possibly as the single probe)."""
        if not self.policy.enabled:
            return _NO_PROBE
        reading = await self._read()
        if reading.state is CircuitState.CLOSED:
            return _NO_PROBE
        now = time.time()
        if reading.state is CircuitState.OPEN and now < reading.open_until:
            raise self._open_error(reading.open_until - now, reading.reason)
        if reading.state is CircuitState.HALF_OPEN and now < reading.probe_until:
            raise self._open_error(
                min(reading.probe_until - now, self.policy.open_duration),
                "a recovery probe is in flight",
            )
        # the pause is over (or a probe's claim lapsed): try to become the one probe
        claim = _encode(
            state="half_open",
            probe_until=now + probe_lease,
            owner=self._owner,
            reason=reading.reason,
        )
        try:
            won = await self.store.compare_and_set(self._key, reading.raw, claim)
        except StoreUnavailable:
            log.warning("circuit state unwritable; failing open", adapter=self.adapter)
            return _NO_PROBE
        if won:
            self._remember(_decode(claim, time.monotonic()))
            log.info("circuit half-open: probing", adapter=self.adapter)
            return Permit(probe=True, claim=claim)
        self._reading = None  # someone else moved first: read again next time
        raise self._open_error(1.0, "a recovery probe is in flight")

    def _open_error(self, retry_after: float, reason: str | None) -> CircuitOpen:
        detail = f"{self.adapter}: calls are paused after repeated failures"
        if reason:
            detail += f" (last: {reason})"
        return CircuitOpen(detail, system=self.adapter, retry_after=max(retry_after, 0.001))

    # -- after a call -------------------------------------------------------------------
    async def on_success(self, permit: Permit) -> None:
        if not self.policy.enabled:
            return
        try:
            if permit.probe:
                closed = _encode(state="closed")
                if await self.store.compare_and_set(self._key, permit.claim, closed):
                    await self.store.delete(self._failures_key)
                    self._saw_failures_until = 0.0
                    self._remember(_decode(closed, time.monotonic()))
                    log.info("circuit closed: probe succeeded", adapter=self.adapter)
                return
            if self._saw_failures_until and time.time() < self._saw_failures_until:
                self._saw_failures_until = 0.0
                await self.store.delete(self._failures_key)
        except StoreUnavailable:
            log.warning("circuit state unwritable", adapter=self.adapter)

    async def on_failure(self, permit: Permit, reason: str) -> None:
        if not self.policy.enabled:
            return
        now = time.time()
        try:
            if permit.probe:
                reopened = self._opened(now, reason)
                if await self.store.compare_and_set(self._key, permit.claim, reopened):
                    self._remember(_decode(reopened, time.monotonic()))
                    log.warning(
                        "circuit re-opened: probe failed", adapter=self.adapter, reason=reason
                    )
                return
            count = await self.store.incr(self._failures_key, ttl=self.policy.window)
            self._saw_failures_until = now + self.policy.window
            if count >= self.policy.failure_threshold:
                await self._open(now, reason, count)
        except StoreUnavailable:
            log.warning("circuit state unwritable", adapter=self.adapter)

    def _opened(self, now: float, reason: str) -> bytes:
        return _encode(
            state="open",
            opened_at=now,
            open_until=now + self.policy.open_duration,
            reason=reason,
        )

    async def _open(self, now: float, reason: str, count: int) -> None:
        reading = await self._read(fresh=True)
        if reading.state is not CircuitState.CLOSED:
            return
        opened = self._opened(now, reason)
        if await self.store.compare_and_set(self._key, reading.raw, opened):
            self._remember(_decode(opened, time.monotonic()))
            log.warning(
                "circuit opened",
                adapter=self.adapter,
                failures=count,
                reason=reason,
                open_seconds=self.policy.open_duration,
            )
        else:
            self._reading = None
