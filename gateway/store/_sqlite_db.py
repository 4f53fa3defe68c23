"""One SQLite connection on its own thread (private to the SQLite backend).

Every call runs on a single dedicated thread, so the event loop never blocks on disk or on
another process's write lock, and the connection is never shared between threads.

Writes run inside ``BEGIN IMMEDIATE``: the write lock is taken up front, so two processes on
one file serialise instead of failing on a read-to-write lock upgrade, and ``busy_timeout``
makes the loser wait rather than error.

Group commit: calls queue up while the thread is busy; the thread takes everything queued,
runs the writes of that batch in ONE transaction, each inside its own SAVEPOINT (a write that
raises is rolled back alone and its caller gets the exception), commits once, and hands all
results back to the event loop in one wake-up. Under load this turns N commits and N thread
hand-offs into one of each; a lone call costs the same as before. A caller's result is only
delivered after the commit, so "returned" still means "durable".
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from gateway.errors import StoreUnavailable

__all__ = ["Database"]

T = TypeVar("T")

#: how long a write waits for another process's transaction before giving up (ms)
BUSY_TIMEOUT_MS = 10_000
#: most calls handled in one batch (one transaction)
MAX_BATCH = 128

_RAW, _READ, _WRITE = 0, 1, 2


class _Item:
    __slots__ = ("error", "fn", "future", "loop", "mode", "ok", "value")

    def __init__(
        self,
        mode: int,
        fn: Callable[..., Any],
        future: asyncio.Future[Any],
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.mode = mode
        self.fn = fn
        self.future = future
        self.loop = loop
        self.ok = False
        self.value: Any = None
        self.error: BaseException | None = None


def _deliver(items: list[_Item]) -> None:
    for item in items:
        if item.future.cancelled():
            continue
        if item.ok:
            item.future.set_result(item.value)
        else:
            assert item.error is not None
            item.future.set_exception(item.error)


class Database:
    def __init__(self, path: Path, schema: str) -> None:
        self.path = path
        self._schema = schema
        self._conn: sqlite3.Connection | None = None
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    @property
    def is_open(self) -> bool:
        return self._conn is not None and self._thread is not None

    async def open(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._serve, name=f"sqlite-store:{self.path.name}", daemon=True
            )
            self._thread.start()
        await self._submit(_RAW, self._connect)

    async def close(self) -> None:
        thread = self._thread
        if thread is None:
            return
        try:
            await self._submit(_RAW, self._disconnect)
        finally:
            self._thread = None
            self._queue.put(None)
            thread.join(timeout=5)

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` on the store thread (autocommit, or inside the batch's transaction)."""
        return await self._submit(_READ, fn)

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` atomically in a write transaction; if it raises, nothing it did stays."""
        return await self._submit(_WRITE, fn)

    async def _submit(self, mode: int, fn: Callable[..., T]) -> T:
        if self._thread is None:
            raise StoreUnavailable("the SQLite store is not open")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put(_Item(mode, fn, future, loop))
        try:
            return await future
        except sqlite3.OperationalError as exc:
            # locked past busy_timeout, disk full, I/O error: the store cannot serve now
            raise StoreUnavailable(f"SQLite store error: {exc}") from exc

    # the store thread ------------------------------------------------------------------
    def _serve(self) -> None:
        while True:
            first = self._queue.get()
            batch: list[_Item] = []
            stop = first is None
            if first is not None:
                batch.append(first)
            while not stop and len(batch) < MAX_BATCH:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                batch.append(item)
            if batch:
                self._run_batch(batch)
                by_loop: dict[asyncio.AbstractEventLoop, list[_Item]] = {}
                for item in batch:
                    by_loop.setdefault(item.loop, []).append(item)
                for loop, items in by_loop.items():
                    # a closed event loop has nobody waiting any more
                    with contextlib.suppress(RuntimeError):
                        loop.call_soon_threadsafe(_deliver, items)
            if stop:
                return

    def _run_batch(self, batch: list[_Item]) -> None:
        conn = self._conn
        writes = [i for i in batch if i.mode == _WRITE]
        in_tx = False
        if writes and conn is not None:
            try:
                conn.execute("BEGIN IMMEDIATE")
                in_tx = True
            except BaseException as exc:
                for item in writes:
                    item.error = exc
        for item in batch:
            if item.error is not None:
                continue
            try:
                if item.mode == _RAW:
                    item.value = item.fn()
                elif conn is None:
                    raise StoreUnavailable("the SQLite store is not open")
                elif item.mode == _READ:
                    item.value = item.fn(conn)
                elif not in_tx:
                    raise StoreUnavailable("the SQLite store lost its transaction")
                else:
                    conn.execute("SAVEPOINT op")
                    try:
                        item.value = item.fn(conn)
                    except BaseException:
                        if conn.in_transaction:
                            conn.execute("ROLLBACK TO op")
                            conn.execute("RELEASE op")
                        else:
                            # SQLite rolled the whole transaction back (disk full, I/O
                            # error): the batch's earlier writes are gone too
                            in_tx = False
                            self._fail(batch, StoreUnavailable("SQLite rolled back a batch"))
                        raise
                    conn.execute("RELEASE op")
                item.ok = True
            except BaseException as exc:
                item.ok, item.value, item.error = False, None, exc
        if in_tx and conn is not None:
            try:
                conn.execute("COMMIT")
            except BaseException as exc:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                # reads of this batch may have seen the writes that were just undone
                self._fail(batch, exc)

    @staticmethod
    def _fail(items: list[_Item], exc: BaseException) -> None:
        for item in items:
            if item.mode != _RAW:
                item.ok, item.value, item.error = False, None, exc

    def _connect(self) -> None:
        if self._conn is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: autocommit; transactions are ours (BEGIN IMMEDIATE)
        conn = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_MS / 1e3
        )
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA journal_mode = WAL")
        # NORMAL in WAL mode survives a process crash (SIGKILL); only an OS crash or power loss
        # can lose the last transactions. That is the trade the queue needs for throughput.
        conn.execute("PRAGMA synchronous = NORMAL")
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
