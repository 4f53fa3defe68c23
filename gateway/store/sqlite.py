"""The embedded store: one SQLite file in WAL mode (``var/gateway.db`` by default).

Zero set-up, survives restarts, and is safe for several processes on one file (``gateway
serve`` beside ``gateway worker``): every read-modify-write is one ``BEGIN IMMEDIATE``
transaction, and a writer waits for another process's transaction (``busy_timeout``) instead
of failing. All SQL runs on one dedicated thread per store, so the event loop never blocks.

Values with a TTL expire lazily: reads ignore an expired row and writes replace it;
:meth:`SqliteStore.purge_expired` deletes them (the retention job calls it).
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from gateway.store._sqlite_db import Database
from gateway.store._sqlite_jobs import SCHEMA as JOBS_SCHEMA
from gateway.store._sqlite_jobs import SqliteJobStore
from gateway.store._sqlite_log import SCHEMA as LOG_SCHEMA
from gateway.store._sqlite_log import SqliteAuditStore, SqliteEventStore
from gateway.store.base import Store

__all__ = ["SqliteStore"]

_SCHEMA = (
    """
CREATE TABLE IF NOT EXISTS kv (
    key TEXT PRIMARY KEY,
    value BLOB NOT NULL,
    expires_at REAL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS kv_expires ON kv(expires_at) WHERE expires_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS locks (
    name TEXT PRIMARY KEY,
    owner TEXT,
    expires_at REAL,
    token INTEGER NOT NULL
) WITHOUT ROWID;
"""
    + JOBS_SCHEMA
    + LOG_SCHEMA
)


def _expiry(ttl: float | None, now: float) -> float | None:
    return None if ttl is None else now + ttl


def _live(conn: sqlite3.Connection, key: str, now: float) -> bytes | None:
    row = conn.execute(
        "SELECT value FROM kv WHERE key = ? AND (expires_at IS NULL OR expires_at > ?)",
        (key, now),
    ).fetchone()
    return bytes(row[0]) if row else None


class SqliteStore(Store):
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._db = Database(self.path, _SCHEMA)
        self.jobs = SqliteJobStore(self._db)
        self.audit = SqliteAuditStore(self._db)
        self.events = SqliteEventStore(self._db)

    async def open(self) -> None:
        await self._db.open()

    async def close(self) -> None:
        await self._db.close()

    async def ping(self) -> bool:
        if not self._db.is_open:
            return False
        try:
            return await self._db.read(lambda c: c.execute("SELECT 1").fetchone() == (1,))
        except Exception:
            return False

    # values ----------------------------------------------------------------------------
    async def get(self, key: str) -> bytes | None:
        now = time.time()
        return await self._db.read(lambda c: _live(c, key, now))

    async def set(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        now = time.time()

        def tx(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO kv (key, value, expires_at) VALUES (?, ?, ?) ON CONFLICT(key)"
                " DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at",
                (key, value, _expiry(ttl, now)),
            )

        await self._db.write(tx)

    async def set_if_absent(self, key: str, value: bytes, *, ttl: float | None = None) -> bool:
        now = time.time()

        def tx(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(
                "INSERT INTO kv (key, value, expires_at) VALUES (?, ?, ?) ON CONFLICT(key)"
                " DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at"
                " WHERE kv.expires_at IS NOT NULL AND kv.expires_at <= ?",
                (key, value, _expiry(ttl, now), now),
            )
            return cur.rowcount == 1

        return await self._db.write(tx)

    async def compare_and_set(
        self, key: str, expected: bytes | None, value: bytes, *, ttl: float | None = None
    ) -> bool:
        now = time.time()

        def tx(conn: sqlite3.Connection) -> bool:
            if _live(conn, key, now) != expected:
                return False
            conn.execute(
                "INSERT INTO kv (key, value, expires_at) VALUES (?, ?, ?) ON CONFLICT(key)"
                " DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at",
                (key, value, _expiry(ttl, now)),
            )
            return True

        return await self._db.write(tx)

    async def delete(self, key: str) -> bool:
        now = time.time()

        def tx(conn: sqlite3.Connection) -> bool:
            row = conn.execute(
                "DELETE FROM kv WHERE key = ? RETURNING expires_at", (key,)
            ).fetchone()
            return row is not None and (row[0] is None or row[0] > now)

        return await self._db.write(tx)

    async def incr(self, key: str, amount: int = 1, *, ttl: float | None = None) -> int:
        now = time.time()

        def tx(conn: sqlite3.Connection) -> int:
            current = _live(conn, key, now)
            if current is None:
                value = amount
                expires = _expiry(ttl, now)
            else:
                value = int(current) + amount
                row = conn.execute("SELECT expires_at FROM kv WHERE key = ?", (key,)).fetchone()
                expires = row[0]
            conn.execute(
                "INSERT INTO kv (key, value, expires_at) VALUES (?, ?, ?) ON CONFLICT(key)"
                " DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at",
                (key, str(value).encode("ascii"), expires),
            )
            return value

        return await self._db.write(tx)

    async def scan(self, prefix: str, *, limit: int = 1000) -> dict[str, bytes]:
        now = time.time()
        # range scan on the primary key; no LIKE, so '%' and '_' in a prefix are literal
        upper = prefix + "\U0010ffff"

        def q(conn: sqlite3.Connection) -> dict[str, bytes]:
            rows = conn.execute(
                "SELECT key, value FROM kv WHERE key >= ? AND key < ?"
                " AND (expires_at IS NULL OR expires_at > ?) ORDER BY key LIMIT ?",
                (prefix, upper, now, limit),
            )
            return {k: bytes(v) for k, v in rows if k.startswith(prefix)}

        return await self._db.read(q)

    async def purge_expired(self) -> int:
        now = time.time()

        def tx(conn: sqlite3.Connection) -> int:
            return conn.execute(
                "DELETE FROM kv WHERE expires_at IS NOT NULL AND expires_at <= ?", (now,)
            ).rowcount

        return await self._db.write(tx)

    # locks -----------------------------------------------------------------------------
    async def acquire_lock(self, name: str, owner: str, *, ttl: float) -> int | None:
        now = time.time()

        def tx(conn: sqlite3.Connection) -> int | None:
            row = conn.execute(
                "SELECT owner, expires_at, token FROM locks WHERE name = ?", (name,)
            ).fetchone()
            if row is not None:
                held_by, expires_at, token = row
                live = held_by is not None and expires_at is not None and expires_at > now
                if live and held_by == owner:
                    conn.execute(
                        "UPDATE locks SET expires_at = ? WHERE name = ?", (now + ttl, name)
                    )
                    return int(token)
                if live:
                    return None
                token = int(token) + 1
            else:
                token = 1
            conn.execute(
                "INSERT INTO locks (name, owner, expires_at, token) VALUES (?, ?, ?, ?)"
                " ON CONFLICT(name) DO UPDATE SET owner = excluded.owner,"
                " expires_at = excluded.expires_at, token = excluded.token",
                (name, owner, now + ttl, token),
            )
            return token

        return await self._db.write(tx)

    async def release_lock(self, name: str, owner: str) -> bool:
        now = time.time()

        def tx(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(
                "UPDATE locks SET owner = NULL, expires_at = NULL"
                " WHERE name = ? AND owner = ? AND expires_at > ?",
                (name, owner, now),
            )
            return cur.rowcount == 1

        return await self._db.write(tx)

    async def lock_token(self, name: str) -> int:
        def q(conn: sqlite3.Connection) -> int:
            row = conn.execute("SELECT token FROM locks WHERE name = ?", (name,)).fetchone()
            return int(row[0]) if row else 0

        return await self._db.read(q)
