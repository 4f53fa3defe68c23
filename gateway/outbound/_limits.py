"""The bulkhead (per process) and the outbound rate limit (shared through the store)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import contextmanager

import structlog

from gateway.errors import BulkheadFull, OutboundQuotaExhausted, StoreUnavailable
from gateway.outbound._policy import RateLimitPolicy
from gateway.store.base import Store

__all__ = ["Bulkhead", "RateLimiter"]

log = structlog.get_logger(__name__)


class Bulkhead:
    """At most ``limit`` calls in flight; one more is refused at once, never queued: a queue
    in front of a slow system only turns its slowness into ours."""

    def __init__(self, adapter: str, limit: int) -> None:
        self.adapter = adapter
        self.limit = limit
        self.in_flight = 0

    @contextmanager
    def slot(self) -> Iterator[None]:
        if self.in_flight >= self.limit:
            raise BulkheadFull(
                f"{self.adapter}: {self.limit} calls already in flight",
                system=self.adapter,
                retry_after=1.0,
            )
        self.in_flight += 1
        try:
            yield
        finally:
            self.in_flight -= 1


class RateLimiter:
    """A fixed-window quota shared by every instance: one atomic counter per window in the
    store (``outbound:rate:<adapter>:<window>``). Fails open when the store is unreachable."""

    def __init__(self, adapter: str, policy: RateLimitPolicy, store: Store) -> None:
        self.adapter = adapter
        self.policy = policy
        self.store = store

    async def acquire(self, *, time_left: float) -> None:
        limit = self.policy.limit
        if limit is None:
            return
        period = self.policy.period
        while True:
            now = time.time()
            window = int(now // period)
            try:
                used = await self.store.incr(
                    f"outbound:rate:{self.adapter}:{window}", ttl=period * 2
                )
            except StoreUnavailable:
                log.warning("outbound quota unreadable; failing open", adapter=self.adapter)
                return
            if used <= limit:
                return
            wait = (window + 1) * period - now
            if wait > self.policy.max_wait or wait >= time_left:
                raise OutboundQuotaExhausted(
                    f"{self.adapter}: the outbound quota of {limit} calls per {period:g} s "
                    "is used up",
                    system=self.adapter,
                    retry_after=wait,
                )
            time_left -= wait
            await asyncio.sleep(wait)
