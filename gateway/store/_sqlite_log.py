"""The SQLite audit chain and event log (private to the SQLite backend).

An audit row keeps the record's exact JSON (``body``: what the hash covers, plus the hash) and
copies of the fields the ops queries filter on, each indexed together with ``seq`` so a
newest-first page is an index walk. ``audit_head`` holds the last (seq, hash) even after a
purge, so the chain continues where it was.
"""

# ruff: noqa: S608  (SQL text is built from module constants only; values are bound)

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import AsyncIterator
from typing import Any

from gateway.store._codec import audit_from_json, audit_json, event_from_json, event_json
from gateway.store._sqlite_db import Database
from gateway.store.base import (
    GENESIS_HASH,
    AuditQuery,
    AuditRecord,
    AuditStore,
    Event,
    EventStore,
)

__all__ = ["SCHEMA", "SqliteAuditStore", "SqliteEventStore"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY,
    at REAL NOT NULL,
    actor TEXT NOT NULL,
    operation TEXT NOT NULL,
    outcome TEXT NOT NULL,
    adapter TEXT,
    request_id TEXT,
    dossier_code TEXT,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_at ON audit(at);
CREATE INDEX IF NOT EXISTS audit_actor ON audit(actor, seq);
CREATE INDEX IF NOT EXISTS audit_operation ON audit(operation, seq);
CREATE INDEX IF NOT EXISTS audit_outcome ON audit(outcome, seq);
CREATE INDEX IF NOT EXISTS audit_adapter ON audit(adapter, seq);
CREATE INDEX IF NOT EXISTS audit_request ON audit(request_id, seq) WHERE request_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS audit_dossier ON audit(dossier_code, seq)
    WHERE dossier_code IS NOT NULL;
CREATE TABLE IF NOT EXISTS audit_subjects (
    digest TEXT NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (digest, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS audit_head (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    seq INTEGER NOT NULL,
    hash TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    id TEXT PRIMARY KEY,
    occurred_at REAL NOT NULL,
    body TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS events_occurred ON events(occurred_at);
"""

_PAGE = 500


class SqliteAuditStore(AuditStore):
    def __init__(self, db: Database) -> None:
        self._db = db

    async def append(self, record: AuditRecord) -> AuditRecord:
        def tx(conn: sqlite3.Connection) -> AuditRecord:
            row = conn.execute("SELECT seq, hash FROM audit_head WHERE id = 1").fetchone()
            last_seq, last_hash = row if row else (0, GENESIS_HASH)
            rec = dataclasses.replace(record, seq=last_seq + 1, prev_hash=last_hash, hash="")
            rec.hash = rec.compute_hash()
            conn.execute(
                "INSERT INTO audit (seq, at, actor, operation, outcome, adapter, request_id,"
                " dossier_code, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    rec.seq,
                    rec.at,
                    rec.actor,
                    rec.operation,
                    rec.outcome,
                    rec.adapter,
                    rec.request_id,
                    rec.dossier_code,
                    audit_json(rec),
                ),
            )
            if rec.subject_digests:
                conn.executemany(
                    "INSERT OR IGNORE INTO audit_subjects (digest, seq) VALUES (?, ?)",
                    [(d, rec.seq) for d in rec.subject_digests],
                )
            conn.execute(
                "INSERT INTO audit_head (id, seq, hash) VALUES (1, ?, ?)"
                " ON CONFLICT(id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash",
                (rec.seq, rec.hash),
            )
            return rec

        return await self._db.write(tx)

    async def query(self, q: AuditQuery) -> list[AuditRecord]:
        clauses: list[str] = []
        args: list[Any] = []
        if q.since is not None:
            clauses.append("at >= ?")
            args.append(q.since)
        if q.until is not None:
            clauses.append("at < ?")
            args.append(q.until)
        for column in ("adapter", "actor", "outcome", "request_id", "dossier_code", "operation"):
            value = getattr(q, column)
            if value is not None:
                clauses.append(f"{column} = ?")
                args.append(value)
        if q.subject_digest is not None:
            clauses.append("seq IN (SELECT seq FROM audit_subjects WHERE digest = ?)")
            args.append(q.subject_digest)
        if q.before_seq is not None:
            clauses.append("seq < ?")
            args.append(q.before_seq)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        sql = f"SELECT body FROM audit {where} ORDER BY seq DESC LIMIT ?"
        args.append(max(0, q.limit))
        return await self._db.read(
            lambda conn: [audit_from_json(r[0]) for r in conn.execute(sql, args)]
        )

    async def iterate(
        self, *, from_seq: int = 1, to_seq: int | None = None
    ) -> AsyncIterator[AuditRecord]:
        next_seq = from_seq
        upper = to_seq if to_seq is not None else (1 << 62)
        while next_seq <= upper:

            def page(conn: sqlite3.Connection, start: int = next_seq) -> list[str]:
                return [
                    r[0]
                    for r in conn.execute(
                        "SELECT body FROM audit WHERE seq >= ? AND seq <= ? ORDER BY seq LIMIT ?",
                        (start, upper, _PAGE),
                    )
                ]

            bodies = await self._db.read(page)
            if not bodies:
                return
            for body in bodies:
                rec = audit_from_json(body)
                next_seq = rec.seq + 1
                yield rec
            if len(bodies) < _PAGE:
                return

    async def head(self) -> tuple[int, str]:
        def q(conn: sqlite3.Connection) -> tuple[int, str]:
            row = conn.execute("SELECT seq, hash FROM audit_head WHERE id = 1").fetchone()
            return (int(row[0]), str(row[1])) if row else (0, GENESIS_HASH)

        return await self._db.read(q)

    async def purge(self, *, up_to_seq: int) -> int:
        def tx(conn: sqlite3.Connection) -> int:
            conn.execute("DELETE FROM audit_subjects WHERE seq <= ?", (up_to_seq,))
            return conn.execute("DELETE FROM audit WHERE seq <= ?", (up_to_seq,)).rowcount

        return await self._db.write(tx)


class SqliteEventStore(EventStore):
    def __init__(self, db: Database) -> None:
        self._db = db

    async def append(self, event: Event) -> None:
        def tx(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT OR IGNORE INTO events (id, occurred_at, body) VALUES (?, ?, ?)",
                (event.id, event.occurred_at, event_json(event)),
            )

        await self._db.write(tx)

    async def get(self, event_id: str) -> Event | None:
        def q(conn: sqlite3.Connection) -> Event | None:
            row = conn.execute("SELECT body FROM events WHERE id = ?", (event_id,)).fetchone()
            return event_from_json(row[0]) if row else None

        return await self._db.read(q)

    async def list_after(self, after_id: str | None, *, limit: int = 100) -> list[Event]:
        def q(conn: sqlite3.Connection) -> list[Event]:
            rows = conn.execute(
                "SELECT body FROM events WHERE id > ? ORDER BY id LIMIT ?",
                (after_id or "", max(0, limit)),
            )
            return [event_from_json(r[0]) for r in rows]

        return await self._db.read(q)

    async def purge(self, *, older_than: float) -> int:
        def tx(conn: sqlite3.Connection) -> int:
            return conn.execute("DELETE FROM events WHERE occurred_at < ?", (older_than,)).rowcount

        return await self._db.write(tx)
