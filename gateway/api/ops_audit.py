"""Ops API for the exchange log: query the audit records, check the chain.

A citizen ID typed in by an operator (``subject``) is taken only in the body of
``POST /ops/api/audit/search``, never in a URL (URLs land in browser history, proxy and access
logs): the server turns it into the keyed digest the records carry and forgets it; it is never
stored, logged or echoed back. ``GET /ops/api/audit`` takes the digest (``subject_digest``)
and refuses ``subject``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any

from litestar import get, post
from litestar.params import Parameter

from gateway.api.jobs import iso
from gateway.api.openapi import AUTHENTICATED, problem_responses, secured
from gateway.audit import VerifyResult, chain_status, parse_time, verify_chain
from gateway.errors import InvalidRequest, ValidationFailed
from gateway.runtime import Runtime
from gateway.store.base import AuditQuery, AuditRecord

__all__ = [
    "AuditPage",
    "AuditRecordView",
    "AuditSearch",
    "ChainView",
    "audit_chain",
    "audit_records",
    "audit_search",
    "record_view",
    "routes",
]

_DIGEST = re.compile(r"^[0-9a-f]{64}$")
_MAX_LIMIT = 500


@dataclass(frozen=True, slots=True)
class AuditRecordView:
    seq: int
    at: str | None
    direction: str
    actor: str
    adapter: str | None
    operation: str
    outcome: str
    status: int | None
    latency_ms: float | None
    request_id: str | None
    procedure_code: str | None
    dossier_code: str | None
    officer_id: str | None
    payload_sha256: str | None
    subject_digests: list[str]
    detail: str | None
    extra: dict[str, Any]
    prev_hash: str
    hash: str


@dataclass(frozen=True, slots=True)
class AuditPage:
    #: newest first
    items: list[AuditRecordView]
    #: pass as ``before_seq`` for the next (older) page; null on the last page
    next_before_seq: int | None


@dataclass(frozen=True, slots=True)
class AuditSearch:
    """The filters of ``GET /ops/api/audit`` as a JSON body, plus ``subject``: a citizen ID."""

    since: str | None = None
    until: str | None = None
    adapter: str | None = None
    system: str | None = None
    actor: str | None = None
    operation: str | None = None
    outcome: str | None = None
    request_id: str | None = None
    dossier_code: str | None = None
    #: a citizen ID; matched by its keyed digest, never stored or returned
    subject: str | None = None
    subject_digest: str | None = None
    before_seq: int | None = None
    limit: int = 100


@dataclass(frozen=True, slots=True)
class ChainView:
    ok: bool
    checked: int
    first_broken_seq: int | None
    reason: str | None
    last_seq: int
    verified_at: str | None


def record_view(r: AuditRecord) -> AuditRecordView:
    return AuditRecordView(
        seq=r.seq,
        at=iso(r.at),
        direction=r.direction,
        actor=r.actor,
        adapter=r.adapter,
        operation=r.operation,
        outcome=r.outcome,
        status=r.status,
        latency_ms=r.latency_ms,
        request_id=r.request_id,
        procedure_code=r.procedure_code,
        dossier_code=r.dossier_code,
        officer_id=r.officer_id,
        payload_sha256=r.payload_sha256,
        subject_digests=list(r.subject_digests),
        detail=r.detail,
        extra=r.extra,
        prev_hash=r.prev_hash,
        hash=r.hash,
    )


def _time(name: str, value: str | None) -> float | None:
    if value is None or value.strip() == "":
        return None
    try:
        return parse_time(value)
    except ValueError:
        raise InvalidRequest(
            f"{name}: not a time (epoch seconds or ISO 8601, e.g. 2026-01-31T08:00:00+07:00)"
        ) from None


def _chain_view(result: VerifyResult) -> ChainView:
    return ChainView(
        ok=result.ok,
        checked=result.checked,
        first_broken_seq=result.first_broken_seq,
        reason=result.reason,
        last_seq=result.last_seq,
        verified_at=iso(result.verified_at) if result.verified_at else None,
    )


async def _search(runtime: Runtime, f: AuditSearch) -> AuditPage:
    if f.adapter and f.system and f.adapter != f.system:
        raise InvalidRequest("adapter and system name the same filter; give one")
    if f.subject_digest is not None and not _DIGEST.match(f.subject_digest):
        raise InvalidRequest("subject_digest: 64 lowercase hex digits, as records carry it")
    if f.before_seq is not None and f.before_seq < 1:
        raise InvalidRequest("before_seq: 1 or more")
    if not 1 <= f.limit <= _MAX_LIMIT:
        raise InvalidRequest(f"limit: from 1 to {_MAX_LIMIT}")
    digest = runtime.audit.digest(f.subject) if f.subject and f.subject.strip() else None
    if digest and f.subject_digest and digest != f.subject_digest:
        raise InvalidRequest("subject and subject_digest name different people; give one")
    digest = digest or f.subject_digest
    query = AuditQuery(
        since=_time("since", f.since),
        until=_time("until", f.until),
        adapter=f.adapter or f.system or None,
        actor=f.actor or None,
        outcome=f.outcome or None,
        request_id=f.request_id or None,
        dossier_code=f.dossier_code or None,
        subject_digest=digest,
        operation=f.operation or None,
        before_seq=f.before_seq,
        limit=f.limit + 1,
    )
    records = await runtime.store.audit.query(query)
    more = len(records) > f.limit
    records = records[: f.limit]
    return AuditPage(
        items=[record_view(r) for r in records],
        next_before_seq=records[-1].seq if more and records else None,
    )


@get(
    "/ops/api/audit",
    tags=["ops"],
    summary="Audit records, newest first, filtered",
    description=(
        "Filters combine (AND). To search by a citizen ID, POST it to `/ops/api/audit/search` "
        "(never in a URL); here, `subject_digest` matches a digest as records carry it. Times "
        "are epoch seconds or ISO 8601 (Asia/Ho_Chi_Minh when no offset is given)."
    ),
    responses=problem_responses(AUTHENTICATED, ValidationFailed),
    security=secured("ops:read"),
    opt={"scopes": ["ops:read"]},
)
async def audit_records(
    runtime: Runtime,
    since: Annotated[str | None, Parameter(description="At or after this time")] = None,
    until: Annotated[str | None, Parameter(description="Before this time")] = None,
    adapter: Annotated[str | None, Parameter(description="National system (adapter)")] = None,
    system: Annotated[str | None, Parameter(description="Same as adapter")] = None,
    actor: Annotated[str | None, Parameter(description="Client id or system name")] = None,
    operation: str | None = None,
    outcome: Annotated[str | None, Parameter(description="ok, error, rejected ...")] = None,
    request_id: str | None = None,
    dossier_code: str | None = None,
    # not a filter any more: declared only to refuse it (left unknown it would be ignored,
    # and the caller would get everyone's records)
    subject: Annotated[str | None, Parameter(include_in_schema=False)] = None,
    subject_digest: Annotated[
        str | None,
        Parameter(
            pattern=r"^[0-9a-f]{64}$", description="A digest as records carry it (from a record)"
        ),
    ] = None,
    before_seq: Annotated[int | None, Parameter(ge=1)] = None,
    limit: Annotated[int, Parameter(ge=1, le=_MAX_LIMIT)] = 100,
) -> AuditPage:
    if subject is not None:
        raise InvalidRequest(
            "a citizen ID is never taken in a URL: POST it as `subject` in the JSON body of "
            "/ops/api/audit/search, or pass `subject_digest`"
        )
    filters = AuditSearch(
        since=since,
        until=until,
        adapter=adapter,
        system=system,
        actor=actor,
        operation=operation,
        outcome=outcome,
        request_id=request_id,
        dossier_code=dossier_code,
        subject_digest=subject_digest,
        before_seq=before_seq,
        limit=limit,
    )
    return await _search(runtime, filters)


@post(
    "/ops/api/audit/search",
    tags=["ops"],
    summary="Audit records, newest first, filtered; a citizen ID in the body",
    description=(
        "The filters of `GET /ops/api/audit` as a JSON body, plus `subject`: a citizen ID, "
        "so it never lands in a URL (browser history, proxy and access logs). The server "
        "digests it with the identifier key and matches the records' digests; the ID itself "
        "is never stored or returned. Reads only; with the dashboard's session cookie it needs "
        "the `X-CSRF-Token` header like every POST."
    ),
    responses=problem_responses(AUTHENTICATED, ValidationFailed),
    security=secured("ops:read"),
    opt={"scopes": ["ops:read"]},
    status_code=200,
)
async def audit_search(runtime: Runtime, data: AuditSearch) -> AuditPage:
    return await _search(runtime, data)


@get(
    "/ops/api/audit/verify",
    tags=["ops"],
    summary="The audit chain's state: intact, or the first broken record",
    description=(
        "By default the records appended since the last check are verified, and the whole "
        "chain every few minutes; `full=true` walks the whole chain now."
    ),
    responses=problem_responses(AUTHENTICATED, ValidationFailed),
    security=secured("ops:read"),
    opt={"scopes": ["ops:read"]},
)
async def audit_chain(runtime: Runtime, full: bool = False) -> ChainView:
    result = await (verify_chain(runtime.store) if full else chain_status(runtime.store))
    return _chain_view(result)


routes = [audit_records, audit_search, audit_chain]
