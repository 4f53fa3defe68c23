"""Prometheus series of the outbound layer (default registry, ``gateway_`` prefix)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

__all__ = ["CIRCUIT_STATE", "CIRCUIT_STATE_VALUES", "UPSTREAM_DURATION", "UPSTREAM_REQUESTS"]

UPSTREAM_REQUESTS = Counter(
    "gateway_upstream_requests",
    "Attempts to call a national system (and calls refused locally), by outcome.",
    ["adapter", "operation", "outcome"],
)

UPSTREAM_DURATION = Histogram(
    "gateway_upstream_request_duration_seconds",
    "Duration of one attempt to call a national system.",
    ["adapter", "operation"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
)

CIRCUIT_STATE = Gauge(
    "gateway_circuit_state",
    "Circuit breaker state as this instance last read it: 0 closed, 1 half-open, 2 open.",
    ["adapter"],
)

CIRCUIT_STATE_VALUES = {"closed": 0, "half_open": 1, "open": 2}
