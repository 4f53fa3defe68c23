"""The audit chain on both backends, written by two store instances (two gateway processes'
worth) at once: one unbroken chain that ``verify_chain`` accepts, and tampering it names."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from support.jobs_app import drop_redis_prefix

from gateway.audit import Auditor, verify_chain
from gateway.store.base import AuditQuery, Store

Tamper = Callable[[int, dict[str, object]], Awaitable[None]]


@pytest.fixture(params=["sqlite", "redis"])
async def two_stores(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[Store, Store, Tamper]]:
    """Two instances on one backend, and a way to change a stored record behind their back
    (as someone with access to the file or the Redis server would)."""
    if request.param == "sqlite":
        from gateway.store.sqlite import SqliteStore

        a: Store = SqliteStore(tmp_path / "gateway.db")
        b: Store = SqliteStore(tmp_path / "gateway.db")
        url = prefix = None

        async def tamper(seq: int, changes: dict[str, object]) -> None:
            conn = sqlite3.connect(tmp_path / "gateway.db")
            try:
                (body,) = conn.execute("SELECT body FROM audit WHERE seq = ?", (seq,)).fetchone()
                record = {**json.loads(body), **changes}
                conn.execute("UPDATE audit SET body = ? WHERE seq = ?", (json.dumps(record), seq))
                conn.commit()
            finally:
                conn.close()

    else:
        import redis.asyncio as aioredis

        from gateway.store.redis import RedisStore

        url = request.getfixturevalue("redis_url")
        prefix = f"dvcgw-test-{uuid.uuid4().hex[:12]}:"
        a, b = RedisStore(url, key_prefix=prefix), RedisStore(url, key_prefix=prefix)

        async def tamper(seq: int, changes: dict[str, object]) -> None:
            client = aioredis.Redis.from_url(url)
            try:
                body = await client.hget(f"{prefix}a:rec", str(seq))
                assert body is not None
                record = {**json.loads(body), **changes}
                await client.hset(f"{prefix}a:rec", str(seq), json.dumps(record))
            finally:
                await client.aclose()

    await a.open()
    await b.open()
    yield a, b, tamper
    await a.close()
    await b.close()
    if url is not None and prefix is not None:
        await drop_redis_prefix(url, prefix)


async def test_concurrent_writers_form_one_chain(
    two_stores: tuple[Store, Store, Tamper],
) -> None:
    a, b, _ = two_stores
    key = b"shared-digest-key"
    writers = [Auditor(a, key), Auditor(b, key)]

    async def write(auditor: Auditor, n: int) -> None:
        for i in range(n):
            await auditor.record(
                direction="inbound",
                actor=f"client-{id(auditor) % 7}",
                operation=f"op-{i}",
                outcome="ok",
                latency_ms=i * 1.5,
                subjects=["079012345678"],
                extra={"i": i, "nested": {"unicode": "Hồ sơ"}},
            )

    await asyncio.gather(*(write(w, 40) for w in writers for _ in range(2)))
    result = await verify_chain(a)
    assert result.ok, result
    assert result.checked == 160 and result.last_seq == 160
    # both instances read the same chain and the same digests
    assert (await verify_chain(b)).ok
    found = await b.audit.query(AuditQuery(subject_digest=writers[0].digest("079012345678")))
    assert len(found) == 100  # the query's default page


async def test_tampering_is_named_on_each_backend(
    two_stores: tuple[Store, Store, Tamper],
) -> None:
    a, _, tamper = two_stores
    auditor = Auditor(a, b"k")
    for i in range(5):
        await auditor.record(direction="internal", actor="a", operation=f"o{i}", outcome="ok")
    assert (await verify_chain(a)).ok
    await tamper(3, {"outcome": "error"})
    result = await verify_chain(a)
    assert not result.ok
    assert result.first_broken_seq == 3
