"""One SQLite connection on its own thread (private to the SQLite backend).

Every call runs on a single dedicated thread, so the event loop never blocks on disk or on
another process's write lock, and the connection is never shared between threads. Writes that
read before they modify run inside ``BEGIN IMMEDIATE``: the write lock is taken up front, so
two processes on one file serialise instead of failing on lock upgrade, and ``busy_timeout``
makes the loser wait rather than error.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from gateway.errors import StoreUnavailable

__all__ = ["Database"]

T = TypeVar("T")

#: how long a write waits for another process's transaction before giving up (ms)
BUSY_TIMEOUT_MS = 10_000


class Database:
    def __init__(self, path: Path, schema: str) -> None:
        self.path = path
        self._schema = schema
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None
        self._open_lock = threading.Lock()

    @property
    def is_open(self) -> bool:
        return self._conn is not None

    async def open(self) -> None:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-store")
        await self._submit(self._connect)

    def _connect(self) -> None:
        if self._conn is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: autocommit; we issue BEGIN IMMEDIATE ourselves.
        conn = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_MS / 1e3
        )
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA journal_mode = WAL")
        # NORMAL in WAL mode survives a process crash (SIGKILL); only an OS crash or power loss
        # can lose the last transactions. That is the trade the queue needs for throughput.
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = OFF")
        conn.execute("PRAGMA temp_store = MEMORY")
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _statements(self._schema):
                conn.execute(statement)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            conn.close()
            raise
        self._conn = conn

    async def close(self) -> None:
        executor = self._executor
        if executor is None:
            return
        try:
            await self._submit(self._disconnect)
        finally:
            executor.shutdown(wait=True)
            self._executor = None

    def _disconnect(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                # best effort: refreshes planner statistics; another process may hold the lock
                conn.execute("PRAGMA optimize")
            except sqlite3.OperationalError:
                pass
            finally:
                conn.close()

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` on the store thread in autocommit mode (each statement sees a snapshot)."""
        return await self._submit(lambda: fn(self._require()))

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` in one ``BEGIN IMMEDIATE`` transaction; roll back if it raises."""

        def run() -> T:
            conn = self._require()
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(conn)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return result

        return await self._submit(run)

    def _require(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreUnavailable("the SQLite store is not open")
        return self._conn

    async def _submit(self, fn: Callable[[], T]) -> T:
        if self._executor is None:
            raise StoreUnavailable("the SQLite store is not open")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, fn)
        except sqlite3.OperationalError as exc:
            # locked past busy_timeout, disk full, I/O error: the store cannot serve now
            raise StoreUnavailable(f"SQLite store error: {exc}") from exc
        except RuntimeError as exc:
            if "shutdown" in str(exc):
                raise StoreUnavailable("the SQLite store is closed") from exc
            raise


def _statements(script: str) -> list[str]:
    """Split a schema script into statements (triggers contain inner semicolons)."""
    out: list[str] = []
    buf = ""
    for line in script.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            if buf.strip():
                out.append(buf.strip())
            buf = ""
    if buf.strip():
        out.append(buf.strip())
    return out
