"""``GET /v1/events``: the pull feed, for provincial systems that cannot receive webhooks.

The same events the webhooks carry, oldest first. A consumer keeps the last ``id`` it
processed and asks for what follows: ``?after=<id>``. Events younger than
``webhooks.feed_settle_seconds`` are held back a moment, so an event another instance is
still writing (with a slightly smaller id) cannot be skipped by a cursor that moved past it.

A client restricted to some units (``allowed_units``) sees only the events of its own units'
dossiers, and the events that concern no dossier; the cursor still moves past the events it
does not see, so it never polls the same page again.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Annotated, Any

from litestar import Request, get
from litestar.params import Parameter
from ulid import ULID

from gateway.api.openapi import AUTHENTICATED, problem_responses, secured
from gateway.capabilities.dossiers import dossier_unit
from gateway.errors import InvalidRequest, ValidationFailed
from gateway.runtime import Runtime
from gateway.security import Client
from gateway.store.base import Event
from gateway.webhooks import event_to_dict

__all__ = ["EventFeed", "event_units", "list_events", "routes", "settled", "visible_to"]

_ULID = re.compile(r"^[0-9A-HJKMNP-TV-Z]{26}$")


@dataclass(frozen=True, slots=True)
class EventFeed:
    #: events in id order: ``{id, type, occurred_at, subject, request_id, data}``
    items: list[dict[str, Any]]
    #: pass it as ``after`` next time (the last item's id, or the ``after`` given when empty)
    next_after: str | None


def settled(events: list[Event], *, now: float, settle_seconds: float) -> list[Event]:
    """The leading run of events whose id time is at least ``settle_seconds`` old."""
    if settle_seconds <= 0:
        return events
    horizon = now - settle_seconds
    out: list[Event] = []
    for event in events:
        if ULID.from_str(event.id).timestamp > horizon:
            break
        out.append(event)
    return out


def event_units(event: Event) -> set[str]:
    """The units of the dossier codes an event carries: its subject, ``data.dossier_code``
    and ``data.dossier.code`` (a dossier received, a job's outcome, a payment, ...)."""
    codes: list[object] = [event.subject, event.data.get("dossier_code")]
    dossier = event.data.get("dossier")
    if isinstance(dossier, dict):
        codes.append(dossier.get("code"))
    units: set[str] = set()
    for code in codes:
        if isinstance(code, str) and (unit := dossier_unit(code)) is not None:
            units.add(unit)
    return units


def visible_to(client: Client | None, event: Event) -> bool:
    """False when the client is restricted to some units and the event names another one."""
    if client is None or not client.allowed_units:
        return True
    return all(client.may_act_for_unit(unit) for unit in event_units(event))


@get(
    "/v1/events",
    tags=["events"],
    summary="The event feed: events after a cursor, oldest first",
    description=(
        "Poll with `after` set to the last event id you processed (omit it to start from the "
        "oldest event kept). Delivery by this feed and by webhook is the same event with the "
        "same id, so a consumer using both can deduplicate on `id`. Store `next_after` and "
        "pass it as `after` on the next call; an empty `items` means nothing new yet (poll "
        "again in a few seconds). Events younger than a second or so are held back a moment "
        "so that none is skipped. A client restricted to some units sees only the events of "
        "its units' dossiers (and those naming no dossier): a page may then hold fewer than "
        "`limit` items, or none, while `next_after` still moves on. 400 `invalid-request` "
        "when `after` is not an event id, 422 when `limit` is outside 1..1000."
    ),
    responses=problem_responses(AUTHENTICATED, ValidationFailed),
    security=secured("events:read"),
    opt={"scopes": ["events:read"]},
)
async def list_events(
    request: Request[Any, Any, Any],
    runtime: Runtime,
    after: Annotated[
        str | None, Parameter(description="The last event id already processed")
    ] = None,
    limit: Annotated[int, Parameter(ge=1, le=1000, description="At most this many")] = 100,
) -> EventFeed:
    if after is not None and not _ULID.match(after.upper()):
        raise InvalidRequest("after: not an event id (a 26-character ULID)")
    cursor = after.upper() if after else None
    events = await runtime.store.events.list_after(cursor, limit=limit)
    events = settled(
        events, now=time.time(), settle_seconds=runtime.settings.webhooks.feed_settle_seconds
    )
    user = request.user
    client = user if isinstance(user, Client) else None
    return EventFeed(
        # the cursor moves past the hidden events too, or a restricted client would loop
        items=[event_to_dict(e) for e in events if visible_to(client, e)],
        next_after=events[-1].id if events else cursor,
    )


routes = [list_events]
