"""The outbound policy: one pydantic model per adapter, built from its ``outbound`` config.

Every knob has a safe default, so an adapter config without an ``[outbound]`` table still gets
timeouts, bounded retries, a circuit breaker and a bulkhead. Unknown keys are errors.
"""

from __future__ import annotations

import os
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "INSTANT_BACKOFF_ENV",
    "BulkheadPolicy",
    "CircuitPolicy",
    "OutboundPolicy",
    "PoolPolicy",
    "RateLimitPolicy",
    "RetryPolicy",
    "TimeoutPolicy",
    "instant_backoff_from_env",
]

#: testing switch: "1" makes every backoff and Retry-After wait instant (decisions unchanged)
INSTANT_BACKOFF_ENV = "GATEWAY_TESTING_INSTANT_BACKOFF"


def instant_backoff_from_env() -> bool:
    return os.environ.get(INSTANT_BACKOFF_ENV, "").strip().lower() in ("1", "true", "yes", "on")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TimeoutPolicy(_Strict):
    """Seconds. ``connect``/``read``/``write``/``pool`` are httpx's phases; ``total`` bounds
    one attempt end to end (a slow trickle of bytes cannot keep a call alive forever)."""

    connect: float = Field(3.0, gt=0)
    read: float = Field(10.0, gt=0)
    write: float = Field(10.0, gt=0)
    #: waiting for a free connection from the pool
    pool: float = Field(2.0, gt=0)
    total: float = Field(15.0, gt=0)


class RetryPolicy(_Strict):
    """Retries of retryable failures (timeouts, connection errors, 429, 502, 503, 504), only
    for idempotent operations or requests carrying an ``Idempotency-Key``."""

    #: attempts in all, the first included (1 = never retry)
    max_attempts: int = Field(3, ge=1, le=20)
    #: full jitter: the n-th wait is uniform in [0, min(backoff_max, initial * 2**(n-1))]
    backoff_initial: float = Field(0.2, ge=0)
    backoff_max: float = Field(5.0, ge=0)
    #: no attempt starts, and no wait is planned, past this many seconds after the first
    deadline: float = Field(30.0, gt=0)
    #: an upstream Retry-After longer than this ends the retries (the caller gets it instead)
    retry_after_max: float = Field(30.0, ge=0)
    #: retry a failure to *connect* even for non-idempotent operations: nothing was sent
    retry_unsent: bool = True


class CircuitPolicy(_Strict):
    """A breaker per adapter whose state lives in the store, so every instance agrees.

    ``failure_threshold`` consecutive breaker failures (transport errors, timeouts, 502, 503,
    504), counted across instances within ``window`` seconds, open the circuit for
    ``open_duration`` seconds; then exactly one call (the probe) is let through: its success
    closes the circuit, its failure opens it again.
    """

    enabled: bool = True
    failure_threshold: int = Field(5, ge=1)
    window: float = Field(60.0, gt=0)
    open_duration: float = Field(30.0, gt=0)
    #: how long an instance trusts its last reading of the shared state (store round trips
    #: are saved on the hot path; another instance's change is seen within this delay)
    state_cache_seconds: float = Field(0.25, ge=0)


class BulkheadPolicy(_Strict):
    """At most ``max_concurrent`` calls to the adapter at once in this process; one more is
    refused at once with ``BulkheadFull`` (503), so a slow system cannot tie up the gateway."""

    max_concurrent: int = Field(50, ge=1)


class RateLimitPolicy(_Strict):
    """The quota the national system grants the province, shared by every instance: at most
    ``limit`` attempts per ``period`` seconds. A call over quota waits for the next window
    up to ``max_wait`` seconds, then fails with ``OutboundQuotaExhausted`` (retryable by a
    job after its ``retry_after``; the outbound retry loop does not wait longer itself)."""

    limit: int | None = Field(None, ge=1)
    period: float = Field(1.0, gt=0)
    max_wait: float = Field(2.0, ge=0)


class PoolPolicy(_Strict):
    """The long-lived connection pool of the adapter's httpx client (keep-alive)."""

    max_connections: int = Field(100, ge=1)
    max_keepalive_connections: int = Field(20, ge=0)
    keepalive_expiry: float = Field(30.0, ge=0)


class OutboundPolicy(_Strict):
    timeouts: TimeoutPolicy = TimeoutPolicy()
    retry: RetryPolicy = RetryPolicy()
    circuit: CircuitPolicy = CircuitPolicy()
    bulkhead: BulkheadPolicy = BulkheadPolicy()
    rate_limit: RateLimitPolicy = RateLimitPolicy()
    pool: PoolPolicy = PoolPolicy()
    #: operations retried without an Idempotency-Key (queries); GET/HEAD/OPTIONS always are
    idempotent_operations: frozenset[str] = frozenset()
    #: testing switch (also ``GATEWAY_TESTING_INSTANT_BACKOFF=1``): waits take no time
    instant_backoff: bool = False
    #: the connection pool: aiohttp's (fast, HTTP/1.1) or httpx's own (see docs/adr/0003)
    transport: Literal["aiohttp", "httpx"] = "aiohttp"

    @model_validator(mode="after")
    def _coherent(self) -> OutboundPolicy:
        if self.retry.backoff_max < self.retry.backoff_initial:
            raise ValueError("retry.backoff_max must be >= retry.backoff_initial")
        return self

    @property
    def backoff_is_instant(self) -> bool:
        return self.instant_backoff or instant_backoff_from_env()
