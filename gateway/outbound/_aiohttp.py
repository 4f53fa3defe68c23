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


class AiohttpTransport(httpx.AsyncBaseTransport):
    def __init__(self, *, pool: PoolPolicy, ssl_context: ssl.SSLContext | None = None) -> None:
        self._pool = pool
        self._ssl: ssl.SSLContext | bool = ssl_context if ssl_context is not None else True
        self._session: aiohttp.ClientSession | None = None

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
                skip_auto_headers=("User-Agent", "Accept-Encoding"),
                trust_env=False,
            )
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        phases = request.extensions.get("timeout", {})
        connect = phases.get("connect")
        pool = phases.get("pool")
        timeout = aiohttp.ClientTimeout(
            total=None,
            connect=None if connect is None or pool is None else connect + pool,
            sock_connect=connect,
            sock_read=phases.get("read"),
        )
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw]
        body = await request.aread()
        with _as_httpx_faults():
            async with self._session_now().request(
                request.method,
                URL(str(request.url), encoded=True),
                headers=headers,
                data=body or None,
                allow_redirects=False,
                timeout=timeout,
                server_hostname=request.extensions.get("sni_hostname"),
            ) as answer:
                content = await answer.read()
                status = answer.status
                raw_headers = answer.raw_headers
                reason = answer.reason
        extensions = {"http_version": b"HTTP/1.1"}
        if reason:
            extensions["reason_phrase"] = reason.encode("latin-1", "replace")
        return httpx.Response(
            status,
            headers=list(raw_headers),
            stream=httpx.ByteStream(content),
            extensions=extensions,
            request=request,
        )

    async def aclose(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None
