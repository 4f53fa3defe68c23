"""``gateway dlq list | replay | discard`` against a real SQLite store, audited like the API."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from support.receiver import write_config

from gateway.cli import main
from gateway.jobs import JobQueue
from gateway.settings import JobSettings
from gateway.store.base import Attempt, AuditQuery, JobState
from gateway.store.sqlite import SqliteStore


async def make_dead_letter(store: SqliteStore, kind: str, key: str | None) -> str:
    queue = JobQueue(JobSettings(), store)
    job = await queue.enqueue(kind, {"x": 1}, ordering_key=key)
    leased = await store.jobs.lease("test", visibility=30, now=job.run_at + 1)
    assert leased is not None
    assert leased.id == job.id
    attempt = Attempt(at=job.run_at + 1, error="refused by the portal", retryable=False)
    assert await store.jobs.dead_letter(job.id, "test", now=job.run_at + 2, attempt=attempt)
    return job.id


async def prepare(db: Path) -> tuple[str, str, str]:
    store = SqliteStore(db)
    await store.open()
    try:
        dead = await make_dead_letter(store, "portal.push", "D-1")
        queue = JobQueue(JobSettings(), store)
        held = (await queue.enqueue("portal.push", {}, ordering_key="D-1")).id
        other = await make_dead_letter(store, "payments.poll", None)
    finally:
        await store.close()
    return dead, held, other


async def inspect(db: Path, job_id: str) -> tuple[JobState | None, list[Any]]:
    store = SqliteStore(db)
    await store.open()
    try:
        job = await store.jobs.get(job_id)
        records = await store.audit.query(AuditQuery(limit=10))
    finally:
        await store.close()
    return (job.state if job else None), records


def test_dlq_commands(tmp_path: Path) -> None:
    # a plain test: the CLI runs its own event loop
    db = tmp_path / "gateway.db"
    config = write_config(
        tmp_path / "gateway.toml",
        {
            "store": {"backend": "sqlite", "sqlite_path": str(db)},
            "security": {"clients_file": str(tmp_path / "clients.toml")},
        },
    )
    dead, held, other = asyncio.run(prepare(db))

    runner = CliRunner()
    env = {"GATEWAY_CONFIG": str(config), "USER": os.environ.get("USER", "tester")}
    listing = runner.invoke(main, ["dlq", "list", "--config", str(config)], env=env)
    assert listing.exit_code == 0, listing.output
    assert dead in listing.output
    assert f"holds back 1: {held}" in listing.output
    assert "refused by the portal" in listing.output

    as_json = runner.invoke(
        main, ["dlq", "list", "--config", str(config), "--system", "payments", "--json"], env=env
    )
    docs = [json.loads(line) for line in as_json.output.splitlines()]
    assert [d["id"] for d in docs] == [other]

    replayed = runner.invoke(main, ["dlq", "replay", dead, "--config", str(config)], env=env)
    assert replayed.exit_code == 0, replayed.output
    discarded = runner.invoke(main, ["dlq", "discard", other, "--config", str(config)], env=env)
    assert discarded.exit_code == 0, discarded.output
    again = runner.invoke(main, ["dlq", "discard", other, "--config", str(config)], env=env)
    assert again.exit_code == 1
    assert "not dead" in again.output
    empty = runner.invoke(main, ["dlq", "list", "--config", str(config)], env=env)
    assert "no dead letters" in empty.output

    state, records = asyncio.run(inspect(db, dead))
    assert state is JobState.QUEUED
    moves = sorted((r for r in records if r.operation.startswith("dlq.")), key=lambda r: r.seq)
    assert [(r.operation, r.outcome) for r in moves] == [
        ("dlq.replay", "ok"),
        ("dlq.discard", "ok"),
        ("dlq.discard", "rejected"),
    ]
    assert all(r.actor.startswith("cli:") for r in moves)
