"""Callback intake: what every adapter's ``callbacks.py`` does after checking the message.

A national system pushes something (a payment result, a dossier submitted nationally, a
postal status). The adapter authenticates the caller (the auth middleware: a client with
scope ``callbacks:<system>``), checks the system's own signature or checksum, parses the
message into a canonical event, and then calls :meth:`CallbackIntake.accept` with the reply
the system expects. The intake:

1. claims ``(system, event_id)`` in the store with ``set_if_absent`` (kept
   ``retention.callback_dedupe_days``), together with the reply and the event id it is about
   to publish;
2. publishes the canonical event (appended to the pull feed, one webhook delivery job per
   endpoint: no upstream call inline, so the system gets its answer in milliseconds);
3. marks the claim published, audits the exchange and returns the reply.

A duplicate (the system retrying because our answer was lost) gets the stored reply and is not
forwarded again. A duplicate arriving while the first is still being accepted gets 409 with
``Retry-After`` (the system retries; the first one's answer is then stored). If a process died
between claim and publish, the next duplicate after ``TAKEOVER_SECONDS`` finishes the publish
with the same event id, so nothing the system sent is lost and nothing is sent twice. If the
publish failed (the delivery queue is full: 503 with ``Retry-After``), the next copy takes
over at once, with the same event id.

A message that fails the adapter's checks: :meth:`CallbackIntake.refuse` audits it (outcome
``rejected``) before the adapter raises its error.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import hashlib
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog
from prometheus_client import Counter

from gateway.errors import GatewayError, IdempotencyInFlight
from gateway.store.ids import new_id

if TYPE_CHECKING:
    from litestar import Response

    from gateway.audit import Auditor
    from gateway.settings import RetentionSettings
    from gateway.store.base import Store
    from gateway.webhooks import EventPublisher

__all__ = ["TAKEOVER_SECONDS", "CallbackIntake", "CallbackReply", "dedupe_key"]

log = structlog.get_logger(__name__)

#: a claim not marked published after this long belonged to a process that died
TAKEOVER_SECONDS = 10.0
#: Retry-After for a duplicate that arrives while the first copy is being accepted
IN_FLIGHT_RETRY_AFTER = 1.0

CALLBACKS = Counter(
    "gateway_callbacks_total",
    "Callbacks from national systems by outcome (accepted, duplicate, rejected)",
    ["system", "outcome"],
)


def dedupe_key(system: str, event_id: str) -> str:
    """The store key of a (system, event id) claim; long ids are hashed to bound the key."""
    ident = event_id if len(event_id) <= 128 else hashlib.sha256(event_id.encode()).hexdigest()
    return f"callback:dedupe:{system}:{ident}"


@dataclass(frozen=True, slots=True)
class CallbackReply:
    """What to answer the national system."""

    body: bytes
    media_type: str
    status_code: int
    #: the canonical event's id (the same for every copy of one message)
    event_id: str
    #: True when this copy had been accepted before and was not forwarded again
    duplicate: bool

    def to_response(self) -> Response[bytes]:
        """A Litestar response carrying the reply as the system expects it."""
        from litestar import Response

        return Response(self.body, status_code=self.status_code, media_type=self.media_type)


@dataclass(frozen=True, slots=True)
class _Claim:
    reply: bytes
    media_type: str
    status_code: int
    event_id: str
    claimed_at: float
    published: bool

    def dump(self) -> bytes:
        return json.dumps(
            {
                "reply": base64.b64encode(self.reply).decode("ascii"),
                "media_type": self.media_type,
                "status_code": self.status_code,
                "event_id": self.event_id,
                "claimed_at": self.claimed_at,
                "published": self.published,
            }
        ).encode()

    @classmethod
    def load(cls, raw: bytes) -> _Claim:
        d = json.loads(raw)
        return cls(
            reply=base64.b64decode(d["reply"]),
            media_type=str(d["media_type"]),
            status_code=int(d["status_code"]),
            event_id=str(d["event_id"]),
            claimed_at=float(d["claimed_at"]),
            published=bool(d["published"]),
        )


class CallbackIntake:
    """Deduplicate, persist, forward and audit callbacks. One per runtime."""

    def __init__(
        self,
        store: Store,
        auditor: Auditor,
        publisher: EventPublisher,
        retention: RetentionSettings,
    ) -> None:
        self._store = store
        self._auditor = auditor
        self._publisher = publisher
        self._ttl = retention.callback_dedupe_days * 86400.0

    async def accept(
        self,
        *,
        system: str,
        event_id: str,
        event_type: str,
        data: Mapping[str, Any],
        reply: bytes,
        media_type: str,
        subject: str | None = None,
        status_code: int = 200,
        actor: str | None = None,
        operation: str | None = None,
        payload: bytes | None = None,
        subjects: Sequence[str] = (),
        dossier_code: str | None = None,
        procedure_code: str | None = None,
    ) -> CallbackReply:
        """Accept one authenticated, verified callback; returns the reply to send.

        ``event_id`` is the system's own id of the message (its transaction or message id):
        the deduplication key with ``system``. ``data`` becomes the canonical event's data,
        with ``source`` = {system, event_id} added. ``payload`` (the raw body) is hashed for
        the audit record; ``subjects`` are personal identifiers in it (digested there).
        ``actor`` is the authenticated client id (default: the system's name)."""
        started = time.perf_counter()
        key = dedupe_key(system, event_id)
        claim = _Claim(
            reply=reply,
            media_type=media_type,
            status_code=status_code,
            event_id=new_id(),
            claimed_at=time.time(),
            published=False,
        )
        duplicate = False
        for _ in range(2):
            if await self._store.set_if_absent(key, claim.dump(), ttl=self._ttl):
                break
            existing = await self._existing(key)
            if existing is None:
                continue  # expired between the two calls: claim again
            if existing.published:
                duplicate = True
                claim = existing
            else:
                claim = await self._take_over(key, existing, system)
            break
        else:
            raise IdempotencyInFlight(
                "this callback is being accepted elsewhere; retry shortly",
                retry_after=IN_FLIGHT_RETRY_AFTER,
            )
        if not duplicate:
            event_data = {**data, "source": {"system": system, "event_id": event_id}}
            try:
                await self._publisher.publish(
                    event_type, event_data, subject=subject, event_id=claim.event_id
                )
            except Exception as exc:
                await self._failed(key, claim, exc, system=system, event_type=event_type)
                raise
            claim = dataclasses.replace(claim, published=True)
            await self._store.set(key, claim.dump(), ttl=self._ttl)
        outcome = "duplicate" if duplicate else "ok"
        CALLBACKS.labels(system, "duplicate" if duplicate else "accepted").inc()
        await self._auditor.record(
            direction="inbound",
            actor=actor or system,
            adapter=system,
            operation=operation or f"callback.{event_type}",
            outcome=outcome,
            status=claim.status_code,
            latency_ms=(time.perf_counter() - started) * 1000.0,
            dossier_code=dossier_code,
            procedure_code=procedure_code,
            payload=payload,
            subjects=subjects,
            extra={"event_id": claim.event_id, "source_event_id": event_id},
        )
        return CallbackReply(
            body=claim.reply,
            media_type=claim.media_type,
            status_code=claim.status_code,
            event_id=claim.event_id,
            duplicate=duplicate,
        )

    async def _failed(
        self, key: str, claim: _Claim, exc: Exception, *, system: str, event_type: str
    ) -> None:
        """Publishing failed (queue full, store trouble): the system gets an error and sends
        the message again. The claim is left open for that copy to take over at once, with
        the same event id, so an event already appended is not appended twice."""
        with contextlib.suppress(Exception):
            open_claim = dataclasses.replace(claim, claimed_at=0.0)
            await self._store.set(key, open_claim.dump(), ttl=self._ttl)
        with contextlib.suppress(Exception):
            await self._auditor.record(
                direction="inbound",
                actor=system,
                adapter=system,
                operation=f"callback.{event_type}",
                outcome="error",
                detail=exc.detail if isinstance(exc, GatewayError) else type(exc).__name__,
                extra={"event_id": claim.event_id},
            )

    async def _existing(self, key: str) -> _Claim | None:
        raw = await self._store.get(key)
        return _Claim.load(raw) if raw is not None else None

    async def _take_over(self, key: str, existing: _Claim, system: str) -> _Claim:
        """An unpublished claim: another request is accepting it now, or its process died."""
        if time.time() - existing.claimed_at < TAKEOVER_SECONDS:
            raise IdempotencyInFlight(
                "this callback is still being accepted; retry shortly",
                retry_after=IN_FLIGHT_RETRY_AFTER,
            )
        # the same event id: an event already appended is found, its deliveries deduplicated
        renewed = dataclasses.replace(existing, claimed_at=time.time())
        if not await self._store.compare_and_set(
            key, existing.dump(), renewed.dump(), ttl=self._ttl
        ):
            raise IdempotencyInFlight(
                "this callback is being accepted by another instance; retry shortly",
                retry_after=IN_FLIGHT_RETRY_AFTER,
            )
        log.warning("finishing a callback an earlier attempt left unpublished", system=system)
        return renewed

    async def refuse(
        self,
        *,
        system: str,
        reason: str,
        actor: str | None = None,
        operation: str = "callback",
        status: int | None = None,
        payload: bytes | None = None,
    ) -> None:
        """Audit a message the adapter refuses (bad signature, checksum, replay window).

        ``reason`` is safe text for the log: never the message or a personal identifier."""
        CALLBACKS.labels(system, "rejected").inc()
        await self._auditor.record(
            direction="inbound",
            actor=actor or system,
            adapter=system,
            operation=operation,
            outcome="rejected",
            status=status,
            payload=payload,
            detail=reason,
        )
        log.warning("callback refused", system=system, reason=reason)
