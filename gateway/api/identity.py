"""``/v1/citizens``: the identity capability over HTTP.

Queries, answered in the request: a verification creates nothing (200), a lookup returns only
the fields asked for. Both are outside ``Idempotency-Key`` handling (safe to repeat, and the
answer holds personal data the idempotency store would otherwise keep). The body is
validated before anything leaves the gateway (422 naming the field with a JSON pointer); the
adapter serving the capability (``[capabilities] identity``) asks the national registry and
audits the query with its purpose.
"""

from __future__ import annotations

from typing import Any, cast

from litestar import Request, post
from litestar.status_codes import HTTP_200_OK

from gateway.api.openapi import AUTHENTICATED, WITH_BODY, problem_responses, secured
from gateway.capabilities.identity import (
    CitizenLookup,
    IdentityCapability,
    LookupCitizen,
    Verification,
    VerifyCitizen,
)
from gateway.errors import (
    BulkheadFull,
    CircuitOpen,
    NotFound,
    OfficerNotPermitted,
    ProcedureNotLicensed,
    UpstreamAuthFailed,
    UpstreamFault,
    UpstreamProtocolError,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from gateway.runtime import Runtime
from gateway.security import Client

__all__ = ["lookup_citizen", "routes", "verify_citizen"]

_ERRORS = (
    "Errors are RFC 9457 problems: 422 `validation-failed` (with a JSON pointer per field), "
    "403 `procedure-not-licensed` (registry code 004) or `officer-not-permitted` (005), "
    "502 `upstream-fault` / `upstream-protocol-error`, 503 `circuit-open` (with Retry-After), "
    "504 `upstream-timeout`."
)


#: what a registry query can answer besides the route's own refusals
_QUERY_PROBLEMS = (
    *AUTHENTICATED,
    *WITH_BODY,
    ProcedureNotLicensed,
    OfficerNotPermitted,
    UpstreamFault,
    UpstreamProtocolError,
    UpstreamAuthFailed,
    UpstreamUnavailable,
    CircuitOpen,
    BulkheadFull,
    UpstreamTimeout,
)


def _capability(runtime: Runtime) -> IdentityCapability:
    return cast(IdentityCapability, runtime.registry.capability("identity"))


def _caller(request: Request[Any, Any, Any]) -> str:
    user = request.user
    return user.id if isinstance(user, Client) else "unknown"


@post(
    "/v1/citizens/verify",
    tags=["identity"],
    summary="Verify that an ID belongs to a citizen with this name and birth date",
    description=(
        "Answers `match`, the fields `checked`, the `mismatches` and a `reason` "
        "(`mismatch`, `not_found`). The `purpose` (procedure, dossier, officer) is mandatory "
        "and recorded in the audit log. " + _ERRORS
    ),
    status_code=HTTP_200_OK,
    responses=problem_responses(_QUERY_PROBLEMS),
    security=secured("identity:verify"),
    # a query, safe to repeat: an Idempotency-Key must not keep the citizen's answer in the
    # store for a day (Decree 13/2023: never longer than needed)
    opt={"scopes": ["identity:verify"], "no_idempotency": True},
)
async def verify_citizen(
    request: Request[Any, Any, Any], runtime: Runtime, data: VerifyCitizen
) -> Verification:
    return await _capability(runtime).verify(data, caller=_caller(request))


@post(
    "/v1/citizens/lookup",
    tags=["identity"],
    summary="The requested fields of one citizen, to pre-fill a form",
    description=(
        "Returns `citizen` with exactly the `fields` asked for (data minimisation); 404 when "
        "the registry has no such citizen. The `purpose` and `fields` are mandatory. " + _ERRORS
    ),
    status_code=HTTP_200_OK,
    responses=problem_responses(_QUERY_PROBLEMS, NotFound),
    security=secured("identity:lookup"),
    # a query, safe to repeat: an Idempotency-Key must not keep the citizen's answer in the
    # store for a day (Decree 13/2023: never longer than needed)
    opt={"scopes": ["identity:lookup"], "no_idempotency": True},
)
async def lookup_citizen(
    request: Request[Any, Any, Any], runtime: Runtime, data: LookupCitizen
) -> CitizenLookup:
    return await _capability(runtime).lookup(data, caller=_caller(request))


routes = [verify_citizen, lookup_citizen]
