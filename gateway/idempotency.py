"""``Idempotency-Key`` on every command (POST, PUT, PATCH, DELETE under ``/v1``).

A Litestar middleware placed after authentication (it keys records by the client id). Per
(client, key) the store keeps the request's fingerprint (method, path, query, SHA-256 of the
body) and, once answered, the status, headers and body, for ``jobs.idempotency_ttl``:

- same key, same fingerprint, answered: the stored response is replayed, with
  ``Idempotent-Replayed: true``; the command does not run again;
- same key, another fingerprint: 422 ``IdempotencyKeyReused``;
- same key still being processed: 409 ``IdempotencyInFlight`` (the in-flight marker is taken
  with ``store.set_if_absent``, so two instances cannot both run it).

Answers with status 5xx or 429 are not kept (the marker is dropped): the failure was ours or
transient and the caller should be able to retry with the same key. The header is optional;
a command without it runs as usual.
"""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from dataclasses import dataclass
from typing import Any

from litestar.enums import ScopeType
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Message, Receive, ReceiveMessage, Scope, Send

from gateway.api.problems import send_problem
from gateway.errors import (
    GatewayError,
    IdempotencyInFlight,
    IdempotencyKeyReused,
    InvalidRequest,
    PayloadTooLarge,
)
from gateway.store.base import Store

__all__ = [
    "COMMAND_METHODS",
    "HEADER",
    "IN_FLIGHT_TTL",
    "REPLAYED_HEADER",
    "IdempotencyMiddleware",
    "fingerprint",
    "record_key",
]

HEADER = "idempotency-key"
REPLAYED_HEADER = "idempotent-replayed"
COMMAND_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
#: how long an in-flight marker outlives a process that died while answering
IN_FLIGHT_TTL = 120.0
MAX_KEY_LENGTH = 255
#: headers that belong to one answer, not to the stored response
_NOT_REPLAYED = frozenset(
    {
        b"content-length",
        b"date",
        b"server",
        b"connection",
        b"transfer-encoding",
        b"set-cookie",
        b"x-request-id",
        REPLAYED_HEADER.encode(),
    }
)


def fingerprint(method: str, path: str, query: bytes, body: bytes) -> str:
    """What makes two requests "the same": method, path, query string and body bytes."""
    digest = hashlib.sha256()
    for part in (method.upper().encode(), path.encode(), query, hashlib.sha256(body).digest()):
        digest.update(len(part).to_bytes(4, "big"))
        digest.update(part)
    return digest.hexdigest()


def record_key(client_id: str, key: str) -> str:
    """Store key of one (client, Idempotency-Key); the key is hashed (any length, any bytes)."""
    return f"idem:{client_id}:{hashlib.sha256(key.encode()).hexdigest()}"


def _valid_key(key: str) -> bool:
    return 0 < len(key) <= MAX_KEY_LENGTH and all(0x21 <= ord(c) <= 0x7E for c in key)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


def _client_id(scope: Scope) -> str:
    user = scope.get("user")
    client_id = getattr(user, "id", None)
    return str(client_id) if client_id else "anonymous"


async def _read_body(receive: Receive, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break  # disconnected; the app sees the disconnect after the body
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"the request body exceeds {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


@dataclass(frozen=True, slots=True)
class _Claim:
    body: bytes
    store_key: str
    marker: bytes
    fingerprint: str


class IdempotencyMiddleware(ASGIMiddleware):
    """Must come after the auth middleware in ``Litestar(middleware=[...])``."""

    scopes = (ScopeType.HTTP,)
    #: a route opts out with opt={"no_idempotency": True}
    exclude_opt_key = "no_idempotency"

    def __init__(self, store: Store, *, ttl: float, max_body_bytes: int) -> None:
        self.store = store
        self.ttl = ttl
        self.max_body_bytes = max_body_bytes

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        method = str(scope.get("method", "")).upper()
        path = str(scope.get("path", ""))
        key = _header(scope, HEADER.encode())
        if key is None or method not in COMMAND_METHODS or not path.startswith("/v1/"):
            await next_app(scope, receive, send)
            return
        try:
            claim = await self._claim(scope, receive, method, path, key)
            if isinstance(claim, dict):
                await self._replay(claim, send)
                return
        except GatewayError as exc:
            # answered here, not raised, so the outer middlewares (request id) see it
            await send_problem(scope, send, exc)
            return
        await self._run(scope, receive, send, next_app, claim)

    async def _claim(
        self, scope: Scope, receive: Receive, method: str, path: str, key: str
    ) -> _Claim | dict[str, Any]:
        """Take the in-flight marker (a claim to run the command), or return the stored
        answer to replay; raise the 400 / 409 / 422 / 413 problems."""
        if not _valid_key(key):
            raise InvalidRequest(
                f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} visible ASCII characters"
            )
        body = await _read_body(receive, self.max_body_bytes)
        fp = fingerprint(method, path, bytes(scope.get("query_string", b"")), body)
        store_key = record_key(_client_id(scope), key)
        marker = json.dumps(
            {"state": "in_flight", "fingerprint": fp, "nonce": uuid.uuid4().hex}
        ).encode()
        claim = _Claim(body, store_key, marker, fp)
        if await self.store.set_if_absent(store_key, marker, ttl=IN_FLIGHT_TTL):
            return claim
        stored = await self.store.get(store_key)
        if stored is None:
            # the old record expired between the two calls
            if await self.store.set_if_absent(store_key, marker, ttl=IN_FLIGHT_TTL):
                return claim
            raise IdempotencyInFlight(retry_after=1)
        record: dict[str, Any] = json.loads(stored)
        if record.get("fingerprint") != fp:
            raise IdempotencyKeyReused(
                "this Idempotency-Key was already used with a different request; "
                "use a new key for a new request"
            )
        if record.get("state") != "done":
            raise IdempotencyInFlight(
                "the first request with this Idempotency-Key is still being processed",
                retry_after=1,
            )
        return record

    async def _replay(self, record: dict[str, Any], send: Send) -> None:
        content = base64.b64decode(record["body"])
        headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in record["headers"]]
        headers.append((b"content-length", str(len(content)).encode()))
        headers.append((REPLAYED_HEADER.encode(), b"true"))
        await send({"type": "http.response.start", "status": record["status"], "headers": headers})
        await send({"type": "http.response.body", "body": content, "more_body": False})

    async def _run(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        next_app: ASGIApp,
        claim: _Claim,
    ) -> None:
        body, store_key, marker, fp = claim.body, claim.store_key, claim.marker, claim.fingerprint
        body_given = False

        async def replay_receive() -> ReceiveMessage:
            nonlocal body_given
            if not body_given:
                body_given = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        status = 0
        headers: list[tuple[str, str]] = []
        chunks: list[bytes] = []
        complete = False

        async def capture(message: Message) -> None:
            nonlocal status, complete
            if message["type"] == "http.response.start":
                status = int(message["status"])
                for name, value in message.get("headers", ()):
                    if bytes(name).lower() not in _NOT_REPLAYED:
                        headers.append(
                            (bytes(name).decode("latin-1"), bytes(value).decode("latin-1"))
                        )
            elif message["type"] == "http.response.body":
                chunks.append(bytes(message.get("body", b"")))
                if not message.get("more_body", False):
                    complete = True
            await send(message)

        try:
            await next_app(scope, replay_receive, capture)
        except BaseException:
            await self._forget(store_key, marker)
            raise
        if not complete or status >= 500 or status == 429:
            await self._forget(store_key, marker)
            return
        record = json.dumps(
            {
                "state": "done",
                "fingerprint": fp,
                "status": status,
                "headers": headers,
                "body": base64.b64encode(b"".join(chunks)).decode("ascii"),
            }
        ).encode()
        await self.store.compare_and_set(store_key, marker, record, ttl=self.ttl)

    async def _forget(self, store_key: str, marker: bytes) -> None:
        # only our own marker (it may have expired and been taken by a later request)
        try:
            if await self.store.get(store_key) == marker:
                await self.store.delete(store_key)
        except Exception:  # noqa: S110 - the marker expires by itself after IN_FLIGHT_TTL
            pass
