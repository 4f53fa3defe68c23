"""The worker pool over a real store (SQLite file and Redis): run, ack, retry, defer,
dead-letter, heartbeat, graceful stop, bounded queues."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest

from gateway.errors import CircuitOpen, Overloaded, UpstreamRejected, UpstreamUnavailable
from gateway.jobs import JobQueue, WorkerPool
from gateway.observability import request_id_var
from gateway.settings import JobKindPolicy, JobSettings
from gateway.store.base import Job, JobState, Store

FAST = JobKindPolicy(max_attempts=3, backoff_initial=0.0, backoff_max=0.0)


def job_settings(**kw: object) -> JobSettings:
    base: dict[str, object] = {
        "visibility_timeout": 5.0,
        "poll_interval": 0.02,
        "grace_period": 2.0,
        "default_policy": FAST,
    }
    base.update(kw)
    return JobSettings.model_validate(base)


async def wait_for_state(
    store: Store, job_id: str, states: set[JobState], within: float = 10.0
) -> Job:
    deadline = time.monotonic() + within
    while True:
        job = await store.jobs.get(job_id)
        assert job is not None
        if job.state in states:
            return job
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} stayed {job.state}, wanted {states}")
        await asyncio.sleep(0.02)


async def run_pool(
    queue: JobQueue, body: Callable[[], Awaitable[None]], *, concurrency: int = 2
) -> WorkerPool:
    pool = WorkerPool(queue, concurrency=concurrency)
    pool.start()
    try:
        await body()
    finally:
        await pool.stop()
    return pool


async def test_a_job_runs_once_with_its_request_id_and_is_acknowledged(store: Store) -> None:
    queue = JobQueue(job_settings(), store)
    seen: list[tuple[str, str | None]] = []

    async def handler(job: Job) -> dict[str, object]:
        seen.append((job.id, request_id_var.get()))
        return {"echo": job.payload["n"]}

    queue.register_handler("test.echo", handler)
    token = request_id_var.set("req-abc")
    try:
        job = await queue.enqueue("test.echo", {"n": 7}, client_id="dossier-system")
    finally:
        request_id_var.reset(token)
    assert job.request_id == "req-abc"

    async def body() -> None:
        done = await wait_for_state(store, job.id, {JobState.SUCCEEDED})
        assert done.result == {"echo": 7}
        assert done.attempt_count == 1
        assert done.attempts[0].error is None
        assert done.attempts[0].request_id == "req-abc"

    await run_pool(queue, body)
    assert seen == [(job.id, "req-abc")]


async def test_retryable_failures_are_retried_and_recorded(store: Store) -> None:
    queue = JobQueue(job_settings(), store)
    calls = 0

    async def flaky(job: Job) -> None:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise UpstreamUnavailable("portal answered 503", system="national_portal")

    queue.register_handler("test.flaky", flaky)
    job = await queue.enqueue("test.flaky", {})

    async def body() -> None:
        done = await wait_for_state(store, job.id, {JobState.SUCCEEDED})
        assert [a.error for a in done.attempts] == [
            "portal answered 503",
            "portal answered 503",
            None,
        ]
        assert [a.error_type for a in done.attempts][:2] == ["upstream-unavailable"] * 2
        assert all(a.request_id == f"job-{job.id}" for a in done.attempts)

    await run_pool(queue, body)
    assert calls == 3


async def test_exhausted_retries_and_permanent_errors_dead_letter(store: Store) -> None:
    queue = JobQueue(job_settings(), store)

    async def always_down(job: Job) -> None:
        raise UpstreamUnavailable("down")

    async def rejected(job: Job) -> None:
        raise UpstreamRejected("dossier code unknown to the portal")

    queue.register_handler("test.down", always_down)
    queue.register_handler("test.rejected", rejected)
    down = await queue.enqueue("test.down", {})
    bad = await queue.enqueue("test.rejected", {})

    async def body() -> None:
        dead = await wait_for_state(store, down.id, {JobState.DEAD})
        assert dead.attempt_count == FAST.max_attempts
        assert dead.last_error == "down"
        dead = await wait_for_state(store, bad.id, {JobState.DEAD})
        assert dead.attempt_count == 1  # permanent: no retry
        assert dead.last_error == "dossier code unknown to the portal"
        assert dead.attempts[0].retryable is False

    await run_pool(queue, body)


async def test_an_open_circuit_defers_without_counting_attempts(store: Store) -> None:
    queue = JobQueue(job_settings(), store)
    calls = 0

    async def guarded(job: Job) -> None:
        nonlocal calls
        calls += 1
        if calls <= 4:  # more than max_attempts: deferring must not use them up
            raise CircuitOpen(retry_after=0.05)

    queue.register_handler("test.guarded", guarded)
    job = await queue.enqueue("test.guarded", {})

    async def body() -> None:
        done = await wait_for_state(store, job.id, {JobState.SUCCEEDED})
        assert done.attempt_count == 1

    await run_pool(queue, body)
    assert calls == 5


async def test_a_kind_without_handler_is_retried_then_dead_lettered(store: Store) -> None:
    queue = JobQueue(job_settings(), store)
    job = await queue.enqueue("nobody.knows", {})

    async def body() -> None:
        dead = await wait_for_state(store, job.id, {JobState.DEAD})
        assert dead.attempt_count == FAST.max_attempts
        assert dead.attempts[-1].error_type == "no-job-handler"

    await run_pool(queue, body)


async def test_a_full_queue_answers_overloaded_with_retry_after(store: Store) -> None:
    settings = job_settings(policies={"test.bounded": {"max_queued": 2}})
    queue = JobQueue(settings, store)
    await queue.enqueue("test.bounded", {"n": 1})
    await queue.enqueue("test.bounded", {"n": 2})
    with pytest.raises(Overloaded) as caught:
        await queue.enqueue("test.bounded", {"n": 3})
    assert caught.value.retry_after is not None
    assert caught.value.status == 503
    # other kinds have their own bound
    await queue.enqueue("test.other", {"n": 1})


async def test_policy_lookup_by_kind_then_system_then_handler_then_default(store: Store) -> None:
    by_system = JobKindPolicy(max_attempts=11)
    by_kind = JobKindPolicy(max_attempts=12)
    own = JobKindPolicy(max_attempts=13)
    queue = JobQueue(job_settings(policies={"portal": by_system, "portal.special": by_kind}), store)

    async def noop(job: Job) -> None:
        return None

    queue.register_handler("core.thing", noop, policy=own)
    assert queue.policy("portal.special") == by_kind
    assert queue.policy("portal.other") == by_system
    assert queue.policy("core.thing") == own
    assert queue.policy("core.else") == FAST


async def test_a_long_job_keeps_its_lease_by_heartbeat(store: Store) -> None:
    # visibility 1 s, the job takes 2.5 s: without heartbeats a second pool would take it
    queue = JobQueue(job_settings(visibility_timeout=1.0), store)
    runs: list[str] = []

    async def slow(job: Job) -> None:
        runs.append(job.id)
        await asyncio.sleep(2.5)

    queue.register_handler("test.slow", slow)
    job = await queue.enqueue("test.slow", {})
    first = WorkerPool(queue, concurrency=1)
    second = WorkerPool(queue, concurrency=1)
    first.start()
    await asyncio.sleep(0.3)
    second.start()
    try:
        await wait_for_state(store, job.id, {JobState.SUCCEEDED}, within=8)
    finally:
        await first.stop()
        await second.stop()
    assert runs == [job.id]


async def test_stop_finishes_in_flight_work_within_the_grace_period(store: Store) -> None:
    queue = JobQueue(job_settings(grace_period=2.0), store)
    started = asyncio.Event()

    async def short(job: Job) -> None:
        started.set()
        await asyncio.sleep(0.3)

    queue.register_handler("test.short", short)
    job = await queue.enqueue("test.short", {})
    later = await queue.enqueue("test.short", {}, run_at=time.time() + 0.2)
    pool = WorkerPool(queue, concurrency=1)
    pool.start()
    await started.wait()
    await pool.stop()
    finished = await store.jobs.get(job.id)
    assert finished is not None
    assert finished.state is JobState.SUCCEEDED
    # stopped leasing: the job that became due meanwhile is still queued
    waiting = await store.jobs.get(later.id)
    assert waiting is not None
    assert waiting.state is JobState.QUEUED


async def test_work_past_the_grace_period_is_deferred_for_another_worker(store: Store) -> None:
    queue = JobQueue(job_settings(grace_period=0.2, visibility_timeout=30.0), store)
    started = asyncio.Event()
    release = asyncio.Event()

    async def stuck(job: Job) -> None:
        started.set()
        if not release.is_set():
            await asyncio.sleep(60)

    queue.register_handler("test.stuck", stuck)
    job = await queue.enqueue("test.stuck", {})
    pool = WorkerPool(queue, concurrency=1)
    pool.start()
    await started.wait()
    await pool.stop()
    given_back = await store.jobs.get(job.id)
    assert given_back is not None
    assert given_back.state is JobState.QUEUED  # not waiting for its 30 s lease to expire
    assert given_back.attempt_count == 0
    release.set()

    async def body() -> None:
        await wait_for_state(store, job.id, {JobState.SUCCEEDED})

    await run_pool(queue, body)


async def test_jobs_of_one_ordering_key_run_one_at_a_time_in_order(store: Store) -> None:
    queue = JobQueue(job_settings(), store)
    order: list[int] = []
    active = 0
    overlap = False

    async def step(job: Job) -> None:
        nonlocal active, overlap
        active += 1
        overlap = overlap or active > 1
        await asyncio.sleep(0.005)
        order.append(int(job.payload["n"]))
        active -= 1

    queue.register_handler("test.step", step)
    jobs = [await queue.enqueue("test.step", {"n": n}, ordering_key="D-1") for n in range(20)]

    async def body() -> None:
        await wait_for_state(store, jobs[-1].id, {JobState.SUCCEEDED})

    await run_pool(queue, body, concurrency=6)
    assert order == list(range(20))
    assert not overlap


async def test_client_commands_publish_job_events_internal_jobs_do_not(store: Store) -> None:
    from gateway.settings import WebhookSettings
    from gateway.webhooks import EventPublisher

    queue = JobQueue(job_settings(), store)
    publisher = EventPublisher(store, WebhookSettings(), queue)

    async def push(job: Job) -> dict[str, object]:
        if job.payload["ok"]:
            return {"receipt": "R-9"}
        raise UpstreamRejected("status transition refused")

    queue.register_handler("portal.push", push)
    token = request_id_var.set("req-events")
    try:
        good = await queue.enqueue(
            "portal.push", {"ok": True}, client_id="dossier-system", ordering_key="D-7"
        )
        bad = await queue.enqueue("portal.push", {"ok": False}, client_id="dossier-system")
        internal = await queue.enqueue("portal.push", {"ok": True})  # no client: no event
    finally:
        request_id_var.reset(token)
    pool = WorkerPool(queue, concurrency=2, events=lambda: publisher)
    pool.start()
    try:
        await wait_for_state(store, good.id, {JobState.SUCCEEDED})
        await wait_for_state(store, bad.id, {JobState.DEAD})
        await wait_for_state(store, internal.id, {JobState.SUCCEEDED})
    finally:
        await pool.stop()
    events = {e.data["job_id"]: e for e in await store.events.list_after(None, limit=100)}
    assert set(events) == {good.id, bad.id}
    succeeded, failed = events[good.id], events[bad.id]
    assert succeeded.type == "job.succeeded"
    assert succeeded.subject == "D-7"
    assert succeeded.request_id == "req-events"  # the job's request id, not a new one
    assert succeeded.data["result"] == {"receipt": "R-9"}
    assert succeeded.data["kind"] == "portal.push"
    assert failed.type == "job.failed"
    assert failed.data["error"] == "status transition refused"
    assert failed.data["error_type"] == "upstream-rejected"
    assert failed.data["attempts"] == 1


async def test_an_outcome_the_full_webhook_queue_refuses_is_not_lost(store: Store) -> None:
    """The webhook queue is full when a command succeeds: the job is not acknowledged without
    its event; it runs again once there is room, and the event (appended once, one id) gets
    its delivery."""
    import base64

    from gateway.settings import WebhookSettings
    from gateway.webhooks import DELIVER_KIND, EventPublisher

    settings = job_settings(policies={DELIVER_KIND: {**FAST.model_dump(), "max_queued": 1}})
    queue = JobQueue(settings, store)
    secret = "whsec_" + base64.b64encode(b"k" * 32).decode()
    publisher = EventPublisher(
        store,
        WebhookSettings.model_validate(
            {"endpoints": [{"id": "province", "url": "http://127.0.0.1:9/", "secret": secret}]}
        ),
        queue,
    )
    release = asyncio.Event()
    delivered: list[str] = []
    runs: list[str] = []

    async def deliver(job: Job) -> None:
        if job.payload.get("event_id") == "filler":
            await release.wait()
        else:
            delivered.append(str(job.payload["event_id"]))

    async def push(job: Job) -> dict[str, object]:
        runs.append(job.id)
        return {"receipt": "R-1"}

    queue.register_handler(DELIVER_KIND, deliver)
    queue.register_handler("portal.push", push)
    pool = WorkerPool(queue, concurrency=3, events=lambda: publisher)
    pool.start()
    try:
        # two fillers of one ordering key: the first blocks a worker, the second stays
        # queued behind it, so the bounded webhook queue (1) is full
        first = await queue.enqueue(DELIVER_KIND, {"event_id": "filler"}, ordering_key="hold")
        await wait_for_state(store, first.id, {JobState.LEASED})
        await queue.enqueue(DELIVER_KIND, {"event_id": "filler"}, ordering_key="hold")
        job = await queue.enqueue("portal.push", {}, client_id="dossier-system")
        deadline = time.monotonic() + 10.0
        while len(runs) < 2:  # it ran, could not publish, was given back and ran again
            assert time.monotonic() < deadline, "the job was not given back"
            await asyncio.sleep(0.02)
        held = await store.jobs.get(job.id)
        assert held is not None and held.state != JobState.SUCCEEDED
        assert held.attempt_count == 0  # giving back is no failed attempt
        release.set()
        done = await wait_for_state(store, job.id, {JobState.SUCCEEDED})
        assert done.attempt_count == 1
        events = [e for e in await store.events.list_after(None, limit=100)]
        assert [e.type for e in events] == ["job.succeeded"]  # appended once, not per run
        deadline = time.monotonic() + 10.0
        while not delivered:
            assert time.monotonic() < deadline, "the outcome event was never delivered"
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.1)
        assert delivered == [events[0].id]
    finally:
        release.set()
        await pool.stop()
