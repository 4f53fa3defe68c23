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
from litestar.status_codes import HTTP_202_ACCEPTED

from gateway.capabilities.dossiers import (
    AcceptedCommand,
    DossierInput,
    DossiersCapability,
    ProgressInput,
    dossier_unit,
    validate_dossier_code,
)
from gateway.errors import NotFound, ValidationFailed
from gateway.runtime import Runtime
from gateway.security import Client, require_unit
from gateway.timeline import dossier_timeline

__all__ = ["routes"]

_WRITE = {"scopes": ["dossiers:write"]}
_READ = {"scopes": ["dossiers:read"]}


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
    status_code=HTTP_202_ACCEPTED,
    opt=_WRITE,
)
async def put_dossier(
    request: Request[Any, Any, Any], runtime: Runtime, code: str, data: DossierInput
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
    status_code=HTTP_202_ACCEPTED,
    opt=_WRITE,
)
async def post_progress(
    request: Request[Any, Any, Any], runtime: Runtime, code: str, data: ProgressInput
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
    opt=_READ,
)
async def list_procedures(runtime: Runtime) -> dict[str, Any]:
    listing = await _capability(runtime).list_procedures()
    return listing.model_dump(mode="json")


@get(
    "/v1/procedures/{code:str}",
    tags=["procedures"],
    summary="One procedure: fields, steps, channels with time limits and fees, documents",
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
