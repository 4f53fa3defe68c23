"""The scheduler over a real store: one lock holder, one job per tick, missed ticks once."""

from __future__ import annotations

import asyncio

from gateway.adapters import ScheduledJob
from gateway.jobs import JobQueue
from gateway.scheduler import LOCK_NAME, Scheduler
from gateway.settings import JobSettings
from gateway.store.base import Store

T0 = 1_800_000_000.0  # a multiple of 60


def make(store: Store, owner: str, **kw: float) -> Scheduler:
    scheduler = Scheduler(JobQueue(JobSettings(), store), owner=owner, **kw)
    scheduler.register(ScheduledJob(name="poll", kind="test.poll", interval_seconds=60))
    return scheduler


async def test_only_the_lock_holder_enqueues_one_job_per_tick(store: Store) -> None:
    a, b = make(store, "instance-a"), make(store, "instance-b")
    assert await a.run_once(T0 + 1) == ["core.poll"]
    assert a.is_leader
    assert await b.run_once(T0 + 2) == []
    assert not b.is_leader
    assert await a.run_once(T0 + 30) == []  # same tick
    assert await a.run_once(T0 + 60) == ["core.poll"]
    assert await store.jobs.count_queued("test.poll") == 2


async def test_ticks_missed_while_down_run_once(store: Store) -> None:
    a = make(store, "instance-a")
    await a.run_once(T0)
    # a day without any instance: 1,439 ticks missed, one job
    assert await a.run_once(T0 + 86_400 + 5) == ["core.poll"]
    assert await a.run_once(T0 + 86_400 + 6) == []
    assert await store.jobs.count_queued("test.poll") == 2


async def test_a_new_holder_continues_without_repeating_a_tick(store: Store) -> None:
    a = make(store, "instance-a", lock_ttl=0.3, resolution=0.1)
    b = make(store, "instance-b", lock_ttl=0.3, resolution=0.1)
    await a.run_once(T0 + 1)
    first_token = a.token
    await asyncio.sleep(0.4)  # a dies: its lock expires
    assert await b.run_once(T0 + 2) == []  # b takes over; the tick was already enqueued
    assert b.token is not None
    assert first_token is not None
    assert b.token > first_token  # fencing token strictly increases
    assert await b.run_once(T0 + 61) == ["core.poll"]
    # a comes back while b holds the lock: it enqueues nothing
    assert await a.run_once(T0 + 121) == []
    assert await store.jobs.count_queued("test.poll") == 2
    assert await store.lock_token(LOCK_NAME) == b.token


async def test_a_stale_holder_with_an_older_token_writes_nothing(store: Store) -> None:
    a = make(store, "instance-a", lock_ttl=0.3, resolution=0.1)
    b = make(store, "instance-b", lock_ttl=0.3, resolution=0.1)
    await a.run_once(T0 + 1)
    stale = a.token
    assert stale is not None
    await asyncio.sleep(0.4)
    await b.run_once(T0 + 61)  # newer token recorded with the tick
    # a paused holder that still believes it holds the lock acts with its old token
    (schedule,) = a.schedules()
    assert await a._tick(schedule, stale, T0 + 121) is False
    assert not a.is_leader
    assert await store.jobs.count_queued("test.poll") == 2


async def test_a_cron_schedule_waits_for_its_time(store: Store) -> None:
    scheduler = Scheduler(JobQueue(JobSettings(), store), owner="x")
    scheduler.register(ScheduledJob(name="nightly", kind="test.nightly", cron="0 2 * * *"))
    # 2027-01-15 15:00 in Ho Chi Minh City (08:00 UTC); the next 02:00 there is 11 h later
    afternoon = 1_799_989_200.0 + 3 * 3600
    assert await scheduler.run_once(afternoon) == []
    assert await scheduler.run_once(afternoon + 11 * 3600 - 1) == []
    assert await scheduler.run_once(afternoon + 11 * 3600) == ["core.nightly"]
    assert await store.jobs.count_queued("test.nightly") == 1


async def test_the_scheduler_loop_runs_and_releases_its_lock(store: Store) -> None:
    scheduler = Scheduler(
        JobQueue(JobSettings(), store), owner="looper", resolution=0.05, lock_ttl=5
    )
    scheduler.register(ScheduledJob(name="fast", kind="test.fast", interval_seconds=3600))
    scheduler.start()
    for _ in range(100):
        if await store.jobs.count_queued("test.fast"):
            break
        await asyncio.sleep(0.02)
    await scheduler.stop()
    assert await store.jobs.count_queued("test.fast") == 1
    # released: another instance takes the lock at once
    assert await store.acquire_lock(LOCK_NAME, "other", ttl=5) is not None
