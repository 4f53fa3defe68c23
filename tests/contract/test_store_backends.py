"""Backend-specific guarantees the contract relies on.

Redis: a private ``redis-server`` on a free port (never the shared one: these tests stop and
restart it) shows ``StoreUnavailable`` while it is down, ``ping()`` answering False, and the
store carrying on by itself after a restart (reconnect, scripts reloaded after NOSCRIPT, data
kept by AOF). SQLite: data survives closing and reopening, and several *processes* leasing
from one file never take the same job.
"""

from __future__ import annotations

import asyncio
import socket
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.redis_server import RedisServer, private_redis_server
from support.uvicorn_server import free_port

from gateway.errors import StoreUnavailable
from gateway.store.base import Attempt, AuditRecord, NewJob
from gateway.store.redis import RedisStore
from gateway.store.sqlite import SqliteStore

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    with private_redis_server(tmp_path / "redis") as server:
        yield server


async def test_redis_unreachable_raises_store_unavailable() -> None:
    store = RedisStore(f"redis://127.0.0.1:{free_port()}/0", key_prefix="t:")
    await store.open()
    try:
        assert await store.ping() is False
        with pytest.raises(StoreUnavailable):
            await store.get("k")
        with pytest.raises(StoreUnavailable):
            await store.jobs.enqueue(NewJob("k", {}))
        with pytest.raises(StoreUnavailable):
            await store.audit.append(
                AuditRecord(at=0.0, direction="internal", actor="a", operation="o", outcome="ok")
            )
        with pytest.raises(StoreUnavailable):
            [r async for r in store.audit.iterate()]
    finally:
        await store.close()


async def test_redis_that_never_answers_times_out() -> None:
    """A server that accepts connections and never replies (hung, or a black-holed network):
    each call gives up after call_timeout with StoreUnavailable; ping() answers False."""
    accepted: list[asyncio.StreamWriter] = []

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)
        while await reader.read(4096):
            pass

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    store = RedisStore(f"redis://127.0.0.1:{port}/0", key_prefix="t:", call_timeout=0.3)
    await store.open()
    try:
        started = time.monotonic()
        with pytest.raises(StoreUnavailable):
            await store.get("k")
        with pytest.raises(StoreUnavailable):
            await store.jobs.lease("w", visibility=10, now=time.time())
        with pytest.raises(StoreUnavailable):
            await store.audit.append(
                AuditRecord(at=0.0, direction="internal", actor="a", operation="o", outcome="ok")
            )
        assert await store.ping() is False
        assert time.monotonic() - started < 5
        assert accepted, "the store never reached the server"
    finally:
        await store.close()
        server.close()
        for writer in accepted:
            writer.close()


async def test_redis_timed_out_call_leaves_no_stale_reply(private_redis: RedisServer) -> None:
    """A call that timed out while Redis was stalled must not leave its late reply on a pooled
    connection for the next call to read as its own."""
    store = RedisStore(private_redis.url, key_prefix="stall:", call_timeout=0.2)
    await store.open()
    stall = socket.create_connection(("127.0.0.1", private_redis.port))
    try:
        await store.set("a", b"1")
        await store.set("counter", b"0")
        # stall the server for 0.8 s (the reply comes later on this raw socket)
        stall.sendall(b"DEBUG SLEEP 0.8\r\n")
        await asyncio.sleep(0.1)
        with pytest.raises(StoreUnavailable):
            await store.incr("counter")
        with pytest.raises(StoreUnavailable):
            await store.get("a")
        stall.settimeout(5)
        assert stall.recv(64).startswith(b"+OK")
        for _ in range(5):
            assert await store.get("a") == b"1"
            assert await store.incr("n") >= 1
        assert await store.get("counter") in (b"0", b"1")  # the timed-out incr may have run
    finally:
        stall.close()
        await store.close()


async def test_redis_restart_is_survived(private_redis: RedisServer) -> None:
    store = RedisStore(private_redis.url, key_prefix=f"t{uuid.uuid4().hex[:6]}:")
    await store.open()
    try:
        now = time.time()
        done, _ = await store.jobs.enqueue(NewJob("k", {"n": 1}, run_at=now))
        pending, _ = await store.jobs.enqueue(NewJob("k", {"n": 2}, run_at=now + 1))
        assert await store.jobs.lease("w", visibility=60, now=now)
        assert await store.jobs.ack(done.id, "w", now=now, attempt=Attempt(at=now))
        first = await store.audit.append(
            AuditRecord(at=now, direction="internal", actor="a", operation="o", outcome="ok")
        )
        assert await store.ping()

        private_redis.stop()
        assert await store.ping() is False
        with pytest.raises(StoreUnavailable):
            await store.jobs.lease("w", visibility=60, now=now + 2)
        with pytest.raises(StoreUnavailable):
            await store.incr("n")

        private_redis.start()  # same port, same AOF: no scripts loaded, data kept
        deadline = time.monotonic() + 5
        while not await store.ping():
            assert time.monotonic() < deadline, "store did not reconnect"
            await asyncio.sleep(0.05)
        # concurrent calls go out as one pipeline: every one of them meets NOSCRIPT first
        counts = await asyncio.gather(*(store.incr(f"c{i}", 2) for i in range(20)))
        assert counts == [2] * 20
        got = await store.jobs.lease("w", visibility=60, now=now + 2)  # NOSCRIPT -> reload
        assert got is not None and got.id == pending.id
        acked = await store.jobs.get(done.id)
        assert acked is not None and acked.state.value == "succeeded"
        second = await store.audit.append(
            AuditRecord(at=now, direction="internal", actor="a", operation="o", outcome="ok")
        )
        assert (second.seq, second.prev_hash) == (2, first.hash)
    finally:
        await store.close()


async def test_redis_out_of_memory_is_store_unavailable(private_redis: RedisServer) -> None:
    import redis

    admin = redis.Redis.from_url(private_redis.url)
    used = int(admin.info("memory")["used_memory"])
    admin.config_set("maxmemory-policy", "noeviction")
    admin.config_set("maxmemory", str(used + 512 * 1024))
    store = RedisStore(private_redis.url, key_prefix="oom:")
    await store.open()
    try:

        async def fill_values() -> None:
            for i in range(1000):
                await store.set(f"k{i}", b"x" * 10_000)

        async def fill_jobs() -> None:
            for _ in range(1000):
                await store.jobs.enqueue(NewJob("k", {"pad": "x" * 10_000}))

        with pytest.raises(StoreUnavailable):
            await fill_values()
        with pytest.raises(StoreUnavailable):  # refused inside a script too
            await fill_jobs()
        assert await store.ping() is True  # reachable, just full
    finally:
        admin.close()
        await store.close()


async def test_sqlite_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "dir" / "gateway.db"
    store = SqliteStore(path)
    await store.open()
    await store.open()  # idempotent
    job, _ = await store.jobs.enqueue(NewJob("k", {"a": 1}, ordering_key="K"))
    await store.set("v", b"1")
    rec = await store.audit.append(
        AuditRecord(at=1.0, direction="internal", actor="a", operation="o", outcome="ok")
    )
    await store.close()
    assert await store.ping() is False

    again = SqliteStore(path)
    await again.open()
    try:
        assert await again.get("v") == b"1"
        got = await again.jobs.get(job.id)
        assert got is not None and got.payload == {"a": 1}
        assert await again.audit.head() == (1, rec.hash)
    finally:
        await again.close()


_LEASER = textwrap.dedent(
    """
    import asyncio, sys, time
    from gateway.store.sqlite import SqliteStore
    from gateway.store.base import Attempt

    async def main():
        store = SqliteStore(sys.argv[1])
        await store.open()
        got = []
        while True:
            job = await store.jobs.lease(sys.argv[2], visibility=300, now=time.time())
            if job is None:
                break
            got.append(job.id)
            await store.jobs.ack(job.id, sys.argv[2], now=time.time(), attempt=Attempt(at=0))
        await store.close()
        print("\\n".join(got))

    asyncio.run(main())
    """
)


async def test_sqlite_processes_never_lease_the_same_job(tmp_path: Path) -> None:
    path = tmp_path / "gateway.db"
    store = SqliteStore(path)
    await store.open()
    try:
        ids = {(await store.jobs.enqueue(NewJob("k", {"i": i})))[0].id for i in range(400)}
    finally:
        await store.close()
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _LEASER,
            str(path),
            f"p{i}",
            cwd=REPO,
            stdout=asyncio.subprocess.PIPE,
        )
        for i in range(3)
    ]
    outputs = [(await p.communicate())[0].decode().split() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    leased = [job_id for out in outputs for job_id in out]
    assert len(leased) == len(set(leased)) == 400
    assert set(leased) == ids
