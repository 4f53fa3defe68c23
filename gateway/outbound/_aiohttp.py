"""The connection pool under the resilient transport: aiohttp's, behind httpx's interface.

Why not httpx's own pool: measured here (``bench/overhead.py``, docs/adr/0003), httpcore
costs several times more CPU per call than aiohttp's pool, and an outbound call is most of
what a query costs the gateway. Everything above this module still speaks httpx (zeep runs
on ``OutboundClient.http``), and the faults of aiohttp are mapped here to the httpx exceptions
they mean, so ``_errors.upstream_errors`` stays the one place that turns them into
``Upstream*``. The mapping is careful about one thing: only a failure to *connect* is mapped
to ``ConnectError``/``ConnectTimeout`` ("never sent", retryable for any operation); a
connection dropped after the request went out is a ``RemoteProtocolError``.

Limits: HTTP/1.1 only; httpx's ``write`` timeout has no aiohttp equivalent (the per-attempt
``total`` still bounds a stuck upload); every idle connection is kept until
``keepalive_expiry``. ``OutboundPolicy.transport = "httpx"`` selects httpx's pool instead.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from contextlib import contextmanager

import aiohttp
import httpx
from yarl import URL

from gateway.outbound._policy import PoolPolicy

__all__ = ["AiohttpTransport"]

#: most specific first: the first match wins
_FAULTS: tuple[tuple[type[BaseException], type[httpx.TransportError]], ...] = (
    (aiohttp.ConnectionTimeoutError, httpx.ConnectTimeout),  # pool wait or TCP/TLS connect
    (aiohttp.SocketTimeoutError, httpx.ReadTimeout),
    (aiohttp.ServerTimeoutError, httpx.ReadTimeout),
    (aiohttp.ClientConnectorError, httpx.ConnectError),  # refused, DNS, TLS handshake
    (aiohttp.ServerDisconnectedError, httpx.RemoteProtocolError),
    (aiohttp.ClientPayloadError, httpx.RemoteProtocolError),  # body cut short
    (aiohttp.ClientResponseError, httpx.RemoteProtocolError),  # unparseable HTTP
    (aiohttp.ClientOSError, httpx.ReadError),  # reset after connecting
    (aiohttp.InvalidURL, httpx.UnsupportedProtocol),
    (aiohttp.ClientError, httpx.TransportError),
)


@contextmanager
def _as_httpx_faults() -> Iterator[None]:
    try:
        yield
    except aiohttp.ClientError as exc:
        for fault, mapped in _FAULTS:
            if isinstance(exc, fault):
                raise mapped(f"{type(exc).__name__}: {exc}") from exc
        raise  # pragma: no cover - _FAULTS ends with ClientError


#: headers aiohttp would add on its own when a request lacks them; httpx's client always
#: sends both, so they are skipped only for the rare request built without them (the
#: session-wide skip list cost a multidict copy per request)
_AUTO_HEADERS = (b"user-agent", b"accept-encoding")
_SKIP_AUTO = ("User-Agent", "Accept-Encoding")
#: per-phase timeouts seen so far (few: the policy's, and per-call read overrides)
_TIMEOUT_CACHE_SIZE = 64


class AiohttpTransport(httpx.AsyncBaseTransport):
    def __init__(self, *, pool: PoolPolicy, ssl_context: ssl.SSLContext | None = None) -> None:
        self._pool = pool
        self._ssl: ssl.SSLContext | bool = ssl_context if ssl_context is not None else True
        self._session: aiohttp.ClientSession | None = None
        self._timeouts: dict[tuple[float | None, ...], aiohttp.ClientTimeout] = {}

    def _timeout(self, phases: dict[str, float | None]) -> aiohttp.ClientTimeout:
        connect = phases.get("connect")
        pool = phases.get("pool")
        read = phases.get("read")
        key = (connect, pool, read)
        timeout = self._timeouts.get(key)
        if timeout is None:
            timeout = aiohttp.ClientTimeout(
                total=None,
                connect=None if connect is None or pool is None else connect + pool,
                sock_connect=connect,
                sock_read=read,
            )
            if len(self._timeouts) < _TIMEOUT_CACHE_SIZE:
                self._timeouts[key] = timeout
        return timeout

    def _session_now(self) -> aiohttp.ClientSession:
        # created on first use: a session belongs to the event loop it was made in
        if self._session is None or self._session.closed:
            expiry = self._pool.keepalive_expiry
            connector = aiohttp.TCPConnector(
                limit=self._pool.max_connections,
                limit_per_host=0,
                keepalive_timeout=expiry if expiry > 0 else None,
                force_close=expiry <= 0,
                ssl=self._ssl,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                auto_decompress=False,  # httpx decodes, inside the error boundary
                cookie_jar=aiohttp.DummyCookieJar(),  # httpx keeps the cookies
                trust_env=False,
            )
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeout = self._timeout(request.extensions.get("timeout", {}))
        raw = request.headers.raw
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in raw]
        present = {k.lower() for k, _ in raw}
        skip = None if all(h in present for h in _AUTO_HEADERS) else _SKIP_AUTO
        body = await request.aread()
        with _as_httpx_faults():
            async with self._session_now().request(
                request.method,
                URL(str(request.url), encoded=True),
                headers=headers,
                data=body or None,
                allow_redirects=False,
                timeout=timeout,
                skip_auto_headers=skip,
                server_hostname=request.extensions.get("sni_hostname"),
            ) as answer:
                content = await answer.read()
                status = answer.status
                raw_headers = answer.raw_headers
                reason = answer.reason
        extensions = {"http_version": b"HTTP/1.1"}
        if reason:
            extensions["reason_phrase"] = reason.encode("latin-1", "replace")
        response = httpx.Response(
            status,
            headers=list(raw_headers),
            stream=httpx.ByteStream(content),
            extensions=extensions,
            request=request,
        )
        if not any(k.lower() == b"content-encoding" for k, _ in raw_headers):
            # already read, nothing to decode: skip httpx's chunk-and-decode pass over the
            # body in aread() (~30 µs a call). httpx 0.28 keeps the read body in
            # ``_content`` (pinned <0.29 in pyproject); an encoded body still goes through
            # aread(), so decoding faults are raised where they always were.
            response._content = content
        return response

    async def aclose(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None
