"""The SQLite job queue (private to the SQLite backend).

``ready_at`` is what makes a lease one indexed lookup: it is set only on jobs a worker may take
(a QUEUED job at the head of its ordering key, due at ``run_at``; a LEASED job, takeable again
at ``lease_expires_at``) and NULL on every other row, so the partial index on it holds the
eligible jobs alone. It is maintained on enqueue, lease, retry, ack, dead letter, replay and
discard; when a key's head finishes, the next job of the key is promoted.

Per-kind counts live in ``job_counts``, kept by triggers in the same transaction, so bounded
queues and stats do not count rows.
"""

# ruff: noqa: S608  (SQL text is built from module constants only; values are bound)

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from typing import Any

from gateway.store import ids
from gateway.store._codec import (
    attempt_json,
    attempts_from_json,
    check_new_job,
    dumps,
    loads_dict,
)
from gateway.store._sqlite_db import Database
from gateway.store.base import (
    Attempt,
    Job,
    JobState,
    JobStore,
    NewJob,
    QueueFull,
    QueueStats,
)

__all__ = ["SCHEMA", "SqliteJobStore"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    state TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    run_at REAL NOT NULL,
    ordering_key TEXT,
    dedupe_key TEXT,
    request_id TEXT,
    client_id TEXT,
    attempts TEXT NOT NULL DEFAULT '[]',
    lease_owner TEXT,
    lease_expires_at REAL,
    result TEXT,
    last_error TEXT,
    ready_at REAL
);
CREATE INDEX IF NOT EXISTS jobs_ready ON jobs(ready_at) WHERE ready_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS jobs_kind_ready ON jobs(kind, ready_at) WHERE ready_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS jobs_okey ON jobs(ordering_key, id) WHERE ordering_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS jobs_okey_active ON jobs(ordering_key, id)
    WHERE ordering_key IS NOT NULL AND state IN ('queued', 'leased', 'dead');
CREATE UNIQUE INDEX IF NOT EXISTS jobs_dedupe ON jobs(dedupe_key) WHERE dedupe_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS jobs_dead ON jobs(kind, id) WHERE state = 'dead';
CREATE INDEX IF NOT EXISTS jobs_finished ON jobs(updated_at)
    WHERE state IN ('succeeded', 'discarded');
CREATE TABLE IF NOT EXISTS job_counts (
    kind TEXT NOT NULL,
    state TEXT NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (kind, state)
) WITHOUT ROWID;
CREATE TRIGGER IF NOT EXISTS jobs_count_insert AFTER INSERT ON jobs BEGIN
    INSERT OR IGNORE INTO job_counts(kind, state, n) VALUES (NEW.kind, NEW.state, 0);
    UPDATE job_counts SET n = n + 1 WHERE kind = NEW.kind AND state = NEW.state;
END;
CREATE TRIGGER IF NOT EXISTS jobs_count_update AFTER UPDATE OF state ON jobs
WHEN OLD.state <> NEW.state BEGIN
    UPDATE job_counts SET n = n - 1 WHERE kind = OLD.kind AND state = OLD.state;
    INSERT OR IGNORE INTO job_counts(kind, state, n) VALUES (NEW.kind, NEW.state, 0);
    UPDATE job_counts SET n = n + 1 WHERE kind = NEW.kind AND state = NEW.state;
END;
CREATE TRIGGER IF NOT EXISTS jobs_count_delete AFTER DELETE ON jobs BEGIN
    UPDATE job_counts SET n = n - 1 WHERE kind = OLD.kind AND state = OLD.state;
END;
"""

_COLS = (
    "id, kind, state, payload, created_at, updated_at, run_at, ordering_key, dedupe_key, "
    "request_id, client_id, attempts, lease_owner, lease_expires_at, result, last_error"
)
_ACTIVE = "('queued', 'leased', 'dead')"
#: above this many kinds, lease walks the global ready index instead of one lookup per kind
_PER_KIND_LOOKUPS = 8


def _job(row: Sequence[Any]) -> Job:
    return Job(
        id=row[0],
        kind=row[1],
        state=JobState(row[2]),
        payload=loads_dict(row[3]) or {},
        created_at=row[4],
        updated_at=row[5],
        run_at=row[6],
        ordering_key=row[7],
        dedupe_key=row[8],
        request_id=row[9],
        client_id=row[10],
        attempts=attempts_from_json(row[11]),
        lease_owner=row[12],
        lease_expires_at=row[13],
        result=loads_dict(row[14]),
        last_error=row[15],
    )


def _get(conn: sqlite3.Connection, job_id: str) -> Job | None:
    row = conn.execute(f"SELECT {_COLS} FROM jobs WHERE id = ?", (job_id,)).fetchone()
    return _job(row) if row else None


def _promote(conn: sqlite3.Connection, ordering_key: str) -> None:
    """Make the oldest active job of the key eligible, if it is a QUEUED one."""
    row = conn.execute(
        "SELECT id, state, run_at FROM jobs WHERE ordering_key = ? AND ordering_key IS NOT NULL"
        f" AND state IN {_ACTIVE} ORDER BY id LIMIT 1",
        (ordering_key,),
    ).fetchone()
    if row and row[1] == JobState.QUEUED:
        conn.execute(
            "UPDATE jobs SET ready_at = run_at WHERE id = ? AND ready_at IS NULL", (row[0],)
        )


def _is_head(conn: sqlite3.Connection, job_id: str, ordering_key: str | None) -> bool:
    if ordering_key is None:
        return True
    row = conn.execute(
        "SELECT 1 FROM jobs WHERE ordering_key = ? AND ordering_key IS NOT NULL"
        f" AND state IN {_ACTIVE} AND id < ? LIMIT 1",
        (ordering_key, job_id),
    ).fetchone()
    return row is None


class SqliteJobStore(JobStore):
    def __init__(self, db: Database) -> None:
        self._db = db

    async def enqueue(self, job: NewJob, *, max_queued: int | None = None) -> tuple[Job, bool]:
        check_new_job(job)
        now = time.time()
        proposed = ids.new_id()

        def tx(conn: sqlite3.Connection) -> tuple[Job, bool]:
            if job.dedupe_key is not None:
                row = conn.execute(
                    f"SELECT {_COLS} FROM jobs WHERE dedupe_key = ?", (job.dedupe_key,)
                ).fetchone()
                if row:
                    return _job(row), False
            if max_queued is not None:
                n = conn.execute(
                    "SELECT n FROM job_counts WHERE kind = ? AND state = 'queued'", (job.kind,)
                ).fetchone()
                if n and n[0] >= max_queued:
                    raise QueueFull(job.kind)
            job_id = proposed
            (last,) = conn.execute("SELECT max(id) FROM jobs").fetchone()
            if last is not None and job_id <= last:
                # another process stored a later id in this millisecond: keep id order = commit
                # order, which ordering keys and dead-letter pagination rely on
                job_id = ids.after(last)
            run_at = job.run_at if job.run_at is not None else now
            head = True
            if job.ordering_key is not None:
                head = (
                    conn.execute(
                        "SELECT 1 FROM jobs WHERE ordering_key = ? AND ordering_key IS NOT NULL"
                        f" AND state IN {_ACTIVE} LIMIT 1",
                        (job.ordering_key,),
                    ).fetchone()
                    is None
                )
            conn.execute(
                "INSERT INTO jobs (id, kind, state, payload, created_at, updated_at, run_at,"
                " ordering_key, dedupe_key, request_id, client_id, ready_at)"
                " VALUES (?, ?, 'queued', ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    job_id,
                    job.kind,
                    dumps(job.payload),
                    now,
                    now,
                    run_at,
                    job.ordering_key,
                    job.dedupe_key,
                    job.request_id,
                    job.client_id,
                    run_at if head else None,
                ),
            )
            return job.queued(job_id, now=now, run_at=run_at), True

        return await self._db.write(tx)

    async def lease(
        self, owner: str, *, visibility: float, now: float, kinds: Sequence[str] | None = None
    ) -> Job | None:
        expires = now + visibility
        kind_list = list(kinds) if kinds is not None else None
        if kind_list is not None and not kind_list:
            return None

        def tx(conn: sqlite3.Connection) -> Job | None:
            job_id: str | None = None
            if kind_list is None:
                row = conn.execute(
                    "SELECT id FROM jobs INDEXED BY jobs_ready"
                    " WHERE ready_at IS NOT NULL AND ready_at <= ? ORDER BY ready_at LIMIT 1",
                    (now,),
                ).fetchone()
                job_id = row[0] if row else None
            elif len(kind_list) <= _PER_KIND_LOOKUPS:
                best: float | None = None
                for kind in kind_list:
                    row = conn.execute(
                        "SELECT id, ready_at FROM jobs INDEXED BY jobs_kind_ready"
                        " WHERE kind = ? AND ready_at IS NOT NULL AND ready_at <= ?"
                        " ORDER BY ready_at LIMIT 1",
                        (kind, now),
                    ).fetchone()
                    if row and (best is None or row[1] < best):
                        job_id, best = row[0], row[1]
            else:
                marks = ",".join("?" * len(kind_list))
                row = conn.execute(
                    "SELECT id FROM jobs INDEXED BY jobs_ready"
                    f" WHERE ready_at IS NOT NULL AND ready_at <= ? AND kind IN ({marks})"
                    " ORDER BY ready_at LIMIT 1",
                    (now, *kind_list),
                ).fetchone()
                job_id = row[0] if row else None
            if job_id is None:
                return None
            row = conn.execute(
                "UPDATE jobs SET state = 'leased', lease_owner = ?, lease_expires_at = ?,"
                f" ready_at = ?, updated_at = ? WHERE id = ? RETURNING {_COLS}",
                (owner, expires, expires, now, job_id),
            ).fetchone()
            return _job(row)

        return await self._db.write(tx)

    async def heartbeat(self, job_id: str, owner: str, *, visibility: float, now: float) -> bool:
        expires = now + visibility

        def tx(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(
                "UPDATE jobs SET lease_expires_at = ?, ready_at = ?, updated_at = ?"
                " WHERE id = ? AND state = 'leased' AND lease_owner = ?",
                (expires, expires, now, job_id, owner),
            )
            return cur.rowcount == 1

        return await self._db.write(tx)

    async def ack(
        self,
        job_id: str,
        owner: str,
        *,
        now: float,
        attempt: Attempt,
        result: dict[str, Any] | None = None,
    ) -> bool:
        result_text = dumps(result) if result is not None else None

        def tx(conn: sqlite3.Connection) -> bool:
            row = conn.execute(
                "UPDATE jobs SET state = 'succeeded', updated_at = ?,"
                " attempts = json_insert(attempts, '$[#]', json(?)), result = ?,"
                " lease_owner = NULL, lease_expires_at = NULL, ready_at = NULL"
                " WHERE id = ? AND state = 'leased' AND lease_owner = ? RETURNING ordering_key",
                (now, attempt_json(attempt), result_text, job_id, owner),
            ).fetchone()
            if row is None:
                return False
            if row[0] is not None:
                _promote(conn, row[0])
            return True

        return await self._db.write(tx)

    async def retry(self, job_id: str, owner: str, *, run_at: float, attempt: Attempt) -> bool:
        return await self._requeue(job_id, owner, run_at=run_at, attempt=attempt)

    async def defer(self, job_id: str, owner: str, *, run_at: float) -> bool:
        return await self._requeue(job_id, owner, run_at=run_at, attempt=None)

    async def _requeue(
        self, job_id: str, owner: str, *, run_at: float, attempt: Attempt | None
    ) -> bool:
        now = time.time()

        def tx(conn: sqlite3.Connection) -> bool:
            # the job held the lease, so it is the head of its key: it stays eligible
            if attempt is None:
                cur = conn.execute(
                    "UPDATE jobs SET state = 'queued', run_at = ?, ready_at = ?, updated_at = ?,"
                    " lease_owner = NULL, lease_expires_at = NULL"
                    " WHERE id = ? AND state = 'leased' AND lease_owner = ?",
                    (run_at, run_at, now, job_id, owner),
                )
            else:
                cur = conn.execute(
                    "UPDATE jobs SET state = 'queued', run_at = ?, ready_at = ?, updated_at = ?,"
                    " lease_owner = NULL, lease_expires_at = NULL, last_error = ?,"
                    " attempts = json_insert(attempts, '$[#]', json(?))"
                    " WHERE id = ? AND state = 'leased' AND lease_owner = ?",
                    (run_at, run_at, now, attempt.error, attempt_json(attempt), job_id, owner),
                )
            return cur.rowcount == 1

        return await self._db.write(tx)

    async def dead_letter(self, job_id: str, owner: str, *, now: float, attempt: Attempt) -> bool:
        def tx(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(
                "UPDATE jobs SET state = 'dead', updated_at = ?, last_error = ?,"
                " attempts = json_insert(attempts, '$[#]', json(?)),"
                " lease_owner = NULL, lease_expires_at = NULL, ready_at = NULL"
                " WHERE id = ? AND state = 'leased' AND lease_owner = ?",
                (now, attempt.error, attempt_json(attempt), job_id, owner),
            )
            return cur.rowcount == 1

        return await self._db.write(tx)

    async def replay(self, job_id: str, *, now: float) -> Job | None:
        def tx(conn: sqlite3.Connection) -> Job | None:
            row = conn.execute(
                "SELECT ordering_key FROM jobs WHERE id = ? AND state = 'dead'", (job_id,)
            ).fetchone()
            if row is None:
                return None
            head = _is_head(conn, job_id, row[0])
            row = conn.execute(
                "UPDATE jobs SET state = 'queued', run_at = ?, ready_at = ?, updated_at = ?"
                f" WHERE id = ? RETURNING {_COLS}",
                (now, now if head else None, now, job_id),
            ).fetchone()
            return _job(row)

        return await self._db.write(tx)

    async def discard(self, job_id: str, *, now: float) -> Job | None:
        def tx(conn: sqlite3.Connection) -> Job | None:
            row = conn.execute(
                "UPDATE jobs SET state = 'discarded', updated_at = ?, ready_at = NULL"
                f" WHERE id = ? AND state = 'dead' RETURNING {_COLS}",
                (now, job_id),
            ).fetchone()
            if row is None:
                return None
            job = _job(row)
            if job.ordering_key is not None:
                _promote(conn, job.ordering_key)
            return job

        return await self._db.write(tx)

    async def get(self, job_id: str) -> Job | None:
        return await self._db.read(lambda conn: _get(conn, job_id))

    async def list_dead(
        self, *, kind: str | None = None, limit: int = 100, before_id: str | None = None
    ) -> list[Job]:
        clauses = ["state = 'dead'"]
        args: list[Any] = []
        if kind is not None:
            clauses.append("kind = ?")
            args.append(kind)
        if before_id is not None:
            clauses.append("id < ?")
            args.append(before_id)
        sql = f"SELECT {_COLS} FROM jobs WHERE {' AND '.join(clauses)} ORDER BY id DESC LIMIT ?"
        args.append(limit)
        return await self._db.read(lambda conn: [_job(r) for r in conn.execute(sql, args)])

    async def held_back(self, ordering_key: str, *, limit: int = 100) -> list[Job]:
        def q(conn: sqlite3.Connection) -> list[Job]:
            rows = conn.execute(
                f"SELECT {_COLS} FROM jobs INDEXED BY jobs_okey_active"
                " WHERE ordering_key = ? AND ordering_key IS NOT NULL"
                f" AND state IN {_ACTIVE} ORDER BY id LIMIT ?",
                (ordering_key, limit + 1),
            ).fetchall()
            return [_job(r) for r in rows[1:] if r[2] == JobState.QUEUED][:limit]

        return await self._db.read(q)

    async def by_ordering_key(self, ordering_key: str, *, limit: int = 100) -> list[Job]:
        def q(conn: sqlite3.Connection) -> list[Job]:
            rows = conn.execute(
                f"SELECT {_COLS} FROM jobs INDEXED BY jobs_okey"
                " WHERE ordering_key = ? AND ordering_key IS NOT NULL ORDER BY id LIMIT ?",
                (ordering_key, limit),
            )
            return [_job(r) for r in rows]

        return await self._db.read(q)

    async def stats(self, *, now: float) -> list[QueueStats]:
        def q(conn: sqlite3.Connection) -> list[QueueStats]:
            counts: dict[str, dict[str, int]] = {}
            for kind, state, n in conn.execute(
                f"SELECT kind, state, n FROM job_counts WHERE state IN {_ACTIVE} AND n > 0"
            ):
                counts.setdefault(kind, {})[state] = n
            out = []
            for kind in sorted(counts):
                c = counts[kind]
                oldest: float | None = None
                if c.get("queued"):
                    row = conn.execute(
                        "SELECT min(ready_at) FROM jobs INDEXED BY jobs_kind_ready"
                        " WHERE kind = ? AND ready_at IS NOT NULL AND ready_at <= ?"
                        " AND state = 'queued'",
                        (kind, now),
                    ).fetchone()
                    if row and row[0] is not None:
                        oldest = max(0.0, now - row[0])
                out.append(
                    QueueStats(
                        kind=kind,
                        queued=c.get("queued", 0),
                        in_flight=c.get("leased", 0),
                        dead=c.get("dead", 0),
                        oldest_due_age=oldest,
                    )
                )
            return out

        return await self._db.read(q)

    async def count_queued(self, kind: str) -> int:
        def q(conn: sqlite3.Connection) -> int:
            row = conn.execute(
                "SELECT n FROM job_counts WHERE kind = ? AND state = 'queued'", (kind,)
            ).fetchone()
            return int(row[0]) if row else 0

        return await self._db.read(q)

    async def purge_finished(self, *, older_than: float) -> int:
        total = 0
        while True:

            def tx(conn: sqlite3.Connection) -> int:
                cur = conn.execute(
                    "DELETE FROM jobs WHERE id IN (SELECT id FROM jobs INDEXED BY jobs_finished"
                    " WHERE state IN ('succeeded', 'discarded') AND updated_at < ? LIMIT 2000)",
                    (older_than,),
                )
                return cur.rowcount

            n = await self._db.write(tx)
            total += n
            if n < 2000:
                return total
