"""What the OpenAPI document says about errors and credentials, in one place.

Every route declares the problems it can answer with :func:`problem_responses`, naming the
classes of ``gateway.errors``: the document then shows, per status, the schema of an RFC 9457
problem (:class:`Problem`), which ``type`` URIs that status carries on this route and one
example per type. The descriptions and examples come from the error classes themselves, so
they cannot drift from what the gateway sends. :func:`secured` gives the security requirement
of a route with the scopes it needs (OpenAPI 3.1 allows role names for non-OAuth schemes).
:data:`IdempotencyKey` declares the ``Idempotency-Key`` header of a command route (a handler
parameter: the ``IdempotencyMiddleware`` has done the work before the handler runs).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated

from litestar.openapi import ResponseSpec
from litestar.openapi.spec import Example
from litestar.params import HeaderParameter
from pydantic import BaseModel, ConfigDict, Field

from gateway.api.problems import PROBLEM_MEDIA_TYPE
from gateway.errors import (
    GatewayError,
    InvalidRequest,
    MissingScope,
    NetworkNotAllowed,
    PayloadTooLarge,
    RateLimited,
    StoreUnavailable,
    Unauthenticated,
    ValidationFailed,
)
from gateway.idempotency import HEADER as IDEMPOTENCY_HEADER
from gateway.idempotency import MAX_KEY_LENGTH

__all__ = [
    "AUTHENTICATED",
    "WITH_BODY",
    "FieldErrorModel",
    "IdempotencyKey",
    "Problem",
    "problem_responses",
    "secured",
]

#: what any authenticated route can answer before its handler runs
AUTHENTICATED: tuple[type[GatewayError], ...] = (
    InvalidRequest,
    Unauthenticated,
    MissingScope,
    NetworkNotAllowed,
    RateLimited,
    StoreUnavailable,
)
#: what a route taking a JSON body adds: malformed or oversized body, per-field refusals
WITH_BODY: tuple[type[GatewayError], ...] = (InvalidRequest, PayloadTooLarge, ValidationFailed)

#: ``idempotency_key: IdempotencyKey = None`` on a command handler (POST/PUT/PATCH/DELETE
#: under /v1 that does not opt out with ``opt={"no_idempotency": True}``) puts the header in
#: the OpenAPI document; a test checks that every such route has it
IdempotencyKey = Annotated[
    str | None,
    HeaderParameter(
        name=IDEMPOTENCY_HEADER.title(),
        required=False,
        description=(
            f"1 to {MAX_KEY_LENGTH} visible ASCII characters, unique per command (a UUID): a "
            "repeat with the same key and the same request gets the first answer again "
            "(header `Idempotent-Replayed: true`), kept 24 h by default "
            "(`jobs.idempotency_ttl`); the same key with another request is 422 "
            "`idempotency-key-reused`; while the first is still being answered, 409 "
            "`idempotency-key-in-flight`. Keys are scoped per client."
        ),
        examples=[Example(value="7f9c2b1e-4d5a-4c3b-9e8f-0a1b2c3d4e5f")],
    ),
]

#: the security schemes declared in ``gateway.app`` (OpenAPIConfig.components)
_SCHEMES = ("bearer", "apiKey")


class FieldErrorModel(BaseModel):
    """One refused field."""

    pointer: str = Field(
        description="RFC 6901 JSON pointer into the body (`/applicant/id_number`), or where a "
        "parameter lives (`/query/limit`, `/path/code`, `/header/idempotency-key`)",
        examples=["/purpose/officer_id"],
    )
    message: str = Field(description="what is wrong with it", examples=["Field required"])


class Problem(BaseModel):
    """An RFC 9457 problem document (`application/problem+json`)."""

    model_config = ConfigDict(extra="allow", title="Problem")

    type: str = Field(
        description="stable URI `urn:dvc-gateway:problem:<slug>`: match on this",
        examples=["urn:dvc-gateway:problem:validation-failed"],
    )
    title: str = Field(description="short human summary of the type (English)")
    status: int = Field(description="the HTTP status, repeated")
    detail: str = Field(description="what went wrong with this request; never personal data")
    instance: str | None = Field(None, description="the request path")
    request_id: str | None = Field(
        None, description="the `X-Request-ID` of the request: quote it to the operators"
    )
    errors: list[FieldErrorModel] | None = Field(
        None, description="validation problems only: every refused field"
    )
    retry_after: int | None = Field(
        None, description="seconds to wait before retrying (also in the `Retry-After` header)"
    )
    system: str | None = Field(
        None, description="upstream problems: the national system (adapter) concerned"
    )


def _example(cls: type[GatewayError]) -> Example:
    error = cls(extra={"system": "population_db"}) if cls.slug.startswith("upstream") else cls()
    if cls is ValidationFailed:
        error = ValidationFailed.field("/purpose/officer_id", "Field required")
    if cls.retryable:
        error.retry_after = 5
    body = error.problem(instance="/v1/...", request_id="01KCA2V7XZ5E2S1D0A9B8C7D6E")
    # no Example.id: Litestar would print it into the document, where OpenAPI has no such field
    return Example(summary=f"{cls.slug}: {cls.title}", value=body)


def problem_responses(
    *classes: type[GatewayError] | Iterable[type[GatewayError]],
) -> dict[int, ResponseSpec]:
    """``responses=`` for a route: one problem response per status among ``classes``
    (error classes or tuples of them, e.g. :data:`AUTHENTICATED`), duplicates ignored."""
    flat: list[type[GatewayError]] = []
    for item in classes:
        for cls in (item,) if isinstance(item, type) else item:
            if cls not in flat:
                flat.append(cls)
    by_status: dict[int, list[type[GatewayError]]] = {}
    for cls in flat:
        by_status.setdefault(cls.status, []).append(cls)
    out: dict[int, ResponseSpec] = {}
    for status in sorted(by_status):
        group = by_status[status]
        kinds = "; ".join(
            f"`{c.slug}`: {c.title}" + (" (retry after `Retry-After`)" if c.retryable else "")
            for c in group
        )
        out[status] = ResponseSpec(
            data_container=Problem,
            description=f"Problem document. Types: {kinds}.",
            media_type=PROBLEM_MEDIA_TYPE,
            generate_examples=False,
            examples=[_example(c) for c in group],
        )
    return out


def secured(*scopes: str) -> list[dict[str, list[str]]]:
    """``security=`` for a route: a key by either scheme, holding ``scopes``."""
    return [{scheme: list(scopes)} for scheme in _SCHEMES]
