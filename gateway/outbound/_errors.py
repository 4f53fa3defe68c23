"""The one boundary where transport faults become ``gateway.errors.Upstream*``.

Everything below it speaks httpx and asyncio; everything above it (retries, the breaker, the
adapters, the API) sees only the error tree. The original exception stays chained as
``__cause__`` for the logs; the detail shown to callers names the system and the operation,
never a URL, a header or a body.
"""

from __future__ import annotations

import email.utils
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from gateway.errors import (
    BulkheadFull,
    CircuitOpen,
    GatewayError,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamRateLimited,
    UpstreamTimeout,
    UpstreamUnavailable,
)

__all__ = [
    "breaker_failure",
    "never_sent",
    "outcome_of",
    "parse_retry_after",
    "raise_for_retryable_status",
    "upstream_errors",
]

#: exceptions proving the request never reached the upstream (safe to retry any operation)
_UNSENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


@contextmanager
def upstream_errors(system: str, operation: str) -> Iterator[None]:
    """Translate httpx and timeout exceptions raised inside the block."""
    where = f"{system} {operation}"
    try:
        yield
    except GatewayError:
        raise
    except httpx.PoolTimeout as exc:
        raise UpstreamTimeout(
            f"{where}: no free connection to the national system in time", system=system
        ) from exc
    except httpx.ConnectTimeout as exc:
        raise UpstreamTimeout(f"{where}: connecting timed out", system=system) from exc
    except httpx.TimeoutException as exc:  # read / write
        raise UpstreamTimeout(
            f"{where}: the national system did not answer in time", system=system
        ) from exc
    except TimeoutError as exc:  # the per-attempt total (asyncio.timeout)
        raise UpstreamTimeout(
            f"{where}: the call exceeded its total time limit", system=system
        ) from exc
    except httpx.ConnectError as exc:
        raise UpstreamUnavailable(f"{where}: cannot connect", system=system) from exc
    except httpx.RemoteProtocolError as exc:
        raise UpstreamUnavailable(
            f"{where}: the connection was dropped before a complete answer", system=system
        ) from exc
    except httpx.NetworkError as exc:  # read / write / close errors
        raise UpstreamUnavailable(f"{where}: network error", system=system) from exc
    except httpx.DecodingError as exc:
        raise UpstreamProtocolError(
            f"{where}: the answer could not be decoded", system=system
        ) from exc
    except httpx.HTTPError as exc:  # local protocol errors, unsupported protocol, ...
        raise UpstreamProtocolError(f"{where}: {type(exc).__name__}", system=system) from exc


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date); None if absent
    or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if math.isnan(seconds) or math.isinf(seconds):
        return None
    return max(0.0, seconds)


def raise_for_retryable_status(response: httpx.Response, system: str, operation: str) -> None:
    """429, 502, 503 and 504 become errors (retryable); every other status is the adapter's
    to interpret (a SOAP fault arrives as 500, a business rejection as 4xx)."""
    status = response.status_code
    if status not in (429, 502, 503, 504):
        return
    retry_after = parse_retry_after(response.headers.get("retry-after"))
    where = f"{system} {operation}"
    if status == 429:
        raise UpstreamRateLimited(
            f"{where}: the national system asked us to slow down (429)",
            system=system,
            retry_after=retry_after,
        )
    if status == 504:
        raise UpstreamTimeout(
            f"{where}: the national system's gateway timed out (504)",
            system=system,
            retry_after=retry_after,
        )
    raise UpstreamUnavailable(
        f"{where}: the national system is unavailable ({status})",
        system=system,
        retry_after=retry_after,
    )


def never_sent(error: BaseException) -> bool:
    """The request provably never left (connect failed, no pooled connection)."""
    return isinstance(error.__cause__, _UNSENT)


def breaker_failure(error: BaseException) -> bool:
    """Does this failure count against the circuit? Timeouts and unavailability do; a 429
    (the system is up, it throttles us) and protocol errors (it answered) do not."""
    return isinstance(error, UpstreamTimeout | UpstreamUnavailable)


def outcome_of(error: BaseException) -> str:
    """The ``outcome`` label of the metrics for a failure."""
    if isinstance(error, CircuitOpen):
        return "circuit_open"
    if isinstance(error, BulkheadFull):
        return "bulkhead_full"
    if isinstance(error, UpstreamTimeout):
        return "timeout"
    if isinstance(error, UpstreamRateLimited):
        return "rate_limited"
    if isinstance(error, UpstreamUnavailable):
        return "unavailable"
    if isinstance(error, UpstreamProtocolError):
        return "protocol_error"
    if isinstance(error, UpstreamError):
        return "upstream_error"
    return "error"
