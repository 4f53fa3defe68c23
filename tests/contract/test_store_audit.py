"""Store contract: the audit hash chain (append, query, iterate, purge) and the event log."""

from __future__ import annotations

import asyncio
import dataclasses
import time

from gateway.store.base import (
    GENESIS_HASH,
    AuditQuery,
    AuditRecord,
    Event,
    Store,
    chain_digest,
)
from gateway.store.ids import new_id


def record(i: int = 0, **kw: object) -> AuditRecord:
    fields: dict[str, object] = {
        "at": 1_700_000_000.0 + i,
        "direction": "outbound",
        "actor": "population_db",
        "operation": "verify_citizen",
        "outcome": "ok",
    }
    fields.update(kw)
    return AuditRecord(**fields)  # type: ignore[arg-type]


async def verify_chain(store: Store, *, expected: int, first_prev: str = GENESIS_HASH) -> None:
    """Walk the chain as ``gateway audit verify`` does: contiguous seqs, links, hashes."""
    prev = first_prev
    seqs = []
    async for rec in store.audit.iterate():
        assert rec.prev_hash == prev, f"broken link at {rec.seq}"
        assert rec.hash == rec.compute_hash(), f"bad hash at {rec.seq}"
        assert rec.hash == chain_digest(rec.prev_hash, rec.canonical_body())
        prev = rec.hash
        seqs.append(rec.seq)
    assert len(seqs) == expected
    assert seqs == list(range(seqs[0], seqs[0] + expected)) if seqs else expected == 0
    assert (await store.audit.head())[1] == prev


async def test_empty_head(store: Store) -> None:
    assert await store.audit.head() == (0, GENESIS_HASH)
    assert [r async for r in store.audit.iterate()] == []
    assert await store.audit.query(AuditQuery()) == []


async def test_append_assigns_seq_and_links(store: Store) -> None:
    original = record(0, latency_ms=5, status=200, extra={"n": 1, "nested": [1.5, "ý"]})
    first = await store.audit.append(original)
    assert (first.seq, first.prev_hash) == (1, GENESIS_HASH)
    assert first.hash == first.compute_hash() and len(first.hash) == 64
    second = await store.audit.append(record(1))
    assert (second.seq, second.prev_hash) == (2, first.hash)
    assert await store.audit.head() == (2, second.hash)
    # what comes back reads exactly as written (an int latency stays an int: the hash holds)
    stored = [r async for r in store.audit.iterate()]
    assert stored[0] == first and stored[1] == second
    await verify_chain(store, expected=2)


async def test_concurrent_appends_form_one_chain(store: Store) -> None:
    recs = await asyncio.gather(*(store.audit.append(record(i)) for i in range(200)))
    assert sorted(r.seq for r in recs) == list(range(1, 201))
    await verify_chain(store, expected=200)
    # every record appended exactly once
    ats = sorted([r.at async for r in store.audit.iterate()])
    assert ats == [record(i).at for i in range(200)]


async def test_iterate_range(store: Store) -> None:
    for i in range(12):
        await store.audit.append(record(i))
    assert [r.seq async for r in store.audit.iterate(from_seq=5, to_seq=8)] == [5, 6, 7, 8]
    assert [r.seq async for r in store.audit.iterate(from_seq=11)] == [11, 12]
    assert [r.seq async for r in store.audit.iterate(from_seq=13)] == []


async def test_iterate_many_pages(store: Store) -> None:
    await asyncio.gather(*(store.audit.append(record(i)) for i in range(1100)))
    await verify_chain(store, expected=1100)


def _seqs(records: list[AuditRecord]) -> list[int]:
    return [r.seq for r in records]


async def test_query_filters_newest_first(store: Store) -> None:
    plan = []
    for i in range(30):
        plan.append(
            record(
                i,
                adapter=("population_db", "national_portal", None)[i % 3],
                actor=("dossier-system", "population_db")[i % 2],
                outcome="error" if i % 5 == 0 else "ok",
                operation=("verify_citizen", "sync_dossier")[i % 2],
                request_id=f"req-{i // 2}",
                dossier_code=f"G01.{i % 4}" if i % 4 else None,
                subject_digests=(["d-a", "d-b"] if i % 6 == 0 else ["d-c"] if i % 7 == 0 else []),
            )
        )
    for rec in plan:
        await store.audit.append(rec)

    def expect(pred: object) -> list[int]:
        return [i + 1 for i in reversed(range(30)) if pred(plan[i])]  # type: ignore[operator]

    q = store.audit.query
    assert _seqs(await q(AuditQuery(limit=1000))) == list(range(30, 0, -1))
    assert _seqs(await q(AuditQuery(limit=5))) == [30, 29, 28, 27, 26]
    assert _seqs(await q(AuditQuery(adapter="national_portal"))) == expect(
        lambda r: r.adapter == "national_portal"
    )
    assert _seqs(await q(AuditQuery(actor="population_db"))) == expect(
        lambda r: r.actor == "population_db"
    )
    assert _seqs(await q(AuditQuery(outcome="error"))) == expect(lambda r: r.outcome == "error")
    assert _seqs(await q(AuditQuery(operation="sync_dossier"))) == expect(
        lambda r: r.operation == "sync_dossier"
    )
    assert _seqs(await q(AuditQuery(request_id="req-3"))) == [8, 7]
    assert _seqs(await q(AuditQuery(dossier_code="G01.2"))) == expect(
        lambda r: r.dossier_code == "G01.2"
    )
    assert _seqs(await q(AuditQuery(subject_digest="d-b"))) == expect(
        lambda r: "d-b" in r.subject_digests
    )
    assert _seqs(await q(AuditQuery(subject_digest="d-c"))) == expect(
        lambda r: "d-c" in r.subject_digests
    )
    assert await q(AuditQuery(subject_digest="unknown")) == []
    assert await q(AuditQuery(adapter="nobody")) == []
    # time window: since <= at < until
    t = plan[10].at
    assert _seqs(await q(AuditQuery(since=t, until=t + 5))) == [15, 14, 13, 12, 11]
    assert _seqs(await q(AuditQuery(since=plan[27].at))) == [30, 29, 28]
    assert _seqs(await q(AuditQuery(until=plan[2].at))) == [2, 1]
    # combinations
    assert _seqs(await q(AuditQuery(outcome="error", adapter="population_db"))) == expect(
        lambda r: r.outcome == "error" and r.adapter == "population_db"
    )
    assert _seqs(
        await q(AuditQuery(actor="dossier-system", since=plan[5].at, until=plan[20].at))
    ) == expect(lambda r: r.actor == "dossier-system" and plan[5].at <= r.at < plan[20].at)
    # pagination by before_seq
    page1 = await q(AuditQuery(outcome="ok", limit=4))
    page2 = await q(AuditQuery(outcome="ok", limit=4, before_seq=page1[-1].seq))
    all_ok = expect(lambda r: r.outcome == "ok")
    assert _seqs(page1) + _seqs(page2) == all_ok[:8]
    assert _seqs(await q(AuditQuery(before_seq=3))) == [2, 1]
    assert await q(AuditQuery(before_seq=1)) == []
    assert await q(AuditQuery(limit=0)) == []
    # returned records are complete and verifiable
    for rec in await q(AuditQuery(limit=1000)):
        assert rec.hash == rec.compute_hash()


async def test_purge_keeps_chain_verifiable(store: Store) -> None:
    recs = [await store.audit.append(record(i, request_id=f"r{i}")) for i in range(10)]
    assert await store.audit.purge(up_to_seq=4) == 4
    head = await store.audit.head()
    assert head == (10, recs[-1].hash)
    remaining = [r async for r in store.audit.iterate()]
    assert [r.seq for r in remaining] == list(range(5, 11))
    # the first remaining record keeps the purged predecessor's hash as its prev_hash
    assert remaining[0].prev_hash == recs[3].hash
    await verify_chain(store, expected=6, first_prev=recs[3].hash)
    assert await store.audit.query(AuditQuery(request_id="r2")) == []
    assert _seqs(await store.audit.query(AuditQuery(limit=100))) == list(range(10, 4, -1))
    # the chain continues after a purge
    nxt = await store.audit.append(record(11))
    assert (nxt.seq, nxt.prev_hash) == (11, recs[-1].hash)
    assert await store.audit.purge(up_to_seq=4) == 0
    assert await store.audit.purge(up_to_seq=11) == 7
    assert await store.audit.head() == (11, nxt.hash)
    assert [r async for r in store.audit.iterate()] == []
    after = await store.audit.append(record(12))
    assert after.seq == 12 and after.prev_hash == nxt.hash


async def test_append_does_not_mutate_the_callers_record(store: Store) -> None:
    mine = record(0)
    snapshot = dataclasses.replace(mine)
    await store.audit.append(mine)
    assert mine == snapshot


# ---------------------------------------------------------------- events


def event(i: int, occurred_at: float, **kw: object) -> Event:
    return Event(
        id=new_id(),
        type="dossier.received",
        occurred_at=occurred_at,
        data={"i": i, "code": "G01.1"},
        **kw,  # type: ignore[arg-type]
    )


async def test_events_ordered_by_id(store: Store) -> None:
    now = time.time()
    events = [event(i, now, subject=f"G01.{i}", request_id="r") for i in range(7)]
    for e in events:
        await store.events.append(e)
    assert await store.events.list_after(None) == events
    assert await store.events.list_after(events[2].id) == events[3:]
    assert await store.events.list_after(events[2].id, limit=2) == events[3:5]
    assert await store.events.list_after(events[-1].id) == []
    assert await store.events.get(events[4].id) == events[4]
    assert await store.events.get(new_id()) is None


async def test_event_append_is_idempotent(store: Store) -> None:
    e = event(1, time.time())
    await store.events.append(e)
    await store.events.append(e)
    assert await store.events.list_after(None) == [e]


async def test_events_purge_by_occurred_at(store: Store) -> None:
    now = time.time()
    old = [event(i, now - 1000 - i) for i in range(3)]
    fresh = [event(i, now) for i in range(2)]
    for e in old + fresh:
        await store.events.append(e)
    assert await store.events.purge(older_than=now - 500) == 3
    assert await store.events.list_after(None) == fresh
    assert await store.events.get(old[0].id) is None
    assert await store.events.purge(older_than=now - 500) == 0
