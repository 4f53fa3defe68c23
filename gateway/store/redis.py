"""The scale-out store: Redis (``redis.asyncio``), every key under the configured prefix.

Any number of gateway instances and workers share it. Each read-modify-write is one Lua
script (EVALSHA, reloaded on NOSCRIPT after a Redis restart), so it is atomic and costs one
round trip; the audit chain is the exception (SHA-256 is computed in Python) and uses a
compare-and-set on its head instead (see ``_redis_log``). Connection failures raise
``StoreUnavailable``; redis-py reconnects on the next command, so a restarted Redis is picked
up without intervention. Production runs Redis with AOF so acknowledged writes survive.

Value keys live under ``<prefix>v:``, locks under ``<prefix>lk:`` (holder, with a TTL) and
``<prefix>lt:`` (the fencing counter, never expires). Job, audit and event keys are described
in ``_redis_lua`` and ``_redis_log``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from gateway.store._redis_conn import CALL_TIMEOUT, Conn, as_bytes, as_str, guard
from gateway.store._redis_jobs import RedisJobStore
from gateway.store._redis_log import RedisAuditStore, RedisEventStore
from gateway.store._redis_lua import CAS, INCR, LOCK_ACQUIRE, LOCK_RELEASE
from gateway.store.base import Store

__all__ = ["RedisStore"]

#: readiness must answer quickly even when Redis hangs
PING_TIMEOUT = 2.0


def _ttl_ms(ttl: float | None) -> str:
    return "" if ttl is None else str(max(1, round(ttl * 1000)))


def _glob_escape(text: str) -> str:
    return "".join("\\" + ch if ch in "*?[]\\" else ch for ch in text)


class RedisStore(Store):
    def __init__(
        self, url: str, *, key_prefix: str = "dvcgw:", call_timeout: float = CALL_TIMEOUT
    ) -> None:
        """``call_timeout``: seconds one store call may take before ``StoreUnavailable``."""
        self._c = Conn(url, key_prefix, call_timeout=call_timeout)
        self.jobs = RedisJobStore(self._c)
        self.audit = RedisAuditStore(self._c)
        self.events = RedisEventStore(self._c)

    @property
    def key_prefix(self) -> str:
        return self._c.prefix

    @property
    def url(self) -> str:
        """The connection URL (it may carry a password: never log it)."""
        return self._c.url

    async def open(self) -> None:
        """Connect; the scripts load on first use (and again after a restart)."""
        self._c.connect()

    async def close(self) -> None:
        await self._c.close()

    async def ping(self) -> bool:
        try:
            async with asyncio.timeout(min(PING_TIMEOUT, self._c.call_timeout)):
                return bool(await self._c.client.ping())
        except Exception:
            return False

    # values ----------------------------------------------------------------------------
    def _v(self, key: str) -> str:
        return self._c.key("v:", key)

    @guard
    async def get(self, key: str) -> bytes | None:
        value = await self._c.client.get(self._v(key))
        return None if value is None else as_bytes(value)

    @guard
    async def set(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        ms = _ttl_ms(ttl)
        await self._c.client.set(self._v(key), value, px=int(ms) if ms else None)

    @guard
    async def set_if_absent(self, key: str, value: bytes, *, ttl: float | None = None) -> bool:
        ms = _ttl_ms(ttl)
        done = await self._c.client.set(self._v(key), value, nx=True, px=int(ms) if ms else None)
        return bool(done)

    @guard
    async def compare_and_set(
        self, key: str, expected: bytes | None, value: bytes, *, ttl: float | None = None
    ) -> bool:
        res = await self._c.run(
            CAS,
            (self._v(key),),
            ("0" if expected is None else "1", expected or b"", value, _ttl_ms(ttl)),
        )
        return bool(res)

    @guard
    async def delete(self, key: str) -> bool:
        return bool(await self._c.client.delete(self._v(key)))

    @guard
    async def incr(self, key: str, amount: int = 1, *, ttl: float | None = None) -> int:
        return int(await self._c.run(INCR, (self._v(key),), (amount, _ttl_ms(ttl))))

    @guard
    async def scan(self, prefix: str, *, limit: int = 1000) -> dict[str, bytes]:
        client = self._c.client
        base = self._v("")
        keys: list[Any] = []
        # SCAN walks the whole keyspace (jobs and audit indexes included): big COUNT, few
        # round trips. Meant for small families of keys (health figures, webhook state).
        pattern = _glob_escape(self._v(prefix)) + "*"
        async for k in client.scan_iter(match=pattern, count=5000):
            keys.append(k)
            if len(keys) >= limit:
                break
        if not keys:
            return {}
        values = await client.mget(keys)
        out = {
            as_str(k)[len(base) :]: as_bytes(v)
            for k, v in zip(keys, values, strict=True)
            if v is not None
        }
        return dict(sorted(out.items()))

    # locks -----------------------------------------------------------------------------
    @guard
    async def acquire_lock(self, name: str, owner: str, *, ttl: float) -> int | None:
        res = await self._c.run(
            LOCK_ACQUIRE,
            (self._c.key("lk:", name), self._c.key("lt:", name)),
            (owner, _ttl_ms(ttl)),
        )
        return None if res is None else int(res)

    @guard
    async def release_lock(self, name: str, owner: str) -> bool:
        return bool(await self._c.run(LOCK_RELEASE, (self._c.key("lk:", name),), (owner,)))

    @guard
    async def lock_token(self, name: str) -> int:
        value = await self._c.client.get(self._c.key("lt:", name))
        return int(value) if value else 0
