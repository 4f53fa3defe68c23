"""``OutboundClient``: one per adapter, long-lived, resilient (see ``_transport``)."""

from __future__ import annotations

import logging
import ssl
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx
from pydantic import ValidationError

from gateway.errors import ConfigurationError
from gateway.outbound._aiohttp import AiohttpTransport
from gateway.outbound._circuit import CircuitBreaker, CircuitState
from gateway.outbound._errors import upstream_errors
from gateway.outbound._limits import Bulkhead, RateLimiter
from gateway.outbound._policy import OutboundPolicy
from gateway.outbound._stats import OperationStats, RollingStats
from gateway.outbound._transport import (
    EXT_IDEMPOTENT,
    EXT_OPERATION,
    EXT_TIMEOUT,
    CallOptions,
    ResilientTransport,
    call_options,
)
from gateway.store.base import Store

if TYPE_CHECKING:
    from gateway.adapters import AdapterConfig

__all__ = ["OutboundClient", "OutboundStats", "TlsSettings"]

USER_AGENT = "dvc-gateway/0.1"
#: distinct paths whose parsed URL is kept (paths with identifiers in them are not cached
#: once the cache is full, they are parsed each time)
_URL_CACHE_SIZE = 256


@dataclass(frozen=True, slots=True)
class TlsSettings:
    """TLS towards the upstream: verification (never off in production), a private CA,
    and a client certificate for mutual TLS."""

    verify: bool = True
    ca_file: Path | None = None
    client_cert: Path | None = None
    client_key: Path | None = None

    def ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)
        if not self.verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if self.client_cert is not None:
            context.load_cert_chain(
                str(self.client_cert), str(self.client_key) if self.client_key else None
            )
        return context


@dataclass(frozen=True, slots=True)
class OutboundStats:
    """This instance's figures for one adapter (the dashboard merges instances)."""

    adapter: str
    circuit: str
    in_flight: int
    overall: OperationStats
    operations: dict[str, OperationStats]

    def as_dict(self) -> dict[str, Any]:
        return {
            "adapter": self.adapter,
            "circuit": self.circuit,
            "in_flight": self.in_flight,
            "overall": self.overall.as_dict(),
            "operations": {k: v.as_dict() for k, v in self.operations.items()},
        }


def _checked_base_url(name: str, base_url: str) -> str:
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigurationError(
            f"adapters.{name}.base_url: an absolute http(s) URL is required, got {base_url!r}"
        )
    if parts.query or parts.fragment:
        raise ConfigurationError(f"adapters.{name}.base_url: no query or fragment allowed")
    return base_url.rstrip("/")


class OutboundClient:
    """The adapter's only way out: ``request`` for JSON/REST calls, ``http`` for zeep.

    Both share one connection pool (keep-alive) and one resilience stack: timeouts, retries
    with full-jitter backoff honouring Retry-After, the shared circuit breaker, the bulkhead
    and the shared outbound quota. Faults surface as ``gateway.errors.Upstream*``.
    """

    def __init__(
        self,
        name: str,
        base_url: str,
        policy: OutboundPolicy,
        store: Store,
        tls: TlsSettings | None = None,
    ) -> None:
        # httpx logs every request at INFO with its full URL: a duplicate of our metrics on
        # the hot path, and a query string may carry personal data
        logging.getLogger("httpx").setLevel(logging.WARNING)
        self.name = name
        self.base_url = _checked_base_url(name, base_url)
        self.policy = policy
        self.tls = tls or TlsSettings()
        self.breaker = CircuitBreaker(name, policy.circuit, store)
        self.bulkhead = Bulkhead(name, policy.bulkhead.max_concurrent)
        self._stats = RollingStats()
        pool = policy.pool
        context = self.tls.ssl_context() if self.base_url.startswith("https:") else None
        inner: httpx.AsyncBaseTransport
        if policy.transport == "aiohttp":
            inner = AiohttpTransport(pool=pool, ssl_context=context)
        else:
            inner = httpx.AsyncHTTPTransport(
                verify=context if context is not None else True,
                limits=httpx.Limits(
                    max_connections=pool.max_connections,
                    max_keepalive_connections=pool.max_keepalive_connections,
                    keepalive_expiry=pool.keepalive_expiry,
                ),
                retries=0,  # retries are decided above, with the policy
            )
        self._transport = ResilientTransport(
            adapter=name,
            base_url=self.base_url,
            policy=policy,
            inner=inner,
            breaker=self.breaker,
            bulkhead=self.bulkhead,
            rate_limiter=RateLimiter(name, policy.rate_limit, store),
            stats=self._stats,
        )
        t = policy.timeouts
        phases = httpx.Timeout(connect=t.connect, read=t.read, write=t.write, pool=t.pool)
        self._timeout_extension = phases.as_dict()
        self._urls: dict[str, httpx.URL] = {}
        # the gateway's own headers, kept apart from ``http.headers``: libraries handed that
        # client (zeep's AsyncTransport) replace its default headers wholesale
        self._default_headers = httpx.Headers({"User-Agent": USER_AGENT})
        #: an httpx client with the same resilience, for zeep's AsyncTransport(client=...)
        self.http = httpx.AsyncClient(
            base_url=self.base_url,
            transport=self._transport,
            timeout=phases,
            headers=self._default_headers,
            follow_redirects=False,  # a redirect would leave the configured base URL
            event_hooks={"request": [self._stamp_identity]},
        )

    @classmethod
    def for_adapter(
        cls,
        name: str,
        config: AdapterConfig,
        store: Store,
        policy: OutboundPolicy | None = None,
    ) -> OutboundClient:
        """Built from the adapter's configuration (``base_url``, TLS, ``outbound``)."""
        if policy is None:
            try:
                policy = OutboundPolicy.model_validate(config.outbound)
            except ValidationError as exc:
                first = exc.errors()[0]
                loc = ".".join(str(p) for p in first["loc"])
                raise ConfigurationError(
                    f"adapters.{name}.outbound.{loc}: {first['msg']}"
                ) from None
        tls = TlsSettings(
            verify=config.tls_verify,
            ca_file=config.tls_ca_file,
            client_cert=config.tls_client_cert,
            client_key=config.tls_client_key,
        )
        return cls(name, config.base_url, policy, store, tls)

    async def request(
        self,
        operation: str,
        method: str,
        path: str,
        *,
        idempotent: bool,
        json: Any = None,
        content: bytes | str | None = None,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        auth: httpx.Auth | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - a per-attempt limit, not a deadline
    ) -> httpx.Response:
        """One call to ``base_url + path``. Returns the response (any status but 429, 502,
        503, 504, which raise after the retries); raises ``Upstream*``, ``CircuitOpen`` or
        ``BulkheadFull``. ``timeout`` overrides the per-attempt total and read limits."""
        extensions: dict[str, Any] = {
            EXT_OPERATION: operation,
            EXT_IDEMPOTENT: idempotent,
            "timeout": self._timeout_extension,
        }
        if timeout is not None:
            extensions[EXT_TIMEOUT] = timeout
            t = self.policy.timeouts
            extensions["timeout"] = httpx.Timeout(
                connect=t.connect, read=timeout, write=t.write, pool=t.pool
            ).as_dict()
        with upstream_errors(self.name, operation):
            url = self._url(path)
            request = httpx.Request(
                method,
                url.copy_merge_params(params) if params else url,
                json=json,
                content=content,
                headers=self._headers(headers),
                extensions=extensions,
            )
            if auth is not None:  # httpx runs the auth flow (it may take several requests)
                return await self.http.send(request, auth=auth)
            # straight to the resilient transport: no redirects to follow, no cookies kept,
            # and the body is read already (saves a good part of a call's CPU)
            return await self._transport.handle_async_request(request)

    def _url(self, path: str) -> httpx.URL:
        # parsing a URL is a good share of a call's CPU, and an adapter calls few paths
        url = self._urls.get(path)
        if url is None:
            if urlsplit(path).scheme or path.startswith("//"):
                raise ConfigurationError(
                    f"{self.name}: outbound paths are relative to the configured base URL"
                )
            url = self.http.build_request("GET", path).url
            if len(self._urls) < _URL_CACHE_SIZE:
                self._urls[path] = url
        return url

    async def _stamp_identity(self, request: httpx.Request) -> None:
        """Whatever a library did to ``http.headers``, a call says who makes it."""
        request.headers.update(self._default_headers)

    def _headers(self, extra: Mapping[str, str] | None) -> httpx.Headers:
        headers = self._default_headers.copy()
        if extra:
            headers.update(extra)
        return headers

    @contextmanager
    def operation(self, name: str, *, idempotent: bool | None = None) -> Iterator[None]:
        """Name the operation (and its idempotency) of calls made inside the block through
        ``http``, e.g. around a zeep service call."""
        token = call_options.set(CallOptions(name, idempotent))
        try:
            yield
        finally:
            call_options.reset(token)

    async def circuit_state(self) -> CircuitState:
        """The shared circuit state, read from the store now."""
        return await self.breaker.state()

    def stats(self) -> OutboundStats:
        return OutboundStats(
            adapter=self.name,
            circuit=str(self.breaker.local_state()),
            in_flight=self.bulkhead.in_flight,
            overall=self._stats.overall(),
            operations=self._stats.operations(),
        )

    async def aclose(self) -> None:
        await self.http.aclose()
