"""Store contract: two store instances on one backend (two SQLite connections on one file, two
Redis clients on one prefix) behave as one store: no job is leased twice, ordering keys hold
across instances, the audit chain stays unbroken with appenders on both."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from gateway.store.base import Attempt, AuditRecord, NewJob, Store


def twin(store: Store) -> Store:
    """A second, independent store instance on the same data."""
    from gateway.store.redis import RedisStore
    from gateway.store.sqlite import SqliteStore

    if isinstance(store, SqliteStore):
        return SqliteStore(store.path)
    assert isinstance(store, RedisStore)
    return RedisStore(store.url, key_prefix=store.key_prefix)


@pytest.fixture
async def other(store: Store) -> AsyncIterator[Store]:
    second = twin(store)
    await second.open()
    yield second
    await second.close()


async def test_two_instances_never_lease_the_same_job(store: Store, other: Store) -> None:
    n = 300
    await asyncio.gather(
        *((store if i % 2 else other).jobs.enqueue(NewJob("k", {"i": i})) for i in range(n))
    )
    now = time.time() + 1
    leased: list[tuple[str, str]] = []

    async def worker(s: Store, name: str) -> None:
        while True:
            job = await s.jobs.lease(name, visibility=60, now=now)
            if job is None:
                return
            leased.append((job.id, name))

    await asyncio.gather(
        *(worker(s, f"{tag}{w}") for s, tag in ((store, "a"), (other, "b")) for w in range(4))
    )
    ids = [job_id for job_id, _ in leased]
    assert len(ids) == n and len(set(ids)) == n


async def test_ordering_holds_across_instances(store: Store, other: Store) -> None:
    keys = [f"D{k}" for k in range(5)]
    enqueued: dict[str, list[str]] = {k: [] for k in keys}
    for i in range(60):
        key = keys[i % len(keys)]
        job, _ = await (store if i % 3 else other).jobs.enqueue(
            NewJob("k", {"i": i}, ordering_key=key)
        )
        enqueued[key].append(job.id)
    acked: dict[str, list[str]] = {k: [] for k in keys}
    in_flight: set[str] = set()

    async def worker(s: Store, name: str) -> None:
        idle = 0
        while idle < 20:
            job = await s.jobs.lease(name, visibility=60, now=time.time())
            if job is None:
                idle += 1
                await asyncio.sleep(0.002)
                continue
            idle = 0
            key = job.ordering_key
            assert key is not None
            assert key not in in_flight, "two jobs of one key in flight"
            in_flight.add(key)
            await asyncio.sleep(0)
            acked[key].append(job.id)
            in_flight.discard(key)
            assert await s.jobs.ack(job.id, name, now=time.time(), attempt=Attempt(at=0))

    await asyncio.gather(
        *(worker(s, f"{t}{w}") for s, t in ((store, "a"), (other, "b")) for w in range(3))
    )
    assert acked == enqueued


async def test_audit_chain_with_appenders_on_both(store: Store, other: Store) -> None:
    def rec(i: int) -> AuditRecord:
        return AuditRecord(
            at=float(i), direction="inbound", actor=f"c{i % 3}", operation="op", outcome="ok"
        )

    results = await asyncio.gather(
        *((store if i % 2 else other).audit.append(rec(i)) for i in range(200))
    )
    assert sorted(r.seq for r in results) == list(range(1, 201))
    prev = "0" * 64
    count = 0
    async for r in other.audit.iterate():
        assert r.prev_hash == prev and r.hash == r.compute_hash()
        prev = r.hash
        count += 1
    assert count == 200
    assert await store.audit.head() == (200, prev) == await other.audit.head()


async def test_locks_exclusive_across_instances(store: Store, other: Store) -> None:
    t1 = await store.acquire_lock("scheduler", "instance-a", ttl=30)
    assert t1 is not None
    assert await other.acquire_lock("scheduler", "instance-b", ttl=30) is None
    assert await other.lock_token("scheduler") == t1
    assert await store.release_lock("scheduler", "instance-a")
    t2 = await other.acquire_lock("scheduler", "instance-b", ttl=30)
    assert t2 is not None and t2 > t1
