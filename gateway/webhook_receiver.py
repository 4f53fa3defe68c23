"""A minimal webhook receiver that verifies Standard Webhooks signatures.

``gateway demo`` runs it to show a delivery arriving and verifying, the integration tests use
it as the provincial system's side, and it doubles as a reference for the provincial
system's developers (docs/webhooks.md): verify with ``standardwebhooks.Webhook(secret)``
over the raw body bytes and the three ``webhook-*`` headers, then deduplicate on
``webhook-id``.

It is plain ASGI (no framework), keeps what it received in memory, and can be told what to
answer next (``script``) to play a receiver that is down, rate-limiting or gone.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

__all__ = ["Answer", "Delivery", "WebhookReceiver"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]


@dataclass(frozen=True, slots=True)
class Answer:
    """What the receiver answers one request."""

    status: int = 204
    headers: dict[str, str] = field(default_factory=dict)
    #: wait this long before answering (to play a slow receiver)
    delay: float = 0.0


@dataclass(frozen=True, slots=True)
class Delivery:
    """One request the receiver got."""

    at: float
    path: str
    headers: dict[str, str]
    body: bytes
    #: the parsed payload when the signature verified, else None
    payload: dict[str, Any] | None
    #: why verification failed, else None
    error: str | None
    #: what the receiver answered
    status: int

    @property
    def verified(self) -> bool:
        return self.error is None

    @property
    def webhook_id(self) -> str | None:
        return self.headers.get("webhook-id")


class WebhookReceiver:
    """An ASGI app: POST anything, get verified (or not), recorded and answered."""

    def __init__(self, secret: str) -> None:
        self.secret = secret
        self._webhook = Webhook(secret)
        self.deliveries: list[Delivery] = []
        #: answers to give, first to last; when empty, ``default`` is answered
        self.script: list[Answer] = []
        self.default = Answer()
        self._changed = asyncio.Condition()

    @property
    def verified(self) -> list[Delivery]:
        return [d for d in self.deliveries if d.verified and 200 <= d.status < 300]

    def unique_ids(self) -> set[str]:
        """The distinct webhook ids accepted with a 2xx (what a receiver deduplicates on)."""
        return {d.webhook_id for d in self.verified if d.webhook_id}

    async def wait_for(
        self, predicate: Callable[[list[Delivery]], bool], *, within: float = 10.0
    ) -> list[Delivery]:
        """Wait until ``predicate(deliveries)`` holds; raises TimeoutError otherwise."""

        async def check() -> None:
            async with self._changed:
                await self._changed.wait_for(lambda: predicate(self.deliveries))

        await asyncio.wait_for(check(), within)
        return list(self.deliveries)

    async def __call__(
        self,
        scope: Scope,
        receive: Callable[[], Awaitable[Message]],
        send: Callable[[Message], Awaitable[None]],
    ) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        payload: dict[str, Any] | None = None
        error: str | None = None
        try:
            parsed = self._webhook.verify(body, headers)
            payload = parsed if isinstance(parsed, dict) else {"value": parsed}
        except WebhookVerificationError as exc:
            error = str(exc) or "verification failed"
        except ValueError as exc:  # a body that is not JSON
            error = f"not JSON: {exc}"
        answer = self.script.pop(0) if self.script else self.default
        if error is not None and answer.status < 300:
            answer = Answer(status=400)  # an unverified message is never accepted
        if answer.delay:
            await asyncio.sleep(answer.delay)
        await send(
            {
                "type": "http.response.start",
                "status": answer.status,
                "headers": [(k.encode(), v.encode()) for k, v in answer.headers.items()],
            }
        )
        await send({"type": "http.response.body", "body": b""})
        delivery = Delivery(
            at=time.time(),
            path=scope.get("path", "/"),
            headers=headers,
            body=body,
            payload=payload,
            error=error,
            status=answer.status,
        )
        async with self._changed:
            self.deliveries.append(delivery)
            self._changed.notify_all()
