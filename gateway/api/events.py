"""``GET /v1/events``: the pull feed, for provincial systems that cannot receive webhooks.

The same events the webhooks carry, oldest first. A consumer keeps the last ``id`` it
processed and asks for what follows: ``?after=<id>``. Events younger than
``webhooks.feed_settle_seconds`` are held back a moment, so an event another instance is
still writing (with a slightly smaller id) cannot be skipped by a cursor that moved past it.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Annotated, Any

from litestar import get
from litestar.params import Parameter
from ulid import ULID

from gateway.api.openapi import AUTHENTICATED, problem_responses, secured
from gateway.errors import InvalidRequest, ValidationFailed
from gateway.runtime import Runtime
from gateway.store.base import Event
from gateway.webhooks import event_to_dict

__all__ = ["EventFeed", "list_events", "routes", "settled"]

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
        "so that none is skipped. 400 `invalid-request` when `after` is not an event id, 422 "
        "when `limit` is outside 1..1000."
    ),
    responses=problem_responses(AUTHENTICATED, ValidationFailed),
    security=secured("events:read"),
    opt={"scopes": ["events:read"]},
)
async def list_events(
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
    return EventFeed(
        items=[event_to_dict(e) for e in events],
        next_after=events[-1].id if events else cursor,
    )


routes = [list_events]
