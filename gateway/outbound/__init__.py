"""Resilient outbound calls: the only way an adapter reaches its national system.

Each adapter gets one :class:`OutboundClient` (through ``AdapterContext.outbound``), holding
one long-lived connection pool and one :class:`OutboundPolicy` built from the adapter's
``outbound`` configuration:

- timeouts per phase and a total per attempt;
- retries (tenacity): exponential backoff with full jitter, bounded by attempts and by a
  deadline, honouring ``Retry-After`` up to a cap, only for retryable failures (timeouts,
  connection errors, 429, 502, 503, 504) and only for idempotent operations or requests
  carrying an ``Idempotency-Key`` (a failure to *connect* is retried for any operation,
  since nothing was sent);
- a circuit breaker whose state lives in the store (closed, open, half-open with a single
  probe), so every instance agrees;
- a bulkhead (max concurrent calls; one more fails at once with ``BulkheadFull``);
- an outbound quota shared by every instance through the store;
- metrics (``gateway_upstream_requests_total``, ``gateway_upstream_request_duration_seconds``,
  ``gateway_circuit_state``) and a rolling in-process record (:meth:`OutboundClient.stats`).

Faults are translated to ``gateway.errors.Upstream*`` at one boundary. Set
``GATEWAY_TESTING_INSTANT_BACKOFF=1`` (or ``instant_backoff = true``) to make waits instant in
tests. Adapters never write their own retry loops.
"""

from __future__ import annotations

from gateway.outbound._circuit import CircuitState
from gateway.outbound._client import OutboundClient, OutboundStats, TlsSettings
from gateway.outbound._errors import parse_retry_after
from gateway.outbound._policy import (
    INSTANT_BACKOFF_ENV,
    BulkheadPolicy,
    CircuitPolicy,
    OutboundPolicy,
    PoolPolicy,
    RateLimitPolicy,
    RetryPolicy,
    TimeoutPolicy,
)
from gateway.outbound._stats import OperationStats

__all__ = [
    "INSTANT_BACKOFF_ENV",
    "BulkheadPolicy",
    "CircuitPolicy",
    "CircuitState",
    "OperationStats",
    "OutboundClient",
    "OutboundPolicy",
    "OutboundStats",
    "PoolPolicy",
    "RateLimitPolicy",
    "RetryPolicy",
    "TimeoutPolicy",
    "TlsSettings",
    "parse_retry_after",
]
