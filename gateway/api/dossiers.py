"""``/v1/dossiers`` and ``/v1/procedures``: the dossiers capability over HTTP.

Commands answer 202 with the job that delivers them (``GET /v1/jobs/{id}`` follows it); the
adapter serving the capability (configuration: ``[capabilities] dossiers = ...``) checks
status transitions and queues the work in order per dossier code. A client restricted to some
unit codes (``allowed_units``) gets 403 for a dossier of another unit: the unit is the part of
the dossier code before the receipt date.
"""

from __future__ import annotations

from typing import Any, cast

from litestar import Request, Response, get, post, put
from litestar.openapi import ResponseSpec
from litestar.status_codes import HTTP_202_ACCEPTED
from pydantic import Field

from gateway.api.openapi import (
    AUTHENTICATED,
    WITH_BODY,
    IdempotencyKey,
    problem_responses,
    secured,
)
from gateway.capabilities.dossiers import (
    AcceptedCommand,
    DossierInput,
    DossiersCapability,
    DossierState,
    ProcedureList,
    ProgressInput,
    dossier_unit,
    validate_dossier_code,
)
from gateway.errors import (
    BulkheadFull,
    CircuitOpen,
    Conflict,
    IdempotencyInFlight,
    IdempotencyKeyReused,
    NotFound,
    Overloaded,
    UnitNotAllowed,
    UpstreamFault,
    UpstreamRejected,
    UpstreamTimeout,
    UpstreamUnavailable,
    ValidationFailed,
)
from gateway.runtime import Runtime
from gateway.security import Client, require_unit
from gateway.timeline import dossier_timeline

__all__ = ["routes"]

_WRITE = {"scopes": ["dossiers:write"]}
_READ = {"scopes": ["dossiers:read"]}


class AcceptedView(AcceptedCommand):
    """The 202 answer of a command (documentation model of :func:`_accepted`)."""

    links: dict[str, str] = Field(
        description="`job`: where to follow the command", examples=[{"job": "/v1/jobs/01KC..."}]
    )


#: a command: auth, body, the dossier's unit, Idempotency-Key, the bounded queue
_COMMAND_PROBLEMS = problem_responses(
    AUTHENTICATED,
    WITH_BODY,
    UnitNotAllowed,
    Conflict,
    IdempotencyInFlight,
    IdempotencyKeyReused,
    Overloaded,
) | {
    HTTP_202_ACCEPTED: ResponseSpec(
        AcceptedView, description="Accepted: the command is queued", generate_examples=False
    )
}
#: a read of the gateway's own records about one dossier
_DOSSIER_READ_PROBLEMS = problem_responses(
    AUTHENTICATED, ValidationFailed, UnitNotAllowed, NotFound
)
#: the catalogue: served from the cache; the national portal's faults only when nothing is
_CATALOGUE_FAULTS = (UpstreamFault, UpstreamUnavailable, CircuitOpen, BulkheadFull, UpstreamTimeout)

_CODE_DOC = (
    "`code` is the dossier code `V1V2V3.Z1Z2.Y1Y2.MX1X2-YYMMDD-XXXX` "
    "(e.g. `000.00.19.H47-260105-0001`): 422 when malformed, 403 `unit-not-allowed` when the "
    "client is restricted to other units (the unit is the part before the date)."
)
_COMMAND_DOC = (
    " Answers 202 with `job_id`, `kind`, `dossier_code`, `state` and `links.job`: follow the "
    "job with `GET /v1/jobs/{id}` or wait for the `job.succeeded` / `job.failed` event. Send "
    "an `Idempotency-Key` so a retry after a lost answer replays the first answer instead of "
    "queueing the command twice. " + _CODE_DOC
)


def _capability(runtime: Runtime) -> DossiersCapability:
    return cast(DossiersCapability, runtime.registry.capability("dossiers"))


def _checked_code(request: Request[Any, Any, Any], code: str) -> str:
    """422 for a malformed code, then 403 for a unit the client may not act for."""
    errors = validate_dossier_code(code, pointer="/code")
    if errors:
        raise ValidationFailed(f"/code (path): {errors[0].message}", errors=errors)
    unit = dossier_unit(code)
    assert unit is not None
    user = request.user
    if isinstance(user, Client):
        require_unit(user, unit)
    return code


def _client_id(request: Request[Any, Any, Any]) -> str | None:
    user = request.user
    return user.id if isinstance(user, Client) else None


def _accepted(cmd: AcceptedCommand) -> Response[dict[str, Any]]:
    body = {**cmd.model_dump(mode="json"), "links": {"job": f"/v1/jobs/{cmd.job_id}"}}
    return Response(body, status_code=HTTP_202_ACCEPTED)


@put(
    "/v1/dossiers/{code:str}",
    tags=["dossiers"],
    summary="Create or update a dossier on the national side (queued, in order per dossier)",
    description=(
        "The whole dossier (the code is in the path; a `code` in the body must equal it), "
        "optionally with `progress` records pushed right after it. Validated before anything "
        "is queued: each bad field is a 422 naming it with a JSON pointer; a status the "
        "dossier cannot reach from the one last accepted (e.g. `returned` before `processed`) "
        "is a 422 too." + _COMMAND_DOC
    ),
    status_code=HTTP_202_ACCEPTED,
    responses=_COMMAND_PROBLEMS,
    security=secured("dossiers:write"),
    opt=_WRITE,
)
async def put_dossier(
    request: Request[Any, Any, Any],
    runtime: Runtime,
    code: str,
    data: DossierInput,
    idempotency_key: IdempotencyKey = None,
) -> Response[dict[str, Any]]:
    _checked_code(request, code)
    if data.code is not None and data.code != code:
        raise ValidationFailed.field("/code", "differs from the dossier code in the path")
    dossier = data.to_dossier(code)
    cmd = await _capability(runtime).sync_dossier(
        dossier, data.progress, client_id=_client_id(request)
    )
    return _accepted(cmd)


@post(
    "/v1/dossiers/{code:str}/progress",
    tags=["dossiers"],
    summary="Push processing progress records (queued behind the dossier's earlier commands)",
    description=(
        "`records`: 1 to 1000 processing steps, each with `officer_name`, `content`, "
        "`processed_at` and the dossier's `status` after the step; sent to the national side "
        "in chunks of at most 10, in order, after every earlier command of the dossier."
        + _COMMAND_DOC
    ),
    status_code=HTTP_202_ACCEPTED,
    responses=_COMMAND_PROBLEMS,
    security=secured("dossiers:write"),
    opt=_WRITE,
)
async def post_progress(
    request: Request[Any, Any, Any],
    runtime: Runtime,
    code: str,
    data: ProgressInput,
    idempotency_key: IdempotencyKey = None,
) -> Response[dict[str, Any]]:
    _checked_code(request, code)
    cmd = await _capability(runtime).push_progress(
        code, data.records, client_id=_client_id(request)
    )
    return _accepted(cmd)


@get(
    "/v1/dossiers/{code:str}",
    tags=["dossiers"],
    summary="What the national side last confirmed for a dossier, and the work still pending",
    description=(
        "`confirmed` is the dossier as the national portal last accepted it (null until the "
        "first sync succeeds), `accepted_status` the last status the gateway accepted, "
        "`pending` the commands still queued or dead-lettered, `received_from_national` and "
        "`attachments` for dossiers submitted on the national portal. 404 when the gateway "
        "has no record of the dossier. " + _CODE_DOC
    ),
    responses=_DOSSIER_READ_PROBLEMS
    | {200: ResponseSpec(DossierState, description="OK", generate_examples=False)},
    security=secured("dossiers:read"),
    opt=_READ,
)
async def get_dossier(
    request: Request[Any, Any, Any], runtime: Runtime, code: str
) -> dict[str, Any]:
    _checked_code(request, code)
    state = await _capability(runtime).dossier_state(code)
    if state is None:
        raise NotFound(f"the gateway has no record of dossier {code}")
    return state.model_dump(mode="json")


@get(
    "/v1/dossiers/{code:str}/timeline",
    tags=["dossiers"],
    summary="Every integration event of a dossier: synced, progress, received, failures, replays",
    description=(
        "`items`, oldest first: `at` (RFC 3339 UTC, e.g. `2026-01-05T01:30:00.123456Z`), "
        "`label`, `outcome`, `system`, `detail`, "
        "`request_id`, `source` (`job` or `audit`) and `ref` (the job id or audit record "
        "number). 404 when the gateway has no record of the dossier. " + _CODE_DOC
    ),
    responses=_DOSSIER_READ_PROBLEMS,
    security=secured("dossiers:read"),
    opt=_READ,
)
async def get_timeline(
    request: Request[Any, Any, Any], runtime: Runtime, code: str
) -> dict[str, Any]:
    _checked_code(request, code)
    entries = await dossier_timeline(runtime.store, code)
    if not entries:
        raise NotFound(f"the gateway has no record of dossier {code}")
    return {"items": [e.as_dict() for e in entries]}


@get(
    "/v1/dossiers/{code:str}/attachments/{attachment_id:str}",
    tags=["dossiers"],
    summary="An attachment of a dossier received from the national side",
    description=(
        "The bytes of one attachment linked from a `dossier.received` event (`attachments[]."
        "url`), with its media type, `Content-Disposition` and `X-Content-SHA256` (its id is "
        "its SHA-256). 404 when the dossier has no such attachment. " + _CODE_DOC
    ),
    responses=_DOSSIER_READ_PROBLEMS,
    security=secured("dossiers:read"),
    opt=_READ,
)
async def get_attachment(
    request: Request[Any, Any, Any], runtime: Runtime, code: str, attachment_id: str
) -> Response[bytes]:
    _checked_code(request, code)
    att = await _capability(runtime).attachment(code, attachment_id)
    safe_name = "".join(c if c.isalnum() or c in "._-" else "_" for c in att.name) or "file"
    return Response(
        att.content,
        media_type=att.media_type,
        headers={
            "Content-Disposition": f'attachment; filename="{safe_name}"',
            "X-Content-SHA256": att.id,
            "X-Content-Type-Options": "nosniff",
        },
    )


@get(
    "/v1/procedures",
    tags=["procedures"],
    summary="The national procedure catalogue (stale = true while the national side is down)",
    description=(
        "`items` (`code`, `name`, `field_code`, `field_name`, `level`), `stale` and "
        "`fetched_at`. Served from the gateway's cache, refreshed on a schedule; when the "
        "national portal cannot be reached the last copy is served with `stale: true`, and "
        "only when there is no copy at all is the portal's fault returned (502/503/504)."
    ),
    responses=problem_responses(AUTHENTICATED, _CATALOGUE_FAULTS)
    | {200: ResponseSpec(ProcedureList, description="OK", generate_examples=False)},
    security=secured("dossiers:read"),
    opt=_READ,
)
async def list_procedures(runtime: Runtime) -> dict[str, Any]:
    listing = await _capability(runtime).list_procedures()
    return listing.model_dump(mode="json")


@get(
    "/v1/procedures/{code:str}",
    tags=["procedures"],
    summary="One procedure: fields, steps, channels with time limits and fees, documents",
    description=(
        "The procedure's detail plus `stale` (as for the list). `code` is the national "
        "procedure code (e.g. `1.001612`): 422 when malformed, 404 when the portal answers "
        "that it has no such procedure. Any other refusal of the portal serves the cached copy "
        "with `stale: true`, or with no copy is a 422 `upstream-rejected` with its message."
    ),
    responses=problem_responses(
        AUTHENTICATED, ValidationFailed, NotFound, UpstreamRejected, _CATALOGUE_FAULTS
    ),
    security=secured("dossiers:read"),
    opt=_READ,
)
async def get_procedure(runtime: Runtime, code: str) -> dict[str, Any]:
    procedure, stale = await _capability(runtime).get_procedure(code)
    return {**procedure.model_dump(mode="json"), "stale": stale}


routes = [
    put_dossier,
    post_progress,
    get_dossier,
    get_timeline,
    get_attachment,
    list_procedures,
    get_procedure,
]
