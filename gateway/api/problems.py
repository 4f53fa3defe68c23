"""Every error leaves as an RFC 9457 ``application/problem+json`` document."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.types import ExceptionHandlersMap

from gateway.errors import (
    FieldError,
    GatewayError,
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
    ValidationFailed,
)

PROBLEM_MEDIA_TYPE = "application/problem+json"


def _request_id(request: Request[Any, Any, Any]) -> str | None:
    rid = request.scope.get("state", {}).get("request_id")
    return str(rid) if rid else None


def problem_response(request: Request[Any, Any, Any], error: GatewayError) -> Response[Any]:
    headers: dict[str, str] = {}
    if error.retry_after is not None:
        headers["Retry-After"] = str(int(max(1, round(error.retry_after))))
    return Response(
        error.problem(instance=request.url.path, request_id=_request_id(request)),
        status_code=error.status,
        media_type=PROBLEM_MEDIA_TYPE,
        headers=headers,
    )


def _pointer(key: str | None) -> str:
    if not key:
        return ""
    return "/" + "/".join(p.replace("~", "~0").replace("/", "~1") for p in str(key).split("."))


def _from_litestar(exc: HTTPException) -> GatewayError:
    if isinstance(exc, ValidationException):
        errors: list[FieldError] = []
        extra = exc.extra if isinstance(exc.extra, list) else []
        for item in extra:
            if isinstance(item, Mapping):
                errors.append(FieldError(_pointer(item.get("key")), str(item.get("message"))))
        if errors:
            return ValidationFailed(
                "; ".join(f"{e.pointer}: {e.message}" for e in errors), errors=errors
            )
        return InvalidRequest(str(exc.detail))
    if exc.status_code == 404:
        return NotFound("No such resource")
    if exc.status_code == 413:
        return PayloadTooLarge()
    err = GatewayError(str(exc.detail))
    # keep Litestar's status (405, 415 ...) while answering in our format
    err.status = exc.status_code  # type: ignore[misc]
    return err


def _handle_gateway_error(request: Request[Any, Any, Any], exc: GatewayError) -> Response[Any]:
    return problem_response(request, exc)


def _handle_http_exception(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    return problem_response(request, _from_litestar(exc))


def _handle_unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    # never a stack trace or an upstream secret: the log has the details, the caller the id
    return problem_response(request, GatewayError("An unexpected error occurred"))


def exception_handlers() -> ExceptionHandlersMap:
    return {
        GatewayError: _handle_gateway_error,
        HTTPException: _handle_http_exception,
        Exception: _handle_unexpected,
    }
