"""OAuth2 client credentials to the integration platform in front of the registry.

``POST /token`` with HTTP Basic ``consumer_key:consumer_secret`` and
``grant_type=client_credentials`` returns ``{access_token, token_type, expires_in, scope}``.
The token is kept in the store (so every instance shares one) until ``margin`` seconds before
it expires; within one process a lock makes concurrent callers wait for a single fetch. A 401
on a call invalidates the token (only if it is still the one that failed, so a token another
instance just fetched survives) and the caller fetches a new one, once.
"""

from __future__ import annotations

import asyncio
import json
import time
from urllib.parse import urlencode

import httpx
import structlog

from gateway.errors import UpstreamAuthFailed, UpstreamProtocolError
from gateway.outbound import OutboundClient
from gateway.store.base import Store

__all__ = ["TokenSource"]

log = structlog.get_logger(__name__)


class TokenSource:
    def __init__(
        self,
        *,
        system: str,
        outbound: OutboundClient,
        store: Store,
        consumer_key: str,
        consumer_secret: str,
        token_path: str = "/token",  # noqa: S107 - a path, not a password
        margin: float = 30.0,
    ) -> None:
        self.system = system
        self._outbound = outbound
        self._store = store
        self._auth = httpx.BasicAuth(consumer_key, consumer_secret)
        self._path = token_path
        self._margin = margin
        self._lock = asyncio.Lock()
        #: the store key; the store's own prefix keeps deployments apart
        self.cache_key = f"{system}:oauth-token"
        #: tokens fetched by this process (metrics, tests)
        self.fetched = 0

    async def token(self) -> str:
        cached = await self._cached()
        if cached is not None:
            return cached
        async with self._lock:
            cached = await self._cached()  # another task may have fetched it meanwhile
            if cached is not None:
                return cached
            return await self._fetch()

    async def invalidate(self, token: str) -> None:
        """Forget ``token`` after the platform refused it."""
        raw = await self._store.get(self.cache_key)
        if raw is not None and _parse_cached(raw) == token:
            await self._store.delete(self.cache_key)

    async def _cached(self) -> str | None:
        raw = await self._store.get(self.cache_key)
        return _parse_cached(raw) if raw is not None else None

    async def _fetch(self) -> str:
        response = await self._outbound.request(
            "token",
            "POST",
            self._path,
            idempotent=True,  # asking twice for a token does no harm
            content=urlencode({"grant_type": "client_credentials"}),
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "Accept": "application/json",
            },
            auth=self._auth,
        )
        if response.status_code in (400, 401, 403):
            raise UpstreamAuthFailed(
                f"{self.system}: the integration platform refused the gateway's client "
                f"credentials ({response.status_code})",
                system=self.system,
            )
        if response.status_code != 200:
            raise UpstreamProtocolError(
                f"{self.system}: the token endpoint answered {response.status_code}",
                system=self.system,
            )
        token, expires_in = _parse_token(response, self.system)
        # keep it until shortly before it expires; a very short-lived token is kept half its life
        keep = expires_in - self._margin if expires_in > 2 * self._margin else expires_in / 2
        record = {"access_token": token, "expires_at": time.time() + expires_in}
        await self._store.set(self.cache_key, json.dumps(record).encode(), ttl=max(keep, 0.05))
        self.fetched += 1
        log.info("oauth token fetched", system=self.system, expires_in=expires_in)
        return token


def _parse_cached(raw: bytes) -> str | None:
    try:
        token = json.loads(raw)["access_token"]
    except (ValueError, KeyError, TypeError):
        return None
    return token if isinstance(token, str) and token else None


def _parse_token(response: httpx.Response, system: str) -> tuple[str, float]:
    try:
        data = response.json()
        token = data["access_token"]
        token_type = str(data.get("token_type", "Bearer"))
        expires_in = float(data.get("expires_in", 3600))
    except (ValueError, KeyError, TypeError):
        raise UpstreamProtocolError(
            f"{system}: the token endpoint's answer is not a client credentials token",
            system=system,
        ) from None
    if not isinstance(token, str) or not token or token_type.lower() != "bearer":
        raise UpstreamProtocolError(
            f"{system}: the token endpoint did not issue a bearer token", system=system
        )
    if not expires_in > 0:
        raise UpstreamProtocolError(f"{system}: the token has no lifetime", system=system)
    return token, expires_in
