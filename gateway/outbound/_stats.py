"""An in-process rolling record of recent call outcomes and latencies, per operation.

Bounded memory whatever the traffic: time is cut into 10-second buckets (one hour kept), and
each bucket keeps counts and a sparse log-scale latency histogram (bins 10 % wide), from which
p50/p95 are read with at most 10 % error. The dashboard publishes these figures per instance
and merges them (``gateway.health``).
"""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["OperationStats", "RollingStats"]

BUCKET_SECONDS = 10.0
HOUR = 3600.0
FIVE_MINUTES = 300.0
_BIN_BASE_MS = 0.1
_BIN_GROWTH = 1.1
_LOG_GROWTH = math.log(_BIN_GROWTH)


def _bin_of(latency_ms: float) -> int:
    if latency_ms <= _BIN_BASE_MS:
        return 0
    return 1 + int(math.log(latency_ms / _BIN_BASE_MS) / _LOG_GROWTH)


def _bin_upper_ms(index: int) -> float:
    return _BIN_BASE_MS * _BIN_GROWTH**index


@dataclass(slots=True)
class _Bucket:
    start: float
    calls: int = 0
    errors: int = 0
    bins: dict[int, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class OperationStats:
    """Figures over the last 5 minutes and the last hour. Times are epoch seconds."""

    calls_5m: int = 0
    errors_5m: int = 0
    calls_1h: int = 0
    errors_1h: int = 0
    p50_ms: float | None = None
    p95_ms: float | None = None
    p50_ms_1h: float | None = None
    p95_ms_1h: float | None = None
    last_success: float | None = None
    last_failure: float | None = None
    last_failure_reason: str | None = None

    @property
    def error_rate_5m(self) -> float | None:
        return self.errors_5m / self.calls_5m if self.calls_5m else None

    @property
    def error_rate_1h(self) -> float | None:
        return self.errors_1h / self.calls_1h if self.calls_1h else None

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["error_rate_5m"] = self.error_rate_5m
        out["error_rate_1h"] = self.error_rate_1h
        return out


def _quantile(bins: dict[int, int], total: int, q: float) -> float | None:
    if total == 0:
        return None
    rank = q * total
    seen = 0
    for index in sorted(bins):
        seen += bins[index]
        if seen >= rank:
            return round(_bin_upper_ms(index), 3)
    return round(_bin_upper_ms(max(bins)), 3)


class _Series:
    __slots__ = ("buckets", "last_failure", "last_failure_reason", "last_success")

    def __init__(self) -> None:
        self.buckets: deque[_Bucket] = deque()
        self.last_success: float | None = None
        self.last_failure: float | None = None
        self.last_failure_reason: str | None = None

    def add(self, now: float, ok: bool, latency_ms: float | None, reason: str | None) -> None:
        start = now - (now % BUCKET_SECONDS)
        if not self.buckets or self.buckets[-1].start != start:
            self.buckets.append(_Bucket(start))
            while self.buckets and self.buckets[0].start <= now - HOUR - BUCKET_SECONDS:
                self.buckets.popleft()
        bucket = self.buckets[-1]
        bucket.calls += 1
        if latency_ms is not None:
            index = _bin_of(latency_ms)
            bucket.bins[index] = bucket.bins.get(index, 0) + 1
        if ok:
            self.last_success = now
        else:
            bucket.errors += 1
            self.last_failure = now
            self.last_failure_reason = reason

    def figures(self, now: float) -> OperationStats:
        return _figures([self], now)


def _figures(series: list[_Series], now: float) -> OperationStats:
    calls_5m = errors_5m = calls_1h = errors_1h = 0
    bins_5m: dict[int, int] = {}
    bins_1h: dict[int, int] = {}
    for s in series:
        for bucket in s.buckets:
            if bucket.start <= now - HOUR - BUCKET_SECONDS:
                continue
            recent = bucket.start > now - FIVE_MINUTES - BUCKET_SECONDS
            calls_1h += bucket.calls
            errors_1h += bucket.errors
            for index, count in bucket.bins.items():
                bins_1h[index] = bins_1h.get(index, 0) + count
                if recent:
                    bins_5m[index] = bins_5m.get(index, 0) + count
            if recent:
                calls_5m += bucket.calls
                errors_5m += bucket.errors
    successes = [s.last_success for s in series if s.last_success is not None]
    failed = [s for s in series if s.last_failure is not None]
    latest = max(failed, key=lambda s: s.last_failure or 0.0) if failed else None
    n5, n1 = sum(bins_5m.values()), sum(bins_1h.values())
    return OperationStats(
        calls_5m=calls_5m,
        errors_5m=errors_5m,
        calls_1h=calls_1h,
        errors_1h=errors_1h,
        p50_ms=_quantile(bins_5m, n5, 0.50),
        p95_ms=_quantile(bins_5m, n5, 0.95),
        p50_ms_1h=_quantile(bins_1h, n1, 0.50),
        p95_ms_1h=_quantile(bins_1h, n1, 0.95),
        last_success=max(successes) if successes else None,
        last_failure=latest.last_failure if latest else None,
        last_failure_reason=latest.last_failure_reason if latest else None,
    )


class RollingStats:
    """One adapter's record: ``add`` per attempt, ``overall``/``operations`` on demand."""

    def __init__(self) -> None:
        self._series: dict[str, _Series] = {}

    def add(
        self,
        operation: str,
        *,
        ok: bool,
        latency_ms: float | None,
        reason: str | None = None,
        now: float | None = None,
    ) -> None:
        series = self._series.get(operation)
        if series is None:
            series = self._series[operation] = _Series()
        series.add(time.time() if now is None else now, ok, latency_ms, reason)

    def overall(self, now: float | None = None) -> OperationStats:
        return _figures(list(self._series.values()), time.time() if now is None else now)

    def operations(self, now: float | None = None) -> dict[str, OperationStats]:
        at = time.time() if now is None else now
        return {name: s.figures(at) for name, s in sorted(self._series.items())}
