"""Durable jobs: the queue's front door, the retry policy and the worker pool.

- :class:`JobQueue` enqueues into ``store.jobs`` with the kind's bound (``Overloaded`` past
  it) and knows every handler: the core's (:func:`register_handler` or
  :meth:`JobQueue.register_handler`) and the adapters' (``Adapter.job_handlers()``).
- :func:`plan_failure` is the retry policy, a pure function: exponential backoff with full
  jitter (or an explicit schedule), bounded by attempts and by a deadline, honouring the
  error's ``retry_after``; ``CircuitOpen`` defers without counting an attempt; a permanent
  error dead-letters at once.
- :class:`WorkerPool` runs N asyncio workers: lease with a visibility timeout, heartbeat long
  jobs, run the handler with the job's request id in the context, then ack / retry / defer /
  dead-letter, and publish ``job.succeeded`` / ``job.failed`` for client commands. ``stop()``
  stops leasing, lets in-flight jobs finish within the grace period, and defers the rest.

The delivery guarantee is at least once (see docs/jobs.md): a job is acknowledged only after
its handler returned, and a worker that dies leaves a lease that expires.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import math
import os
import random
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

import httpx
import structlog
from prometheus_client import Counter, Gauge, Histogram

from gateway.errors import CircuitOpen, GatewayError, Overloaded, StoreUnavailable
from gateway.observability import request_id_var
from gateway.settings import JobKindPolicy, JobSettings
from gateway.store.base import Attempt, Job, NewJob, QueueFull, QueueStats, Store
from gateway.store.ids import new_id

if TYPE_CHECKING:
    from gateway.adapters import AdapterRegistry

__all__ = [
    "DEFAULT_DEFER_SECONDS",
    "OVERLOADED_RETRY_AFTER",
    "Doorbell",
    "EventSink",
    "FailurePlan",
    "HandlerSpec",
    "JobHandler",
    "JobQueue",
    "NoHandler",
    "WorkerPool",
    "backoff_delay",
    "plan_failure",
    "register_handler",
]

log = structlog.get_logger(__name__)

#: runs one job; returns a JSON-able result stored with the acknowledged job
JobHandler = Callable[[Job], Awaitable[dict[str, Any] | None]]

#: Retry-After given to callers when a kind's bounded queue is full
OVERLOADED_RETRY_AFTER = 30.0
#: how long the id of an outcome event that could not be published is remembered (the job
#: runs again long before: it is deferred by seconds, at most by its kind's backoff_max)
OUTCOME_EVENT_ID_TTL = 7 * 86400.0
#: how long a job waits when its circuit is open and the error names no Retry-After
DEFAULT_DEFER_SECONDS = 5.0

JOBS_ENQUEUED = Counter("gateway_jobs_enqueued_total", "Jobs enqueued", ["kind"])
JOBS_REJECTED = Counter(
    "gateway_jobs_rejected_total", "Enqueues refused because the kind's queue is full", ["kind"]
)
JOBS_FINISHED = Counter(
    "gateway_jobs_runs_total",
    "Job runs by outcome (succeeded, retried, deferred, dead, unpublished)",
    ["kind", "outcome"],
)
JOB_SECONDS = Histogram("gateway_job_run_seconds", "Time a handler ran", ["kind"])
# read from the store (shared by every process): with several server processes the last
# reading wins, rather than one series per process id
QUEUE_DEPTH = Gauge(
    "gateway_queue_jobs",
    "Jobs per kind and state",
    ["kind", "state"],
    multiprocess_mode="mostrecent",
)
QUEUE_OLDEST = Gauge(
    "gateway_queue_oldest_due_age_seconds",
    "Age of the oldest due queued job",
    ["kind"],
    multiprocess_mode="mostrecent",
)


#: kinds this process has exported gauges for
_EXPORTED_KINDS: set[str] = set()


async def export_queue_stats(store: Store) -> None:
    """Set the queue gauges from the store: at every scrape of ``/metrics`` (so a server with
    no workers exports them too) and periodically in the worker pool."""
    stats = await store.jobs.stats(now=time.time())
    # the store lists only kinds with jobs: a kind that drained must read 0, not its last value
    for kind in _EXPORTED_KINDS - {stat.kind for stat in stats}:
        stats.append(QueueStats(kind=kind, queued=0, in_flight=0, dead=0, oldest_due_age=None))
    for stat in stats:
        _EXPORTED_KINDS.add(stat.kind)
        QUEUE_DEPTH.labels(stat.kind, "queued").set(stat.queued)
        QUEUE_DEPTH.labels(stat.kind, "in_flight").set(stat.in_flight)
        QUEUE_DEPTH.labels(stat.kind, "dead").set(stat.dead)
        QUEUE_OLDEST.labels(stat.kind).set(stat.oldest_due_age or 0.0)


# ---------------------------------------------------------------- handlers


@dataclass(frozen=True, slots=True)
class HandlerSpec:
    kind: str
    fn: JobHandler
    #: the kind's policy unless ``jobs.policies`` in the configuration names it
    policy: JobKindPolicy | None = None


_CORE_HANDLERS: dict[str, HandlerSpec] = {}


def register_handler(kind: str, fn: JobHandler, *, policy: JobKindPolicy | None = None) -> None:
    """Register a process-wide core handler (every JobQueue of the process sees it).

    Handlers that need one runtime's services register on that runtime's queue instead:
    ``runtime.jobs.register_handler(kind, fn)``.
    """
    _CORE_HANDLERS[kind] = HandlerSpec(kind, fn, policy)


class NoHandler(GatewayError):
    """No handler for the job's kind in this process. Retryable: during a rolling deploy
    another worker may know the kind; past the kind's attempts the job is dead-lettered."""

    status = 500
    slug = "no-job-handler"
    title = "No handler is registered for this job kind"
    retryable = True


class EventSink(Protocol):
    """What the worker needs of ``gateway.webhooks.EventPublisher``."""

    async def publish(
        self,
        type: str,
        data: dict[str, Any],
        *,
        subject: str | None = None,
        event_id: str | None = None,
    ) -> object: ...


# ---------------------------------------------------------------- retry policy


def backoff_delay(policy: JobKindPolicy, failures: int, rng: random.Random) -> float | None:
    """Seconds to wait after the ``failures``-th failed attempt, or None when no retry is left.

    Explicit schedule: its n-th entry after the n-th failure (the schedule sets the number of
    retries). Otherwise full jitter: uniform(0, min(backoff_max, initial * 2^(n-1))), and at
    most ``max_attempts`` attempts in all.
    """
    if failures < 1:
        raise ValueError("failures counts from 1")
    if policy.schedule is not None:
        if failures > len(policy.schedule):
            return None
        return float(policy.schedule[failures - 1])
    if failures >= policy.max_attempts:
        return None
    exponent = min(failures - 1, 62)  # 2**62 already dwarfs any backoff_max
    cap = min(policy.backoff_max, policy.backoff_initial * math.ldexp(1.0, exponent))
    return rng.uniform(0.0, cap)


@dataclass(frozen=True, slots=True)
class FailurePlan:
    """What to do with a job whose handler raised."""

    action: Literal["retry", "defer", "dead"]
    #: when it may run again (retry, defer)
    run_at: float | None
    #: the attempt to record (None for defer: an open circuit is not an attempt)
    attempt: Attempt | None
    #: why, for logs
    reason: str


def _is_transient(exc: BaseException) -> bool:
    # faults a handler let through untranslated that are transient by nature
    return isinstance(exc, TimeoutError | ConnectionError | httpx.TransportError)


def describe_error(exc: BaseException) -> tuple[str, str, bool]:
    """(safe text, type, retryable) for an attempt record. Gateway errors carry safe
    details; anything else is named by class only, since its message may hold personal data."""
    if isinstance(exc, GatewayError):
        return exc.detail, exc.slug, exc.retryable
    name = type(exc).__name__
    if _is_transient(exc):
        return f"transient error ({name})", name, True
    return f"unexpected error ({name}); see the logs for this request id", name, False


def plan_failure(
    job: Job,
    exc: BaseException,
    policy: JobKindPolicy,
    *,
    now: float,
    started_at: float,
    request_id: str | None,
    rng: random.Random,
) -> FailurePlan:
    """The retry policy around one failed run (pure: the time and randomness come in)."""
    if isinstance(exc, CircuitOpen):
        wait = exc.retry_after if exc.retry_after is not None else DEFAULT_DEFER_SECONDS
        # a little spread, so deferred jobs do not all hit a half-open circuit together
        wait *= 1.0 + rng.uniform(0.0, 0.2)
        return FailurePlan("defer", now + wait, None, "circuit open")

    text, error_type, retryable = describe_error(exc)
    attempt = Attempt(
        at=started_at,
        error=text,
        error_type=error_type,
        request_id=request_id,
        retryable=retryable,
    )
    if not retryable:
        return FailurePlan("dead", None, attempt, "permanent error")

    failures = job.attempt_count + 1
    delay = backoff_delay(policy, failures, rng)
    if delay is None:
        return FailurePlan("dead", None, attempt, f"retries exhausted after {failures} attempts")
    retry_after = getattr(exc, "retry_after", None)
    if isinstance(retry_after, int | float) and retry_after > delay:
        delay = float(retry_after)
    first_at = job.attempts[0].at if job.attempts else started_at
    if now + delay - first_at > policy.deadline:
        return FailurePlan("dead", None, attempt, "deadline exceeded")
    return FailurePlan("retry", now + delay, attempt, f"retry {failures} in {delay:.3f}s")


# ---------------------------------------------------------------- the queue


class Doorbell:
    """Wakes ONE idle worker per ring. An asyncio.Event would wake every idle worker for
    each enqueued job, and all but one would make an empty lease call to the store."""

    def __init__(self) -> None:
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    def set(self) -> None:
        """Ring: wake one waiting worker, if any (a busy one leases again by itself)."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def wake_all(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)

    async def wait(self, seconds: float) -> None:
        """Until rung or ``seconds`` passed."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await asyncio.wait_for(waiter, seconds)
        except TimeoutError:
            pass
        finally:
            with contextlib.suppress(ValueError):
                self._waiters.remove(waiter)


class JobQueue:
    """Enqueue jobs and resolve handlers and policies by kind. One per runtime."""

    def __init__(
        self,
        settings: JobSettings,
        store: Store,
        *,
        registry: AdapterRegistry | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.registry = registry
        self._handlers: dict[str, HandlerSpec] = {}
        self._adapter_handlers: dict[str, HandlerSpec] = {}
        self._adapters_seen: frozenset[str] = frozenset()
        #: rung on every local enqueue so an idle worker of this process wakes at once
        self.wakeup = Doorbell()

    # handlers -------------------------------------------------------------------------
    def register_handler(
        self, kind: str, fn: JobHandler, *, policy: JobKindPolicy | None = None
    ) -> None:
        """Register a handler for this runtime only (wins over process-wide ones)."""
        self._handlers[kind] = HandlerSpec(kind, fn, policy)

    def _refresh_adapter_handlers(self) -> None:
        if self.registry is None:
            return
        names = frozenset(self.registry.instances)
        if names == self._adapters_seen:
            return
        found: dict[str, HandlerSpec] = {}
        for adapter in self.registry.instances.values():
            for kind, fn in adapter.job_handlers().items():
                found[kind] = HandlerSpec(kind, fn)
        self._adapter_handlers = found
        self._adapters_seen = names

    def handler(self, kind: str) -> HandlerSpec | None:
        spec = self._handlers.get(kind) or _CORE_HANDLERS.get(kind)
        if spec is not None:
            return spec
        spec = self._adapter_handlers.get(kind)
        if spec is None:
            # adapters are instantiated after the queue exists; look again on a miss
            self._refresh_adapter_handlers()
            spec = self._adapter_handlers.get(kind)
        return spec

    def kinds(self) -> list[str]:
        self._refresh_adapter_handlers()
        return sorted({*_CORE_HANDLERS, *self._handlers, *self._adapter_handlers})

    def policy(self, kind: str) -> JobKindPolicy:
        """``jobs.policies`` by kind, then by adapter prefix, then the handler's own default,
        then ``jobs.default_policy``."""
        configured = self.settings.policies
        if kind in configured:
            return configured[kind]
        system = system_of(kind)
        if system in configured:
            return configured[system]
        spec = self._handlers.get(kind) or _CORE_HANDLERS.get(kind)
        if spec is not None and spec.policy is not None:
            return spec.policy
        return self.settings.default_policy

    # enqueue --------------------------------------------------------------------------
    async def enqueue(
        self,
        kind: str,
        payload: dict[str, Any],
        *,
        ordering_key: str | None = None,
        dedupe_key: str | None = None,
        run_at: float | None = None,
        client_id: str | None = None,
    ) -> Job:
        """Add a durable job (the request id comes from the context).

        Raises ``Overloaded`` (503, Retry-After) when the kind's bounded queue is full.
        With a known ``dedupe_key``, returns the existing job.
        """
        new = NewJob(
            kind=kind,
            payload=payload,
            ordering_key=ordering_key,
            dedupe_key=dedupe_key,
            run_at=run_at,
            request_id=request_id_var.get(None),
            client_id=client_id,
        )
        try:
            job, created = await self.store.jobs.enqueue(
                new, max_queued=self.policy(kind).max_queued
            )
        except QueueFull:
            JOBS_REJECTED.labels(kind).inc()
            raise Overloaded(
                f"the queue for {kind} is full; retry later",
                retry_after=OVERLOADED_RETRY_AFTER,
            ) from None
        if created:
            JOBS_ENQUEUED.labels(kind).inc()
            self.wakeup.set()
        return job

    async def get(self, job_id: str) -> Job | None:
        return await self.store.jobs.get(job_id)


def system_of(kind: str) -> str:
    """The adapter (or core area) a kind belongs to: ``national_portal.sync`` ->
    ``national_portal``."""
    return kind.split(".", 1)[0]


# ---------------------------------------------------------------- workers


def default_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class WorkerPool:
    """N asyncio workers over one JobQueue."""

    def __init__(
        self,
        queue: JobQueue,
        *,
        concurrency: int,
        events: Callable[[], EventSink | None] | None = None,
        owner: str | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.queue = queue
        self.store = queue.store
        self.settings = queue.settings
        self.concurrency = concurrency
        self._events = events or (lambda: None)
        self.owner = owner or default_owner()
        self._rng = rng or random.Random()
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._stats_task: asyncio.Task[None] | None = None
        #: jobs being run right now, by id
        self.in_flight: dict[str, Job] = {}

    @property
    def running(self) -> bool:
        return bool(self._tasks) and not self._stopping.is_set()

    @property
    def visibility(self) -> float:
        return self.settings.visibility_timeout

    def start(self) -> None:
        if self._tasks:
            return
        self._stopping.clear()
        for i in range(self.concurrency):
            owner = f"{self.owner}/{i}"
            self._tasks.append(asyncio.create_task(self._worker(owner), name=f"job-worker-{i}"))
        self._stats_task = asyncio.create_task(self._stats_loop(), name="job-stats")
        log.info("workers started", concurrency=self.concurrency, owner=self.owner)

    async def stop(self, grace_period: float | None = None) -> None:
        """Stop leasing; let in-flight jobs finish within the grace period; defer the rest."""
        grace = self.settings.grace_period if grace_period is None else grace_period
        self._stopping.set()
        self.queue.wakeup.wake_all()
        if self._stats_task is not None:
            self._stats_task.cancel()
        tasks, self._tasks = self._tasks, []
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=grace)
            for task in pending:
                task.cancel()  # the worker defers its job before it ends
            if pending:
                log.warning("grace period over; deferring unfinished jobs", count=len(pending))
                await asyncio.wait(pending, timeout=10.0)
        if self._stats_task is not None:
            await asyncio.gather(self._stats_task, return_exceptions=True)
            self._stats_task = None
        log.info("workers stopped", owner=self.owner)

    # the loop -------------------------------------------------------------------------
    async def _worker(self, owner: str) -> None:
        store_down_wait = 0.1
        while not self._stopping.is_set():
            try:
                job = await self.store.jobs.lease(
                    owner, visibility=self.visibility, now=time.time()
                )
            except StoreUnavailable:
                # the store is down (readiness says so); keep trying, gently
                await self._idle(store_down_wait)
                store_down_wait = min(store_down_wait * 2, 2.0)
                continue
            except Exception:
                log.exception("leasing a job failed")
                await self._idle(1.0)
                continue
            store_down_wait = 0.1
            if job is None:
                await self._idle(self.settings.poll_interval)
                continue
            self.in_flight[job.id] = job
            try:
                await self._run(job, owner)
            except asyncio.CancelledError:
                raise
            except Exception:
                # never let one job end the worker; its lease expires and it runs again
                log.exception("settling a job failed", job_id=job.id, kind=job.kind)
            finally:
                self.in_flight.pop(job.id, None)

    async def _idle(self, seconds: float) -> None:
        if not self._stopping.is_set():
            await self.queue.wakeup.wait(seconds)

    async def _run(self, job: Job, owner: str) -> None:
        request_id = job.request_id or f"job-{job.id}"
        token = request_id_var.set(request_id)
        heartbeat = _Heartbeat(self.store, job.id, owner, self.visibility)
        started = time.time()
        try:
            spec = self.queue.handler(job.kind)
            try:
                if spec is None:
                    raise NoHandler(f"no handler for job kind {job.kind!r} in this process")
                with JOB_SECONDS.labels(job.kind).time():
                    result = await spec.fn(job)
            except asyncio.CancelledError:
                # shutdown past the grace period: give the job back at once, no attempt counted
                heartbeat.cancel()
                await asyncio.shield(self._defer(job, owner, time.time()))
                raise
            except Exception as exc:
                heartbeat.cancel()
                await self._failed(job, owner, exc, started, request_id, heartbeat.lease_until)
            else:
                heartbeat.cancel()
                await self._succeeded(
                    job, owner, result, started, request_id, heartbeat.lease_until
                )
        finally:
            heartbeat.cancel()
            request_id_var.reset(token)

    async def _succeeded(
        self,
        job: Job,
        owner: str,
        result: dict[str, Any] | None,
        started: float,
        request_id: str,
        lease_until: float,
    ) -> None:
        attempt = Attempt(at=started, request_id=request_id)
        unpublished = await self._publish(
            job,
            "job.succeeded",
            {"result": result, "attempts": job.attempt_count + 1},
        )
        if unpublished is not None:
            await self._give_back_unpublished(job, owner, unpublished)
            return
        done = await self._store_call(
            lambda: self.store.jobs.ack(
                job.id, owner, now=time.time(), attempt=attempt, result=result
            ),
            lease_until,
        )
        JOBS_FINISHED.labels(job.kind, "succeeded").inc()
        if not done:
            log.warning("ack refused: the lease was lost; the job may run again", job_id=job.id)

    async def _failed(
        self,
        job: Job,
        owner: str,
        exc: Exception,
        started: float,
        request_id: str,
        lease_until: float,
    ) -> None:
        now = time.time()
        plan = plan_failure(
            job,
            exc,
            self.queue.policy(job.kind),
            now=now,
            started_at=started,
            request_id=request_id,
            rng=self._rng,
        )
        if not isinstance(exc, GatewayError):
            # the attempt record names only the class; the log keeps the trace
            log.error("job handler raised", job_id=job.id, kind=job.kind, exc_info=exc)
        if plan.action == "defer":
            assert plan.run_at is not None
            await self._defer(job, owner, plan.run_at)
            JOBS_FINISHED.labels(job.kind, "deferred").inc()
            return
        assert plan.attempt is not None
        attempt = plan.attempt
        if plan.action == "retry":
            assert plan.run_at is not None
            run_at = plan.run_at
            await self._store_call(
                lambda: self.store.jobs.retry(job.id, owner, run_at=run_at, attempt=attempt),
                lease_until,
            )
            JOBS_FINISHED.labels(job.kind, "retried").inc()
            log.info(
                "job will be retried",
                job_id=job.id,
                kind=job.kind,
                error_type=attempt.error_type,
                reason=plan.reason,
            )
            return
        unpublished = await self._publish(
            job,
            "job.failed",
            {
                "error": attempt.error,
                "error_type": attempt.error_type,
                "attempts": job.attempt_count + 1,
            },
        )
        if unpublished is not None:
            await self._give_back_unpublished(job, owner, unpublished)
            return
        await self._store_call(
            lambda: self.store.jobs.dead_letter(job.id, owner, now=time.time(), attempt=attempt),
            lease_until,
        )
        JOBS_FINISHED.labels(job.kind, "dead").inc()
        log.warning(
            "job dead-lettered",
            job_id=job.id,
            kind=job.kind,
            error_type=attempt.error_type,
            reason=plan.reason,
        )

    async def _defer(self, job: Job, owner: str, run_at: float) -> None:
        try:
            await self.store.jobs.defer(job.id, owner, run_at=run_at)
        except Exception:
            # the lease will expire and the job runs again; nothing is lost
            log.warning("deferring a job failed; its lease will expire", job_id=job.id)

    async def _store_call(self, call: Callable[[], Awaitable[bool]], lease_until: float) -> bool:
        """A settling write, retried while the store is down and the lease still ours."""
        wait = 0.05
        while True:
            try:
                return await call()
            except StoreUnavailable:
                if time.time() + wait > lease_until:
                    log.warning("store down past the lease; the job will run again")
                    return False
                await asyncio.sleep(wait)
                wait = min(wait * 2, 1.0)

    async def _publish(self, job: Job, event_type: str, extra: dict[str, Any]) -> Exception | None:
        """Publish the job's outcome event before the job is settled; None when done.

        A failure (the webhook queue full, the store down) is returned, not swallowed: the
        caller then gives the job back instead of settling it, so the outcome is published
        when it runs again. The id is remembered, so an event appended before its deliveries
        failed is finished on the next run (same id, one delivery per endpoint), never
        appended a second time."""
        # events go to the provincial system about its own commands only; internal jobs
        # (webhook deliveries, schedules) have no client and would otherwise feed back
        if job.client_id is None:
            return None
        sink = self._events()
        if sink is None:
            return None
        data = {"job_id": job.id, "kind": job.kind, "client_id": job.client_id, **extra}
        # one outcome = one run past the job's recorded attempts; a give-back records none
        key = f"jobs:outcome-event:{job.id}:{event_type}:{job.attempt_count}"
        event_id: str | None = None
        try:
            event_id = await self._known_outcome_event(key)
            fresh = event_id is None
            if event_id is None:
                event_id = new_id()
            await sink.publish(event_type, data, subject=job.ordering_key, event_id=event_id)
        except Exception as exc:
            log.warning(
                "publishing a job event failed; the job will run again",
                job_id=job.id,
                type=event_type,
                error_type=type(exc).__name__,
            )
            if event_id is not None:
                with contextlib.suppress(Exception):
                    await self.store.set(key, event_id.encode("ascii"), ttl=OUTCOME_EVENT_ID_TTL)
            return exc
        if not fresh:
            with contextlib.suppress(Exception):
                await self.store.delete(key)
        return None

    async def _known_outcome_event(self, key: str) -> str | None:
        """The id of this outcome's event if an earlier run appended it (None: a new id)."""
        raw = await self.store.get(key)
        if raw is None:
            return None
        event_id = raw.decode("ascii")
        # appended? then finish it under its id; if not, a fresh id keeps the feed's cursor
        # order (an old id could sort before a cursor that already moved on)
        return event_id if await self.store.events.get(event_id) is not None else None

    async def _give_back_unpublished(self, job: Job, owner: str, error: Exception) -> None:
        """Give the job back unsettled, without counting an attempt, to publish its outcome
        on the next run: the handler runs again (commands are delivered at least once)."""
        policy = self.queue.policy(job.kind)
        retry_after = getattr(error, "retry_after", None)
        wait = retry_after if isinstance(retry_after, int | float) else policy.backoff_initial
        await self._defer(job, owner, time.time() + max(0.05, min(wait, policy.backoff_max)))
        JOBS_FINISHED.labels(job.kind, "unpublished").inc()

    async def _stats_loop(self, every: float = 15.0) -> None:
        while not self._stopping.is_set():
            try:
                await export_queue_stats(self.store)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.debug("queue stats unavailable")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=every)


class _Heartbeat:
    """Extends a lease while a long handler runs. Starts only after a third of the visibility
    timeout, so short jobs cost one timer and nothing else."""

    def __init__(self, store: Store, job_id: str, owner: str, visibility: float) -> None:
        self.store = store
        self.job_id = job_id
        self.owner = owner
        self.visibility = visibility
        self.interval = max(visibility / 3.0, 0.05)
        #: until when the lease is ours (the lease was taken just before this object)
        self.lease_until = time.time() + visibility
        self._task: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = asyncio.get_running_loop().call_later(
            self.interval, self._begin
        )

    def _begin(self) -> None:
        self._timer = None
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def _loop(self) -> None:
        while True:
            try:
                now = time.time()
                held = await self.store.jobs.heartbeat(
                    self.job_id, self.owner, visibility=self.visibility, now=now
                )
                if not held:
                    log.warning(
                        "lease lost while running; the job may run twice", job_id=self.job_id
                    )
                    return
                self.lease_until = now + self.visibility
            except StoreUnavailable:
                pass
            await asyncio.sleep(self.interval)

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._task is not None:
            self._task.cancel()
            self._task = None
