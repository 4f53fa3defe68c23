"""Ops API for the queue: dead letters (list, replay, discard) and per-kind queue figures.

Every replay and discard is audited with the operator's client id.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Annotated, Any

from litestar import Request, Response, delete, get, post
from litestar.datastructures import ResponseHeader
from litestar.params import Parameter

from gateway.api.jobs import JobView, iso, job_view
from gateway.api.openapi import AUTHENTICATED, problem_responses, secured
from gateway.dead_letters import DeadLetters
from gateway.errors import Conflict, NotFound, Unauthenticated, ValidationFailed
from gateway.jobs import system_of
from gateway.runtime import Runtime

__all__ = [
    "DeadLetterView",
    "HeldBackView",
    "QueueView",
    "discard_dead_letter",
    "list_dead_letters",
    "list_queues",
    "replay_dead_letter",
    "routes",
]


@dataclass(frozen=True, slots=True)
class HeldBackView:
    id: str
    kind: str
    created_at: str | None


@dataclass(frozen=True, slots=True)
class DeadLetterView:
    job: JobView
    #: the adapter the job's kind belongs to
    system: str
    #: later jobs of the same ordering key, waiting until this one is replayed or discarded
    held_back: list[HeldBackView]


@dataclass(frozen=True, slots=True)
class QueueView:
    kind: str
    system: str
    queued: int
    in_flight: int
    dead: int
    oldest_due_age_seconds: float | None


def _operator(request: Request[Any, Any, Any]) -> str:
    client_id = getattr(request.scope.get("user"), "id", None)
    if not client_id:
        raise Unauthenticated()
    return str(client_id)


def dead_letters(runtime: Runtime) -> DeadLetters:
    return DeadLetters(runtime.store, runtime.audit)


@get(
    "/ops/api/dead-letters",
    tags=["ops"],
    summary="Dead-lettered jobs, newest first, with the jobs each one holds back",
    description=(
        "Page on with `before` = the `X-Next-Before` header (absent on the last page). With "
        "`system`, one call reads a bounded number of dead letters: a page may then hold fewer "
        "than `limit` (even none) and still have a next one."
    ),
    response_headers=[
        ResponseHeader(
            name="X-Next-Before",
            description="`before` of the next (older) page; absent on the last page",
            documentation_only=True,
        )
    ],
    responses=problem_responses(AUTHENTICATED, ValidationFailed),
    security=secured("ops:read"),
    opt={"scopes": ["ops:read"]},
)
async def list_dead_letters(
    runtime: Runtime,
    system: Annotated[
        str | None, Parameter(description="adapter (kind prefix), e.g. national_portal")
    ] = None,
    kind: Annotated[
        str | None, Parameter(description="job kind, e.g. national_portal.sync_dossier")
    ] = None,
    limit: Annotated[int, Parameter(ge=1, le=500)] = 50,
    before: Annotated[str | None, Parameter(description="next page: ids older than this")] = None,
) -> Response[list[DeadLetterView]]:
    found = await dead_letters(runtime).page(
        system=system, kind=kind, limit=limit, before_id=before
    )
    views = [
        DeadLetterView(
            job=job_view(d.job),
            system=d.system,
            held_back=[HeldBackView(j.id, j.kind, iso(j.created_at)) for j in d.held_back],
        )
        for d in found.items
    ]
    # a header, so the body stays the list it has always been
    headers = {"X-Next-Before": found.next_before} if found.next_before else {}
    return Response(views, headers=headers)


@post(
    "/ops/api/dead-letters/{job_id:str}/replay",
    tags=["ops"],
    summary="Put a dead letter back in the queue (attempts kept)",
    responses=problem_responses(AUTHENTICATED, NotFound, Conflict),
    security=secured("ops:write"),
    opt={"scopes": ["ops:write"]},
    status_code=200,
)
async def replay_dead_letter(
    job_id: str, request: Request[Any, Any, Any], runtime: Runtime
) -> JobView:
    job = await dead_letters(runtime).replay(job_id, actor=_operator(request))
    runtime.jobs.wakeup.set()
    return job_view(job)


@delete(
    "/ops/api/dead-letters/{job_id:str}",
    tags=["ops"],
    summary="Discard a dead letter, unblocking its ordering key",
    responses=problem_responses(AUTHENTICATED, NotFound, Conflict),
    security=secured("ops:write"),
    opt={"scopes": ["ops:write"]},
    status_code=200,
)
async def discard_dead_letter(
    job_id: str, request: Request[Any, Any, Any], runtime: Runtime
) -> JobView:
    job = await dead_letters(runtime).discard(job_id, actor=_operator(request))
    runtime.jobs.wakeup.set()
    return job_view(job)


@get(
    "/ops/api/queues",
    tags=["ops"],
    summary="Per job kind: queued, in flight, dead, age of the oldest due job",
    responses=problem_responses(AUTHENTICATED, ValidationFailed),
    security=secured("ops:read"),
    opt={"scopes": ["ops:read"]},
)
async def list_queues(runtime: Runtime) -> list[QueueView]:
    stats = await runtime.store.jobs.stats(now=time.time())
    return [
        QueueView(
            kind=s.kind,
            system=system_of(s.kind),
            queued=s.queued,
            in_flight=s.in_flight,
            dead=s.dead,
            oldest_due_age_seconds=s.oldest_due_age,
        )
        for s in sorted(stats, key=lambda s: s.kind)
    ]


routes = [list_dead_letters, replay_dead_letter, discard_dead_letter, list_queues]
