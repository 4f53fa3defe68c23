"""The resilient transport: every outbound attempt of an adapter goes through here.

It is an ``httpx.AsyncBaseTransport`` wrapping the real connection pool, so both the
adapter's ``OutboundClient.request`` and zeep's ``AsyncTransport`` (given ``client.http``)
get the same treatment, in this order, per call:

    destination check -> X-Request-ID -> bulkhead slot
      -> retries (tenacity): circuit breaker -> outbound quota -> one attempt
           (total time limit, body read and decoded inside the error boundary)

An attempt ends as a response (any status but 429/502/503/504, which the adapter
interprets) or as an ``Upstream*`` error from ``_errors.upstream_errors``.
"""

from __future__ import annotations

import asyncio
import contextvars
import random
import time
from dataclasses import dataclass
from typing import Any

import httpx
import structlog
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception

from gateway.errors import (
    BulkheadFull,
    CircuitOpen,
    ConfigurationError,
    OutboundQuotaExhausted,
    UpstreamError,
)
from gateway.observability import request_id_var
from gateway.outbound._circuit import CircuitBreaker, Permit
from gateway.outbound._errors import (
    breaker_failure,
    never_sent,
    outcome_of,
    raise_for_retryable_status,
    upstream_errors,
)
from gateway.outbound._limits import Bulkhead, RateLimiter
from gateway.outbound._metrics import UPSTREAM_DURATION, UPSTREAM_REQUESTS
from gateway.outbound._policy import OutboundPolicy
from gateway.outbound._stats import RollingStats

__all__ = ["CallOptions", "ResilientTransport", "call_options"]

log = structlog.get_logger(__name__)

#: request extensions the OutboundClient sets (zeep's requests carry none)
EXT_OPERATION = "gateway_operation"
EXT_IDEMPOTENT = "gateway_idempotent"
EXT_TIMEOUT = "gateway_timeout"

_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: headers that change when a body is decoded here rather than by the client
_DECODED_AWAY = frozenset({b"content-encoding", b"content-length", b"transfer-encoding"})


@dataclass(frozen=True, slots=True)
class CallOptions:
    """Operation name and idempotency for calls made where no extension can be passed
    (zeep): set with ``OutboundClient.operation(...)`` around the zeep call."""

    operation: str
    idempotent: bool | None = None


call_options: contextvars.ContextVar[CallOptions | None] = contextvars.ContextVar(
    "gateway_outbound_call_options", default=None
)


class _Clock:
    """Seconds since the first attempt; in instant mode, skipped waits still count, so the
    deadline decisions are the same as in production, only faster."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.skipped = 0.0

    def elapsed(self) -> float:
        return time.monotonic() - self.started + self.skipped


class ResilientTransport(httpx.AsyncBaseTransport):
    def __init__(
        self,
        *,
        adapter: str,
        base_url: str,
        policy: OutboundPolicy,
        inner: httpx.AsyncBaseTransport,
        breaker: CircuitBreaker,
        bulkhead: Bulkhead,
        rate_limiter: RateLimiter,
        stats: RollingStats,
    ) -> None:
        self.adapter = adapter
        self.base_url = base_url.rstrip("/")
        base = httpx.URL(self.base_url)
        self._origin = (base.scheme, base.host, base.port)
        self._path = base.raw_path.rstrip(b"/")
        #: metric series by label values, resolved once (``labels()`` is not free)
        self._counters: dict[tuple[str, str], Any] = {}
        self._histograms: dict[str, Any] = {}
        self.policy = policy
        self.inner = inner
        self.breaker = breaker
        self.bulkhead = bulkhead
        self.rate_limiter = rate_limiter
        self.stats = stats

    async def aclose(self) -> None:
        await self.inner.aclose()

    # -- describing a request -----------------------------------------------------------
    def _describe(self, request: httpx.Request) -> tuple[str, bool]:
        options = call_options.get()
        operation = request.extensions.get(EXT_OPERATION)
        if not operation and options is not None:
            operation = options.operation
        if not operation:
            operation = request.headers.get("soapaction", "").strip().strip('"').rsplit("/")[-1]
        if not operation:
            operation = request.url.path.rsplit("/", 1)[-1] or "/"
        idempotent = request.extensions.get(EXT_IDEMPOTENT)
        if idempotent is None and options is not None:
            idempotent = options.idempotent
        if idempotent is None:
            idempotent = (
                request.method in _SAFE_METHODS or operation in self.policy.idempotent_operations
            )
        if "idempotency-key" in request.headers:
            idempotent = True
        return str(operation), bool(idempotent)

    def _check_destination(self, request: httpx.Request) -> None:
        # only the configured base URL: no caller-supplied destination can slip through
        url = request.url
        path = url.raw_path.split(b"?", 1)[0]
        inside = path == self._path or path.startswith(self._path + b"/")
        if (url.scheme, url.host, url.port) != self._origin or not inside:
            raise ConfigurationError(
                f"{self.adapter}: refused an outbound call outside its configured base URL"
            )

    # -- the call -----------------------------------------------------------------------
    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        operation, idempotent = self._describe(request)
        self._check_destination(request)
        if "x-request-id" not in request.headers:
            request_id = request_id_var.get()
            if request_id:
                request.headers["X-Request-ID"] = request_id
        await request.aread()  # buffered once, so a retry can send it again
        try:
            with self.bulkhead.slot():
                return await self._with_retries(request, operation, idempotent)
        except (BulkheadFull, CircuitOpen) as refused:
            self._count(operation, outcome_of(refused))
            raise

    def _count(self, operation: str, outcome: str) -> None:
        counter = self._counters.get((operation, outcome))
        if counter is None:
            counter = UPSTREAM_REQUESTS.labels(self.adapter, operation, outcome)
            self._counters[(operation, outcome)] = counter
        counter.inc()

    def _observe(self, operation: str, seconds: float) -> None:
        histogram = self._histograms.get(operation)
        if histogram is None:
            histogram = UPSTREAM_DURATION.labels(self.adapter, operation)
            self._histograms[operation] = histogram
        histogram.observe(seconds)

    async def _with_retries(
        self, request: httpx.Request, operation: str, idempotent: bool
    ) -> httpx.Response:
        retry = self.policy.retry
        clock = _Clock()

        def should_retry(error: BaseException) -> bool:
            if not isinstance(error, UpstreamError) or not error.retryable:
                return False
            if isinstance(error, CircuitOpen | BulkheadFull | OutboundQuotaExhausted):
                # the breaker's pause is not ours to shorten, and the quota's max_wait
                # already said how long a call may wait for the next window
                return False
            return idempotent or (retry.retry_unsent and never_sent(error))

        def wait(state: RetryCallState) -> float:
            error = state.outcome.exception() if state.outcome else None
            ceiling = min(
                retry.backoff_max, retry.backoff_initial * 2 ** (state.attempt_number - 1)
            )
            backoff = random.uniform(0, ceiling)  # full jitter
            asked = getattr(error, "retry_after", None) or 0.0
            return max(backoff, float(asked))

        def stop(state: RetryCallState) -> bool:
            if state.attempt_number >= retry.max_attempts:
                return True
            error = state.outcome.exception() if state.outcome else None
            asked = getattr(error, "retry_after", None)
            if asked is not None and asked > retry.retry_after_max:
                return True  # the caller gets the error and its Retry-After instead
            return clock.elapsed() + state.upcoming_sleep >= retry.deadline

        async def sleep(seconds: float) -> None:
            if instant:  # bound below, after the first failure (before any sleep)
                clock.skipped += seconds
            else:
                await asyncio.sleep(seconds)

        async def before_sleep(state: RetryCallState) -> None:
            error = state.outcome.exception() if state.outcome else None
            log.info(
                "outbound retry",
                adapter=self.adapter,
                operation=operation,
                attempt=state.attempt_number,
                wait_seconds=round(state.upcoming_sleep, 3),
                error=getattr(error, "slug", type(error).__name__),
            )

        # the first attempt runs without tenacity (nothing to decide when it succeeds); a
        # failure is handed to tenacity as its attempt 1, so every decision is tenacity's
        try:
            return await self._attempt(request, operation, retry.deadline)
        except UpstreamError as error:
            if not should_retry(error):
                raise
            first: list[UpstreamError] = [error]
        # read only now: the testing switch comes from the environment, which costs a
        # lookup per call that a success never needs
        instant = self.policy.backoff_is_instant

        async def attempt() -> httpx.Response:
            if first:
                raise first.pop()
            left = retry.deadline - clock.elapsed()
            return await self._attempt(request, operation, left)

        retrying = AsyncRetrying(
            stop=stop,
            wait=wait,
            retry=retry_if_exception(should_retry),
            sleep=sleep,
            before_sleep=before_sleep,
            reraise=True,
        )
        response: httpx.Response = await retrying(attempt)
        return response

    def _attempt_timeout(self, request: httpx.Request, time_left: float) -> float:
        asked = request.extensions.get(EXT_TIMEOUT)
        total = float(asked) if asked else self.policy.timeouts.total
        return max(0.001, min(total, time_left))

    async def _attempt(
        self, request: httpx.Request, operation: str, time_left: float
    ) -> httpx.Response:
        limit = self._attempt_timeout(request, time_left)
        permit = await self.breaker.before_call(probe_lease=limit + 1.0)
        await self.rate_limiter.acquire(time_left=time_left)
        started = time.perf_counter()
        try:
            with upstream_errors(self.adapter, operation):
                async with asyncio.timeout(limit):
                    response = await self._send(request)
            raise_for_retryable_status(response, self.adapter, operation)
        except UpstreamError as error:
            await self._failed(operation, permit, error, time.perf_counter() - started)
            raise
        await self._answered(operation, permit, response, time.perf_counter() - started)
        return response

    async def _send(self, request: httpx.Request) -> httpx.Response:
        """Send and read the whole body, decoded, so every fault of reading it (timeouts,
        drops, bad encodings) is raised inside the error boundary."""
        raw = await self.inner.handle_async_request(request)
        try:
            body = await raw.aread()
        finally:
            await raw.aclose()
        if "content-encoding" not in raw.headers:
            raw.request = request
            return raw  # read already: nothing was decoded, the headers still hold
        headers = [(k, v) for k, v in raw.headers.raw if k.lower() not in _DECODED_AWAY]
        return httpx.Response(
            raw.status_code,
            headers=headers,
            content=body,
            extensions=raw.extensions,
            request=request,
        )

    async def _answered(
        self, operation: str, permit: Permit, response: httpx.Response, seconds: float
    ) -> None:
        status = response.status_code
        outcome = "ok" if status < 400 else "client_error" if status < 500 else "server_error"
        self._count(operation, outcome)
        self._observe(operation, seconds)
        # any answer proves the system is up (the breaker); a 5xx still counts as an error
        # in the figures ops see, so a storm of SOAP faults shows on the dashboard
        self.stats.add(
            operation,
            ok=status < 500,
            latency_ms=seconds * 1000,
            reason=None if status < 500 else f"HTTP {status}",
        )
        await self.breaker.on_success(permit)

    async def _failed(
        self, operation: str, permit: Permit, error: UpstreamError, seconds: float
    ) -> None:
        outcome = outcome_of(error)
        self._count(operation, outcome)
        self._observe(operation, seconds)
        self.stats.add(operation, ok=False, latency_ms=seconds * 1000, reason=error.detail)
        if breaker_failure(error):
            await self.breaker.on_failure(permit, f"{outcome}: {error.detail}")
        else:
            await self.breaker.on_success(permit)
