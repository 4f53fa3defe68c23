"""Ops sign-in sessions, kept in the store so every instance honours them and sign-out revokes.

The cookie carries only a random session id; the store keeps (under the id's SHA-256, so a
leaked store dump gives no usable cookie) the client id, a CSRF token and the expiry. Scopes
are read from the client directory at every request, so removing a client ends its sessions.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass

from gateway.store.base import Store

__all__ = ["SESSION_COOKIE", "OpsSession", "OpsSessions"]

SESSION_COOKIE = "dvcgw_ops"
_PREFIX = "ops:session:"


@dataclass(frozen=True, slots=True)
class OpsSession:
    sid: str
    client_id: str
    csrf_token: str
    expires_at: float

    def csrf_ok(self, presented: str | None) -> bool:
        return bool(presented) and hmac.compare_digest(self.csrf_token, str(presented))


def _key(sid: str) -> str:
    return _PREFIX + hashlib.sha256(sid.encode()).hexdigest()


class OpsSessions:
    def __init__(self, store: Store, ttl_seconds: int) -> None:
        self.store = store
        self.ttl = ttl_seconds

    async def create(self, client_id: str) -> OpsSession:
        session = OpsSession(
            sid=secrets.token_urlsafe(32),
            client_id=client_id,
            csrf_token=secrets.token_urlsafe(32),
            expires_at=time.time() + self.ttl,
        )
        body = {"client_id": client_id, "csrf": session.csrf_token, "exp": session.expires_at}
        await self.store.set(_key(session.sid), json.dumps(body).encode(), ttl=self.ttl)
        return session

    async def get(self, sid: str | None) -> OpsSession | None:
        if not sid or len(sid) > 128:
            return None
        raw = await self.store.get(_key(sid))
        if raw is None:
            return None
        body = json.loads(raw)
        if float(body["exp"]) < time.time():
            return None
        return OpsSession(sid, str(body["client_id"]), str(body["csrf"]), float(body["exp"]))

    async def destroy(self, sid: str | None) -> None:
        if sid:
            await self.store.delete(_key(sid))
