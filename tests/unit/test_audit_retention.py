"""Retention over a real SQLite store: each kind purged by its own horizon, and the audit log
purged only up to the export high-water mark, with the chain still verifiable afterwards."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.audit import ANCHOR_KEY, Auditor, export, verify_chain
from gateway.retention import PURGE_KIND, WAITING_NOTE, RetentionPurger, purge, schedule
from gateway.settings import RetentionSettings
from gateway.store.base import Attempt, AuditQuery, Event, Job, JobState, NewJob
from gateway.store.sqlite import SqliteStore

DAY = 86400.0


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    s = SqliteStore(tmp_path / "gateway.db")
    await s.open()
    yield s
    await s.close()


async def fill_audit(store: SqliteStore, n: int) -> list[float]:
    auditor = Auditor(store, b"k")
    return [
        (await auditor.record(direction="internal", actor="a", operation=f"o{i}", outcome="ok")).at
        for i in range(n)
    ]


async def test_audit_is_never_purged_before_export(store: SqliteStore) -> None:
    await fill_audit(store, 5)
    report = await purge(store, RetentionSettings(audit_days=1), now=time.time() + 10 * DAY)
    assert report.audit_records == 0
    assert report.audit_note == WAITING_NOTE
    assert len(await store.audit.query(AuditQuery())) == 5


async def test_audit_purged_up_to_the_export_mark_and_still_verifies(
    store: SqliteStore, tmp_path: Path
) -> None:
    times = await fill_audit(store, 10)
    await export(store, tmp_path / "a.jsonl", None, times[6])  # seq 1..6 exported
    report = await purge(store, RetentionSettings(audit_days=1), now=time.time() + 10 * DAY)
    assert report.audit_records == 6
    assert report.audit_purged_up_to == 6
    assert report.audit_note == WAITING_NOTE  # 7..10 are old too, but not exported
    remaining = await store.audit.query(AuditQuery())
    assert sorted(r.seq for r in remaining) == [7, 8, 9, 10]
    anchor = json.loads(await store.get(ANCHOR_KEY) or b"{}")
    assert anchor["seq"] == 6
    assert anchor["hash"] == next(r for r in remaining if r.seq == 7).prev_hash
    result = await verify_chain(store)
    assert result.ok and result.checked == 4

    # the first remaining record is still bound to the purged part of the chain
    def tamper(conn: sqlite3.Connection) -> None:
        body = json.loads(conn.execute("SELECT body FROM audit WHERE seq = 7").fetchone()[0])
        body["prev_hash"] = "f" * 64
        conn.execute("UPDATE audit SET body = ? WHERE seq = 7", (json.dumps(body),))

    await store._db.write(tamper)
    broken = await verify_chain(store)
    assert not broken.ok and broken.first_broken_seq == 7

    # new records continue the chain after a purge
    await fill_audit(store, 1)
    assert (await store.audit.head())[0] == 11


async def test_audit_within_retention_is_kept_even_when_exported(
    store: SqliteStore, tmp_path: Path
) -> None:
    times = await fill_audit(store, 4)
    await export(store, tmp_path / "a.jsonl")
    # only the first two are older than the horizon
    now = times[2] + 1 * DAY - 0.0001
    report = await purge(store, RetentionSettings(audit_days=1), now=now)
    assert report.audit_records == 2
    assert report.audit_note is None
    assert (await verify_chain(store)).ok


async def make_job(store: SqliteStore, kind: str, *, at: float, fail: bool = False) -> Job:
    job, _ = await store.jobs.enqueue(NewJob(kind=kind, payload={}, run_at=at))
    leased = await store.jobs.lease("w", visibility=30, now=at + 1, kinds=[kind])
    assert leased is not None and leased.id == job.id
    if fail:
        await store.jobs.dead_letter(job.id, "w", now=at + 2, attempt=Attempt(at=at, error="x"))
    else:
        await store.jobs.ack(job.id, "w", now=at + 2, attempt=Attempt(at=at))
    found = await store.jobs.get(job.id)
    assert found is not None
    return found


async def test_jobs_events_and_expired_values_by_their_own_horizons(store: SqliteStore) -> None:
    now = time.time()
    old_done = await make_job(store, "t.a", at=now - 10 * DAY)
    new_done = await make_job(store, "t.b", at=now - 1 * DAY)
    old_dead = await make_job(store, "t.c", at=now - 10 * DAY, fail=True)
    for i, age in enumerate([40 * DAY, 20 * DAY]):
        await store.events.append(
            Event(id=f"01K00000000000000000000E{i}0", type="x", occurred_at=now - age, data={})
        )
    await store.set("callback:dedupe:test:1", b"x", ttl=0.01)
    await store.set("kept", b"y", ttl=3600)
    await asyncio.sleep(0.02)
    settings = RetentionSettings(finished_jobs_days=7, events_days=30)
    report = await purge(store, settings, now=now)
    assert report.finished_jobs == 1
    assert await store.jobs.get(old_done.id) is None
    assert await store.jobs.get(new_done.id) is not None
    assert await store.jobs.get(old_dead.id) is not None  # dead letters wait for ops
    assert report.events == 1
    assert [e.occurred_at for e in await store.events.list_after(None)] == [now - 20 * DAY]
    assert report.expired_values >= 1
    assert await store.get("kept") == b"y"


async def test_the_job_audits_each_pass(store: SqliteStore) -> None:
    assert schedule(RetentionSettings(purge_interval_seconds=60)).interval_seconds == 60
    purger = RetentionPurger(store, RetentionSettings(), Auditor(store, b"k"))
    job = Job(
        id="01K0000000000000000000000J",
        kind=PURGE_KIND,
        payload={},
        state=JobState.LEASED,
        created_at=0,
        updated_at=0,
        run_at=0,
    )
    result = await purger(job)
    assert result["finished_jobs"] == 0
    [record] = await store.audit.query(AuditQuery(operation=PURGE_KIND))
    assert record.extra["audit_records"] == 0
