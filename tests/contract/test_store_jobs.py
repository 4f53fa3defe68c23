"""Store contract: the job queue (states, leases, ordering keys, dedupe, bounds, stats, purge).

Runs on both backends. Times are explicit ``now`` arguments around one base time, so no test
waits for a clock.
"""

from __future__ import annotations

import time

import pytest

from gateway.store.base import Attempt, Job, JobState, NewJob, QueueFull, Store

VIS = 30.0


def at(t: float, error: str | None = None) -> Attempt:
    return Attempt(at=t, error=error, error_type="E" if error else None, request_id="req-1")


async def enqueue(store: Store, kind: str = "k", t: float | None = None, **kw: object) -> Job:
    job, created = await store.jobs.enqueue(
        NewJob(kind, {"n": kw.pop("n", 0)}, run_at=t, **kw)  # type: ignore[arg-type]
    )
    assert created
    return job


@pytest.fixture
def t0() -> float:
    return time.time()


async def test_enqueue_and_get_roundtrip(store: Store, t0: float) -> None:
    job, created = await store.jobs.enqueue(
        NewJob(
            "portal.sync",
            {"dossier": "G01.123", "nested": {"a": [1, 2]}, "text": "Hồ sơ"},
            ordering_key="G01.123",
            dedupe_key="sync:G01.123:1",
            run_at=t0 + 5,
            request_id="req-9",
            client_id="dossier-system",
        )
    )
    assert created and job.state is JobState.QUEUED and job.attempt_count == 0
    got = await store.jobs.get(job.id)
    assert got is not None
    assert got.id == job.id
    assert got.kind == "portal.sync"
    assert got.payload == {"dossier": "G01.123", "nested": {"a": [1, 2]}, "text": "Hồ sơ"}
    assert got.state is JobState.QUEUED
    assert got.run_at == t0 + 5
    assert got.created_at == job.created_at and got.updated_at == job.updated_at
    assert (got.ordering_key, got.dedupe_key) == ("G01.123", "sync:G01.123:1")
    assert (got.request_id, got.client_id) == ("req-9", "dossier-system")
    assert got.attempts == [] and got.lease_owner is None and got.result is None
    assert await store.jobs.get("01NOSUCHJOB0000000000000000") is None


async def test_ids_follow_enqueue_order(store: Store) -> None:
    jobs = [await enqueue(store, n=i) for i in range(50)]
    ids = [j.id for j in jobs]
    assert ids == sorted(ids) and len(set(ids)) == 50


async def test_default_run_at_is_now(store: Store) -> None:
    before = time.time()
    job = await enqueue(store)
    assert before <= job.run_at <= time.time()
    leased = await store.jobs.lease("w", visibility=VIS, now=time.time())
    assert leased is not None and leased.id == job.id


async def test_lease_ack(store: Store, t0: float) -> None:
    job = await enqueue(store, t=t0)
    leased = await store.jobs.lease("w1", visibility=VIS, now=t0 + 1)
    assert leased is not None and leased.id == job.id
    assert leased.state is JobState.LEASED
    assert leased.lease_owner == "w1" and leased.lease_expires_at == t0 + 1 + VIS
    assert await store.jobs.lease("w2", visibility=VIS, now=t0 + 1) is None

    assert await store.jobs.ack(job.id, "w1", now=t0 + 2, attempt=at(t0 + 1), result={"ok": 1})
    done = await store.jobs.get(job.id)
    assert done is not None and done.state is JobState.SUCCEEDED
    assert done.result == {"ok": 1}
    assert done.attempts == [at(t0 + 1)]
    assert done.lease_owner is None and done.updated_at == t0 + 2
    # a second ack, or an ack of a finished job, is refused
    assert not await store.jobs.ack(job.id, "w1", now=t0 + 3, attempt=at(t0 + 3))
    assert await store.jobs.lease("w1", visibility=VIS, now=t0 + 100) is None


async def test_ack_without_result(store: Store, t0: float) -> None:
    job = await enqueue(store, t=t0)
    assert await store.jobs.lease("w", visibility=VIS, now=t0)
    assert await store.jobs.ack(job.id, "w", now=t0, attempt=at(t0))
    done = await store.jobs.get(job.id)
    assert done is not None and done.result is None


async def test_not_leased_before_run_at(store: Store, t0: float) -> None:
    await enqueue(store, t=t0 + 10)
    assert await store.jobs.lease("w", visibility=VIS, now=t0 + 9.9) is None
    assert await store.jobs.lease("w", visibility=VIS, now=t0 + 10) is not None


async def test_oldest_run_at_first(store: Store, t0: float) -> None:
    late = await enqueue(store, t=t0 + 2)
    early = await enqueue(store, t=t0 + 1)
    other_kind = await enqueue(store, "other", t=t0 + 1.5)
    order = []
    for _ in range(3):
        job = await store.jobs.lease("w", visibility=VIS, now=t0 + 3)
        assert job is not None
        order.append(job.id)
    assert order == [early.id, other_kind.id, late.id]


async def test_same_run_at_is_fifo(store: Store, t0: float) -> None:
    jobs = [await enqueue(store, t=t0, n=i) for i in range(5)]
    leased = [await store.jobs.lease("w", visibility=VIS, now=t0) for _ in jobs]
    assert [j.id for j in leased if j] == [j.id for j in jobs]


async def test_lease_kinds_filter(store: Store, t0: float) -> None:
    a = await enqueue(store, "a", t=t0)
    b = await enqueue(store, "b", t=t0 + 1)
    assert await store.jobs.lease("w", visibility=VIS, now=t0 + 2, kinds=[]) is None
    assert await store.jobs.lease("w", visibility=VIS, now=t0 + 2, kinds=["zzz"]) is None
    got = await store.jobs.lease("w", visibility=VIS, now=t0 + 2, kinds=["b"])
    assert got is not None and got.id == b.id
    got = await store.jobs.lease("w", visibility=VIS, now=t0 + 2, kinds=["b", "a"])
    assert got is not None and got.id == a.id


async def test_lease_many_kinds_filter(store: Store, t0: float) -> None:
    kinds = [f"kind{i}" for i in range(12)]
    jobs = {k: await enqueue(store, k, t=t0 + i) for i, k in enumerate(kinds)}
    got = await store.jobs.lease("w", visibility=VIS, now=t0 + 100, kinds=kinds[5:])
    assert got is not None and got.id == jobs["kind5"].id


async def test_heartbeat(store: Store, t0: float) -> None:
    job = await enqueue(store, t=t0)
    assert await store.jobs.lease("w", visibility=10, now=t0)
    assert not await store.jobs.heartbeat(job.id, "intruder", visibility=10, now=t0 + 5)
    assert await store.jobs.heartbeat(job.id, "w", visibility=10, now=t0 + 5)
    got = await store.jobs.get(job.id)
    assert got is not None and got.lease_expires_at == t0 + 15
    # the extended lease holds past the first expiry
    assert await store.jobs.lease("w2", visibility=10, now=t0 + 12) is None
    assert await store.jobs.lease("w2", visibility=10, now=t0 + 15.5) is not None


async def test_expired_lease_is_leased_again_and_owner_checks(store: Store, t0: float) -> None:
    job = await enqueue(store, t=t0)
    first = await store.jobs.lease("dead-worker", visibility=10, now=t0)
    assert first is not None
    assert await store.jobs.lease("w2", visibility=10, now=t0 + 9) is None
    second = await store.jobs.lease("w2", visibility=10, now=t0 + 11)
    assert second is not None and second.id == job.id
    assert second.lease_owner == "w2" and second.lease_expires_at == t0 + 21
    # the first worker lost the lease: every owner-checked mutation refuses it
    assert not await store.jobs.heartbeat(job.id, "dead-worker", visibility=10, now=t0 + 12)
    assert not await store.jobs.ack(job.id, "dead-worker", now=t0 + 12, attempt=at(t0))
    assert not await store.jobs.retry(job.id, "dead-worker", run_at=t0 + 13, attempt=at(t0))
    assert not await store.jobs.defer(job.id, "dead-worker", run_at=t0 + 13)
    assert not await store.jobs.dead_letter(job.id, "dead-worker", now=t0 + 12, attempt=at(t0))
    got = await store.jobs.get(job.id)
    assert got is not None and got.state is JobState.LEASED and got.lease_owner == "w2"
    assert await store.jobs.ack(job.id, "w2", now=t0 + 12, attempt=at(t0 + 11))


async def test_retry_records_attempt_and_waits(store: Store, t0: float) -> None:
    job = await enqueue(store, t=t0)
    assert await store.jobs.lease("w", visibility=VIS, now=t0)
    assert await store.jobs.retry(job.id, "w", run_at=t0 + 60, attempt=at(t0, "upstream 503"))
    got = await store.jobs.get(job.id)
    assert got is not None and got.state is JobState.QUEUED
    assert got.run_at == t0 + 60 and got.lease_owner is None
    assert got.attempts == [at(t0, "upstream 503")]
    assert await store.jobs.lease("w", visibility=VIS, now=t0 + 59) is None
    again = await store.jobs.lease("w", visibility=VIS, now=t0 + 60)
    assert again is not None and again.id == job.id and again.attempt_count == 1
    # not leased any more after the retry: a stale owner cannot retry twice
    assert not await store.jobs.retry(job.id, "other", run_at=t0, attempt=at(t0))


async def test_defer_does_not_count_an_attempt(store: Store, t0: float) -> None:
    job = await enqueue(store, t=t0)
    assert await store.jobs.lease("w", visibility=VIS, now=t0)
    assert await store.jobs.defer(job.id, "w", run_at=t0 + 30)
    got = await store.jobs.get(job.id)
    assert got is not None and got.state is JobState.QUEUED and got.attempts == []
    assert got.run_at == t0 + 30
    assert await store.jobs.lease("w", visibility=VIS, now=t0 + 29) is None
    assert await store.jobs.lease("w", visibility=VIS, now=t0 + 30) is not None


async def test_dead_letter_replay(store: Store, t0: float) -> None:
    job = await enqueue(store, t=t0)
    assert await store.jobs.lease("w", visibility=VIS, now=t0)
    assert await store.jobs.retry(job.id, "w", run_at=t0 + 1, attempt=at(t0, "first"))
    assert await store.jobs.lease("w", visibility=VIS, now=t0 + 1)
    assert await store.jobs.dead_letter(job.id, "w", now=t0 + 2, attempt=at(t0 + 1, "final"))
    dead = await store.jobs.get(job.id)
    assert dead is not None and dead.state is JobState.DEAD
    assert dead.last_error == "final" and dead.attempt_count == 2
    assert [j.id for j in await store.jobs.list_dead()] == [job.id]
    assert await store.jobs.lease("w", visibility=VIS, now=t0 + 100) is None
    # only DEAD jobs can be replayed or discarded
    other = await enqueue(store, t=t0)
    assert await store.jobs.replay(other.id, now=t0) is None
    assert await store.jobs.discard(other.id, now=t0) is None

    replayed = await store.jobs.replay(job.id, now=t0 + 200)
    assert replayed is not None and replayed.state is JobState.QUEUED
    assert replayed.run_at == t0 + 200 and replayed.attempt_count == 2
    assert await store.jobs.list_dead() == []
    assert await store.jobs.replay(job.id, now=t0 + 200) is None
    got = await store.jobs.lease("w", visibility=VIS, now=t0 + 200, kinds=["k"])
    assert got is not None and got.id in (job.id, other.id)


async def test_discard(store: Store, t0: float) -> None:
    job = await enqueue(store, t=t0)
    assert await store.jobs.lease("w", visibility=VIS, now=t0)
    assert await store.jobs.dead_letter(job.id, "w", now=t0, attempt=at(t0, "boom"))
    discarded = await store.jobs.discard(job.id, now=t0 + 1)
    assert discarded is not None and discarded.state is JobState.DISCARDED
    assert discarded.attempt_count == 1
    assert await store.jobs.discard(job.id, now=t0 + 1) is None
    assert await store.jobs.list_dead() == []
    assert await store.jobs.lease("w", visibility=VIS, now=t0 + 100) is None


# ---------------------------------------------------------------- ordering keys


async def test_ordering_key_runs_one_at_a_time_in_order(store: Store, t0: float) -> None:
    a = [await enqueue(store, t=t0, ordering_key="D1", n=i) for i in range(3)]
    b = await enqueue(store, t=t0, ordering_key="D2")
    free = await enqueue(store, t=t0)
    leased = [await store.jobs.lease("w", visibility=VIS, now=t0) for _ in range(4)]
    assert {j.id for j in leased[:3] if j} == {a[0].id, b.id, free.id}
    assert leased[3] is None  # a[1] waits for a[0]
    assert [j.id for j in await store.jobs.held_back("D1")] == [a[1].id, a[2].id]

    assert await store.jobs.ack(a[0].id, "w", now=t0, attempt=at(t0))
    nxt = await store.jobs.lease("w", visibility=VIS, now=t0)
    assert nxt is not None and nxt.id == a[1].id
    assert await store.jobs.lease("w", visibility=VIS, now=t0) is None
    assert await store.jobs.ack(a[1].id, "w", now=t0, attempt=at(t0))
    last = await store.jobs.lease("w", visibility=VIS, now=t0)
    assert last is not None and last.id == a[2].id
    assert await store.jobs.held_back("D1") == []


async def test_head_keeps_its_place_across_retry_and_expiry(store: Store, t0: float) -> None:
    first = await enqueue(store, t=t0, ordering_key="K")
    second = await enqueue(store, t=t0, ordering_key="K")
    assert (await store.jobs.lease("w", visibility=10, now=t0)).id == first.id  # type: ignore[union-attr]
    assert await store.jobs.retry(first.id, "w", run_at=t0 + 50, attempt=at(t0, "x"))
    # the retried head is not due, and the later job still waits behind it
    assert await store.jobs.lease("w", visibility=10, now=t0 + 20) is None
    again = await store.jobs.lease("w", visibility=10, now=t0 + 50)
    assert again is not None and again.id == first.id
    # its lease expires: it is taken again, never the second one
    third = await store.jobs.lease("w2", visibility=10, now=t0 + 61)
    assert third is not None and third.id == first.id
    assert await store.jobs.ack(first.id, "w2", now=t0 + 62, attempt=at(t0 + 61))
    nxt = await store.jobs.lease("w", visibility=10, now=t0 + 62)
    assert nxt is not None and nxt.id == second.id


async def test_later_job_keeps_its_own_run_at(store: Store, t0: float) -> None:
    first = await enqueue(store, t=t0, ordering_key="K")
    second = await enqueue(store, t=t0 + 100, ordering_key="K")
    assert await store.jobs.lease("w", visibility=VIS, now=t0)
    assert await store.jobs.ack(first.id, "w", now=t0, attempt=at(t0))
    assert await store.jobs.lease("w", visibility=VIS, now=t0 + 50) is None
    got = await store.jobs.lease("w", visibility=VIS, now=t0 + 100)
    assert got is not None and got.id == second.id


async def test_dead_head_blocks_until_discarded(store: Store, t0: float) -> None:
    jobs = [await enqueue(store, t=t0, ordering_key="D", n=i) for i in range(3)]
    assert (await store.jobs.lease("w", visibility=VIS, now=t0)).id == jobs[0].id  # type: ignore[union-attr]
    assert await store.jobs.dead_letter(jobs[0].id, "w", now=t0, attempt=at(t0, "rejected"))
    assert await store.jobs.lease("w", visibility=VIS, now=t0 + 1000) is None
    assert [j.id for j in await store.jobs.held_back("D")] == [jobs[1].id, jobs[2].id]
    assert [j.id for j in await store.jobs.held_back("D", limit=1)] == [jobs[1].id]
    assert await store.jobs.discard(jobs[0].id, now=t0 + 1)
    got = await store.jobs.lease("w", visibility=VIS, now=t0 + 1)
    assert got is not None and got.id == jobs[1].id
    assert [j.id for j in await store.jobs.held_back("D")] == [jobs[2].id]


async def test_dead_head_replayed_runs_before_the_rest(store: Store, t0: float) -> None:
    jobs = [await enqueue(store, t=t0, ordering_key="D", n=i) for i in range(2)]
    assert await store.jobs.lease("w", visibility=VIS, now=t0)
    assert await store.jobs.dead_letter(jobs[0].id, "w", now=t0, attempt=at(t0, "x"))
    assert await store.jobs.replay(jobs[0].id, now=t0 + 5)
    got = await store.jobs.lease("w", visibility=VIS, now=t0 + 5)
    assert got is not None and got.id == jobs[0].id
    assert await store.jobs.lease("w", visibility=VIS, now=t0 + 5) is None
    assert await store.jobs.ack(jobs[0].id, "w", now=t0 + 6, attempt=at(t0 + 5))
    got = await store.jobs.lease("w", visibility=VIS, now=t0 + 6)
    assert got is not None and got.id == jobs[1].id


async def test_key_after_all_finished_starts_fresh(store: Store, t0: float) -> None:
    first = await enqueue(store, t=t0, ordering_key="K")
    assert await store.jobs.lease("w", visibility=VIS, now=t0)
    assert await store.jobs.ack(first.id, "w", now=t0, attempt=at(t0))
    later = await enqueue(store, t=t0, ordering_key="K")
    got = await store.jobs.lease("w", visibility=VIS, now=t0)
    assert got is not None and got.id == later.id


async def test_by_ordering_key_lists_every_state_in_order(store: Store, t0: float) -> None:
    jobs = [await enqueue(store, t=t0, ordering_key="D", n=i) for i in range(3)]
    await enqueue(store, t=t0, ordering_key="other")
    assert await store.jobs.lease("w", visibility=VIS, now=t0, kinds=["k"])
    assert await store.jobs.ack(jobs[0].id, "w", now=t0, attempt=at(t0))
    listed = await store.jobs.by_ordering_key("D")
    assert [j.id for j in listed] == [j.id for j in jobs]
    assert [j.state for j in listed] == [JobState.SUCCEEDED, JobState.QUEUED, JobState.QUEUED]
    assert len(await store.jobs.by_ordering_key("D", limit=2)) == 2
    assert await store.jobs.by_ordering_key("none") == []


# ---------------------------------------------------------------- dedupe, bounds, stats


async def test_dedupe_key_returns_existing(store: Store, t0: float) -> None:
    first, created = await store.jobs.enqueue(NewJob("k", {"v": 1}, dedupe_key="evt-1"))
    assert created
    again, created = await store.jobs.enqueue(NewJob("k", {"v": 2}, dedupe_key="evt-1"))
    assert not created and again.id == first.id and again.payload == {"v": 1}
    # still deduplicated once the job finished (until it is purged)
    assert await store.jobs.lease("w", visibility=VIS, now=time.time())
    assert await store.jobs.ack(first.id, "w", now=time.time(), attempt=at(t0))
    again, created = await store.jobs.enqueue(NewJob("k", {"v": 3}, dedupe_key="evt-1"))
    assert not created and again.id == first.id and again.state is JobState.SUCCEEDED
    assert await store.jobs.count_queued("k") == 0


async def test_dedupe_concurrent_creates_one(store: Store) -> None:
    import asyncio

    results = await asyncio.gather(
        *(store.jobs.enqueue(NewJob("k", {"i": i}, dedupe_key="same")) for i in range(10))
    )
    assert sum(1 for _, created in results if created) == 1
    assert len({job.id for job, _ in results}) == 1


async def test_queue_full(store: Store, t0: float) -> None:
    await store.jobs.enqueue(NewJob("bounded", {}, dedupe_key="d1"), max_queued=2)
    await store.jobs.enqueue(NewJob("bounded", {}), max_queued=2)
    with pytest.raises(QueueFull):
        await store.jobs.enqueue(NewJob("bounded", {}), max_queued=2)
    # other kinds and unbounded enqueues are not affected
    await store.jobs.enqueue(NewJob("other", {}), max_queued=2)
    # a dedupe hit is not a new job, so it is answered even when the queue is full
    dup, created = await store.jobs.enqueue(NewJob("bounded", {}, dedupe_key="d1"), max_queued=2)
    assert not created and dup.dedupe_key == "d1"
    assert await store.jobs.count_queued("bounded") == 2
    assert await store.jobs.lease("w", visibility=VIS, now=time.time(), kinds=["bounded"])
    assert await store.jobs.count_queued("bounded") == 1
    await store.jobs.enqueue(NewJob("bounded", {}), max_queued=2)
    assert await store.jobs.count_queued("bounded") == 2
    assert await store.jobs.count_queued("never") == 0


async def test_queue_full_under_concurrency(store: Store) -> None:
    import asyncio

    results = await asyncio.gather(
        *(store.jobs.enqueue(NewJob("burst", {"i": i}), max_queued=5) for i in range(20)),
        return_exceptions=True,
    )
    created = [r for r in results if isinstance(r, tuple)]
    refused = [r for r in results if isinstance(r, QueueFull)]
    assert (len(created), len(refused)) == (5, 15)
    assert await store.jobs.count_queued("burst") == 5
    # the refused ones left nothing behind
    leased = 0
    while await store.jobs.lease("w", visibility=VIS, now=time.time() + 1, kinds=["burst"]):
        leased += 1
    assert leased == 5


async def test_stats(store: Store, t0: float) -> None:
    assert await store.jobs.stats(now=t0) == []
    due_old = await enqueue(store, "a", t=t0 - 10)
    await enqueue(store, "a", t=t0 - 5)
    await enqueue(store, "a", t=t0 + 100)  # queued, not due
    b = await enqueue(store, "b", t=t0 - 1)
    c = await enqueue(store, "c", t=t0)
    assert await store.jobs.lease("w", visibility=VIS, now=t0, kinds=["b"])
    assert await store.jobs.lease("w", visibility=VIS, now=t0, kinds=["c"])
    assert await store.jobs.dead_letter(c.id, "w", now=t0, attempt=at(t0, "x"))
    finished = await enqueue(store, "d", t=t0)
    assert await store.jobs.lease("w", visibility=VIS, now=t0, kinds=["d"])
    assert await store.jobs.ack(finished.id, "w", now=t0, attempt=at(t0))

    stats = {s.kind: s for s in await store.jobs.stats(now=t0)}
    assert set(stats) == {"a", "b", "c"}  # d has nothing queued, in flight or dead
    assert (stats["a"].queued, stats["a"].in_flight, stats["a"].dead) == (3, 0, 0)
    assert stats["a"].oldest_due_age == pytest.approx(t0 - due_old.run_at)
    assert (stats["b"].queued, stats["b"].in_flight, stats["b"].dead) == (0, 1, 0)
    assert stats["b"].oldest_due_age is None
    assert (stats["c"].queued, stats["c"].in_flight, stats["c"].dead) == (0, 0, 1)
    assert b.id


async def test_stats_counts_follow_every_transition(store: Store, t0: float) -> None:
    async def counts() -> tuple[int, int, int]:
        s = {x.kind: x for x in await store.jobs.stats(now=t0 + 1000)}.get("k")
        return (s.queued, s.in_flight, s.dead) if s else (0, 0, 0)

    job = await enqueue(store, t=t0)
    assert await counts() == (1, 0, 0)
    assert await store.jobs.lease("w", visibility=VIS, now=t0)
    assert await counts() == (0, 1, 0)
    assert await store.jobs.retry(job.id, "w", run_at=t0, attempt=at(t0, "x"))
    assert await counts() == (1, 0, 0)
    assert await store.jobs.lease("w", visibility=VIS, now=t0)
    assert await store.jobs.defer(job.id, "w", run_at=t0)
    assert await counts() == (1, 0, 0)
    assert await store.jobs.lease("w", visibility=VIS, now=t0)
    assert await store.jobs.lease("w2", visibility=VIS, now=t0 + VIS + 1)  # expired re-lease
    assert await counts() == (0, 1, 0)
    assert await store.jobs.dead_letter(job.id, "w2", now=t0, attempt=at(t0, "y"))
    assert await counts() == (0, 0, 1)
    assert await store.jobs.replay(job.id, now=t0)
    assert await counts() == (1, 0, 0)
    assert await store.jobs.lease("w", visibility=VIS, now=t0)
    assert await store.jobs.dead_letter(job.id, "w", now=t0, attempt=at(t0, "z"))
    assert await store.jobs.discard(job.id, now=t0)
    assert await counts() == (0, 0, 0)


async def test_list_dead_newest_first_paginated(store: Store, t0: float) -> None:
    dead = []
    for i in range(5):
        job = await enqueue(store, "a" if i % 2 else "b", t=t0, n=i)
        assert await store.jobs.lease("w", visibility=VIS, now=t0, kinds=[job.kind])
        assert await store.jobs.dead_letter(job.id, "w", now=t0, attempt=at(t0, f"e{i}"))
        dead.append(job)
    await enqueue(store, "a", t=t0)  # queued: never listed
    ids_desc = [j.id for j in reversed(dead)]
    assert [j.id for j in await store.jobs.list_dead()] == ids_desc
    page1 = await store.jobs.list_dead(limit=2)
    assert [j.id for j in page1] == ids_desc[:2]
    page2 = await store.jobs.list_dead(limit=2, before_id=page1[-1].id)
    assert [j.id for j in page2] == ids_desc[2:4]
    page3 = await store.jobs.list_dead(limit=2, before_id=page2[-1].id)
    assert [j.id for j in page3] == ids_desc[4:]
    assert [j.id for j in await store.jobs.list_dead(kind="a")] == [dead[3].id, dead[1].id]
    assert all(j.state is JobState.DEAD and j.last_error for j in page1)


async def test_purge_finished(store: Store, t0: float) -> None:
    old_ok = await enqueue(store, t=t0, ordering_key="P", dedupe_key="dd")
    assert await store.jobs.lease("w", visibility=VIS, now=t0)
    assert await store.jobs.ack(old_ok.id, "w", now=t0 - 100, attempt=at(t0))
    old_discarded = await enqueue(store, t=t0)
    assert await store.jobs.lease("w", visibility=VIS, now=t0)
    assert await store.jobs.dead_letter(old_discarded.id, "w", now=t0, attempt=at(t0, "x"))
    assert await store.jobs.discard(old_discarded.id, now=t0 - 50)
    recent_ok = await enqueue(store, t=t0)
    assert await store.jobs.lease("w", visibility=VIS, now=t0)
    assert await store.jobs.ack(recent_ok.id, "w", now=t0 + 10, attempt=at(t0))
    dead = await enqueue(store, t=t0)
    assert await store.jobs.lease("w", visibility=VIS, now=t0)
    assert await store.jobs.dead_letter(dead.id, "w", now=t0 - 1000, attempt=at(t0, "x"))
    queued = await enqueue(store, t=t0 + 1)

    assert await store.jobs.purge_finished(older_than=t0) == 2
    assert await store.jobs.get(old_ok.id) is None
    assert await store.jobs.get(old_discarded.id) is None
    for kept in (recent_ok, dead, queued):
        assert await store.jobs.get(kept.id) is not None
    assert await store.jobs.by_ordering_key("P") == []
    # the purged job's dedupe key is free again
    again, created = await store.jobs.enqueue(NewJob("k", {}, dedupe_key="dd"))
    assert created and again.id != old_ok.id
    assert await store.jobs.purge_finished(older_than=t0) == 0


async def test_purge_finished_many(store: Store, t0: float) -> None:
    for i in range(60):
        job = await enqueue(store, t=t0, n=i)
        assert await store.jobs.lease("w", visibility=VIS, now=t0)
        assert await store.jobs.ack(job.id, "w", now=t0, attempt=at(t0))
    assert await store.jobs.purge_finished(older_than=t0 + 1) == 60


async def test_empty_keys_are_rejected(store: Store) -> None:
    """An empty ordering or dedupe key is a caller bug, not a key shared by everyone."""
    with pytest.raises(ValueError):
        await store.jobs.enqueue(NewJob("k", {}, ordering_key=""))
    with pytest.raises(ValueError):
        await store.jobs.enqueue(NewJob("k", {}, dedupe_key=""))
    assert await store.jobs.count_queued("k") == 0
