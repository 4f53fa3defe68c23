"""The scheduler: periodic jobs, enqueued by exactly one instance.

Every instance runs a :class:`Scheduler`; each pass it tries to take (or renew) the store lock
``scheduler``. Only the holder enqueues. For each schedule the last enqueued tick is kept in
the store together with the holder's fencing token, so:

- a tick missed while no instance ran is enqueued **once** (the latest due tick), never once
  per missed period;
- a paused former holder whose lock expired (an older token than the one stored) writes
  nothing, and the per-tick dedupe key turns any enqueue that slipped through into a no-op.

Ticks: an interval schedule ticks at multiples of its interval since the epoch (so every
instance agrees on them) and runs at once the first time it is seen; a cron schedule ticks at
the expression's times in Asia/Ho_Chi_Minh and first runs at its next time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

import structlog
from croniter import croniter

from gateway.adapters import ScheduledJob
from gateway.errors import ConfigurationError, GatewayError, StoreUnavailable

if TYPE_CHECKING:
    from gateway.adapters import AdapterRegistry
    from gateway.jobs import JobQueue

__all__ = [
    "LOCK_NAME",
    "SCHEDULE_TZ",
    "Schedule",
    "Scheduler",
    "TickPlan",
    "due_tick",
    "next_tick",
    "plan_tick",
]

log = structlog.get_logger(__name__)

SCHEDULE_TZ = ZoneInfo("Asia/Ho_Chi_Minh")
LOCK_NAME = "scheduler"
STATE_PREFIX = "scheduler:last:"


@dataclass(frozen=True, slots=True)
class Schedule:
    """A ScheduledJob with its globally unique name (``<adapter>.<name>``)."""

    name: str
    job: ScheduledJob

    def __post_init__(self) -> None:
        has_interval = self.job.interval_seconds is not None
        has_cron = self.job.cron is not None
        if has_interval == has_cron:
            raise ConfigurationError(
                f"schedule {self.name}: give exactly one of interval_seconds and cron"
            )
        if has_interval and (self.job.interval_seconds or 0) <= 0:
            raise ConfigurationError(f"schedule {self.name}: interval_seconds must be > 0")
        if self.job.cron is not None and not croniter.is_valid(self.job.cron):
            raise ConfigurationError(f"schedule {self.name}: invalid cron {self.job.cron!r}")


def due_tick(job: ScheduledJob, now: float) -> float:
    """The latest tick at or before ``now``."""
    if job.interval_seconds is not None:
        return math.floor(now / job.interval_seconds) * job.interval_seconds
    assert job.cron is not None
    # croniter's get_prev is strictly before its start; a microsecond later makes it "at or"
    start = datetime.fromtimestamp(now, SCHEDULE_TZ) + timedelta(microseconds=1)
    return float(croniter(job.cron, start).get_prev(float))


def next_tick(job: ScheduledJob, now: float) -> float:
    """The first tick strictly after ``now``."""
    if job.interval_seconds is not None:
        return (math.floor(now / job.interval_seconds) + 1) * job.interval_seconds
    assert job.cron is not None
    return float(croniter(job.cron, datetime.fromtimestamp(now, SCHEDULE_TZ)).get_next(float))


@dataclass(frozen=True, slots=True)
class TickPlan:
    #: the tick to enqueue now, if any
    run: float | None
    #: the value to store as the last tick (None: leave it)
    record: float | None


def plan_tick(job: ScheduledJob, last: float | None, now: float) -> TickPlan:
    """What to do at ``now`` given the last recorded tick.

    However many ticks passed since ``last``, at most one (the latest) is enqueued.
    """
    due = due_tick(job, now)
    if last is None:
        if job.interval_seconds is not None:
            return TickPlan(run=due, record=due)
        return TickPlan(run=None, record=due)  # a cron job waits for its next time
    if due > last:
        return TickPlan(run=due, record=due)
    return TickPlan(run=None, record=None)


def dedupe_key(name: str, tick: float) -> str:
    return f"schedule:{name}:{tick:.3f}"


class Scheduler:
    """Runs in every instance; the ``scheduler`` lock holder enqueues due ticks."""

    def __init__(
        self,
        queue: JobQueue,
        *,
        owner: str,
        registry: AdapterRegistry | None = None,
        resolution: float = 1.0,
        lock_ttl: float = 15.0,
    ) -> None:
        self.queue = queue
        self.store = queue.store
        self.owner = owner
        self.registry = registry
        self.resolution = resolution
        self.lock_ttl = max(lock_ttl, resolution * 3)
        self._extra: dict[str, Schedule] = {}
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        #: the fencing token of the lock while this instance holds it
        self.token: int | None = None

    def register(self, job: ScheduledJob, *, namespace: str = "core") -> None:
        """Add a core schedule (retention purge, probes...), named ``<namespace>.<name>``."""
        schedule = Schedule(f"{namespace}.{job.name}", job)
        self._extra[schedule.name] = schedule

    def schedules(self) -> list[Schedule]:
        found = dict(self._extra)
        if self.registry is not None:
            for adapter_name, adapter in self.registry.instances.items():
                for job in adapter.scheduled_jobs():
                    schedule = Schedule(f"{adapter_name}.{job.name}", job)
                    found[schedule.name] = schedule
        return [found[name] for name in sorted(found)]

    @property
    def is_leader(self) -> bool:
        return self.token is not None

    def start(self) -> None:
        if self._task is None:
            self._stopping.clear()
            self._task = asyncio.create_task(self._loop(), name="scheduler")

    async def stop(self) -> None:
        self._stopping.set()
        task, self._task = self._task, None
        if task is not None:
            await asyncio.gather(task, return_exceptions=True)
        if self.token is not None:
            self.token = None
            try:
                await self.store.release_lock(LOCK_NAME, self.owner)
            except Exception:
                log.warning("releasing the scheduler lock failed; it will expire")

    async def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                await self.run_once(time.time())
            except asyncio.CancelledError:
                raise
            except StoreUnavailable:
                self.token = None
            except Exception:
                log.exception("scheduler pass failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=self._pause(time.time()))

    def _pause(self, now: float) -> float:
        """Until the next tick of any schedule (so ticks fire on time), but at most the
        resolution (the lock must be renewed well within its TTL)."""
        pause = self.resolution
        if self.is_leader:
            try:
                for schedule in self.schedules():
                    pause = min(pause, next_tick(schedule.job, now) - now)
            except Exception:  # noqa: S110 - a broken schedule is logged by the pass itself
                pass
        return max(pause, 0.005)

    async def run_once(self, now: float) -> list[str]:
        """One pass: take or renew the lock; if held, enqueue the due ticks. Returns the
        names of the schedules enqueued."""
        token = await self.store.acquire_lock(LOCK_NAME, self.owner, ttl=self.lock_ttl)
        if token != self.token:
            log.info("scheduler lock", held=token is not None, token=token)
        self.token = token
        if token is None:
            return []
        enqueued: list[str] = []
        for schedule in self.schedules():
            if await self._tick(schedule, token, now):
                enqueued.append(schedule.name)
        return enqueued

    async def _tick(self, schedule: Schedule, token: int, now: float) -> bool:
        key = STATE_PREFIX + schedule.name
        raw = await self.store.get(key)
        last: float | None = None
        if raw is not None:
            state = json.loads(raw)
            if int(state.get("token", 0)) > token:
                # a newer holder has acted: this instance lost the lock and must not write
                self.token = None
                return False
            last = float(state["tick"])
        plan = plan_tick(schedule.job, last, now)
        if plan.record is None:
            return False
        if plan.run is not None:
            try:
                await self.queue.enqueue(
                    schedule.job.kind,
                    dict(schedule.job.payload),
                    dedupe_key=dedupe_key(schedule.name, plan.run),
                )
            except GatewayError as exc:
                # Overloaded and the like: the tick stays due and is tried next pass
                log.warning("scheduled enqueue refused", schedule=schedule.name, error=exc.slug)
                return False
        new = json.dumps({"tick": plan.record, "token": token}).encode()
        await self.store.compare_and_set(key, raw, new)
        return plan.run is not None
