"""Every error leaves as an RFC 9457 ``application/problem+json`` document.

A problem has a stable ``type`` (``urn:dvc-gateway:problem:<slug>``), ``title``, ``status``,
``detail``, ``instance`` (the request path) and ``request_id``. Validation errors add
``errors: [{pointer, message}]``: for a body field the pointer is an RFC 6901 JSON pointer
into the body (``/applicant/id_number``); for a parameter it names where the parameter lives
(``/query/limit``, ``/path/code``, ``/header/idempotency-key``, ``/cookie/name``).

Litestar's own refusals (validation, 404, 405, 413, malformed JSON) are translated here, so a
caller never sees two error formats. Unexpected exceptions are logged with their traceback and
answered with a bare 500 problem: no stack trace, no upstream secret, only the request id.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import structlog
from litestar import Request, Response
from litestar.enums import ScopeType
from litestar.exceptions import HTTPException, ValidationException

from gateway.errors import (
    ClientError,
    FieldError,
    Forbidden,
    GatewayError,
    InvalidRequest,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    Unauthenticated,
    ValidationFailed,
)
from gateway.observability import (
    REQUEST_ID_HEADER,
    new_request_id,
    record_unrouted,
    request_id_var,
    valid_request_id,
)

if TYPE_CHECKING:
    from litestar.types import ExceptionHandlersMap, Scope, Send
    from litestar.types.asgi_types import HTTPResponseBodyEvent, HTTPResponseStartEvent

__all__ = [
    "PROBLEM_MEDIA_TYPE",
    "exception_handlers",
    "problem_response",
    "send_problem",
    "to_gateway_error",
]

PROBLEM_MEDIA_TYPE = "application/problem+json"
#: at most this many field errors are spelled out in ``detail`` (all are in ``errors``)
_DETAIL_FIELDS = 5

log = structlog.get_logger(__name__)


def _ensure_request_id(scope: Scope) -> tuple[str, bool]:
    """(request id, whether the request-id middleware ran). Routing refusals (404, 405) happen
    before any middleware, so their id is made here, from the caller's header if well-formed."""
    state = scope.setdefault("state", {})
    existing = state.get("request_id")
    if existing:
        return str(existing), True
    rid = request_id_var.get()
    if rid is None:
        for key, value in scope.get("headers", ()):
            if key == b"x-request-id":
                rid = valid_request_id(value.decode("latin-1"))
                break
    rid = rid or new_request_id()
    state["request_id"] = rid
    return rid, False


def _problem_parts(
    scope: Scope, error: GatewayError, headers: Mapping[str, str] | None
) -> tuple[dict[str, Any], dict[str, str]]:
    request_id, seen_by_middleware = _ensure_request_id(scope)
    out: dict[str, str] = dict(headers or {})
    if error.retry_after is not None:
        out["Retry-After"] = str(int(max(1, round(error.retry_after))))
    if not seen_by_middleware:
        out[REQUEST_ID_HEADER] = request_id
        if scope.get("type") == ScopeType.HTTP:
            record_unrouted(str(scope.get("method", "")), error.status)
    body = error.problem(instance=scope.get("path"), request_id=request_id)
    return body, out


def problem_response(
    request: Request[Any, Any, Any],
    error: GatewayError,
    *,
    headers: Mapping[str, str] | None = None,
) -> Response[Any]:
    """The Litestar response for ``error``, for handlers that answer a problem themselves."""
    body, out = _problem_parts(request.scope, error, headers)
    return Response(body, status_code=error.status, media_type=PROBLEM_MEDIA_TYPE, headers=out)


async def send_problem(
    scope: Scope, send: Send, error: GatewayError, *, headers: Mapping[str, str] | None = None
) -> None:
    """Answer ``error`` straight on the ASGI channel (for middlewares, which must not raise)."""
    body, out = _problem_parts(scope, error, headers)
    payload = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    raw_headers = [
        (b"content-type", PROBLEM_MEDIA_TYPE.encode("latin-1")),
        (b"content-length", str(len(payload)).encode("latin-1")),
        *((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in out.items()),
    ]
    start: HTTPResponseStartEvent = {
        "type": "http.response.start",
        "status": error.status,
        "headers": raw_headers,
    }
    body_event: HTTPResponseBodyEvent = {
        "type": "http.response.body",
        "body": payload,
        "more_body": False,
    }
    await send(start)
    await send(body_event)


# ---------------------------------------------------------------- Litestar's refusals


def _escape(part: str) -> str:
    return part.replace("~", "~0").replace("/", "~1")


def _pointer(item: Mapping[str, Any]) -> str:
    key = item.get("key")
    source = item.get("source")
    parts = [_escape(p) for p in str(key).split(".")] if key not in (None, "") else []
    if source is not None:
        # a parameter, not a body field: say where it lives
        where = str(getattr(source, "value", source))
        return "/" + "/".join([where, *parts])
    return "/" + "/".join(parts) if parts else ""


def _validation_error(exc: ValidationException) -> GatewayError:
    errors: list[FieldError] = []
    extra = exc.extra if isinstance(exc.extra, list) else []
    for item in extra:
        if isinstance(item, Mapping):
            errors.append(FieldError(_pointer(item), str(item.get("message", "invalid"))))
    if not errors:
        # Litestar's own detail repeats the URL with its query string: never echo it
        return InvalidRequest("the request did not pass validation")
    shown = "; ".join(f"{e.pointer or '(body)'}: {e.message}" for e in errors[:_DETAIL_FIELDS])
    if len(errors) > _DETAIL_FIELDS:
        shown += f"; and {len(errors) - _DETAIL_FIELDS} more"
    return ValidationFailed(shown, errors=errors)


_generic_classes: dict[int, type[GatewayError]] = {}


def _generic(status: int) -> type[GatewayError]:
    """A problem class for a status the tree does not name (406, 415 ...), made once."""
    cls = _generic_classes.get(status)
    if cls is None:
        base: type[GatewayError] = ClientError if status < 500 else GatewayError
        cls = type(
            f"HttpStatus{status}",
            (base,),
            {"status": status, "slug": f"http-{status}", "title": f"HTTP {status}"},
        )
        _generic_classes[status] = cls
    return cls


def to_gateway_error(exc: HTTPException) -> tuple[GatewayError, dict[str, str]]:
    """Litestar's exception as one of ours, plus the headers it carried (``Allow`` on 405)."""
    headers = {k: v for k, v in (exc.headers or {}).items() if k.lower() in ("allow",)}
    status = exc.status_code
    if isinstance(exc, ValidationException):
        return _validation_error(exc), headers
    if status >= 500:
        return _generic(status)("the gateway could not answer this request"), headers
    detail = str(exc.detail) if exc.detail else None
    mapped: GatewayError
    if status == 404:
        mapped = NotFound("no such resource")
    elif status == 405:
        mapped = MethodNotAllowed(f"allowed methods: {headers.get('allow', 'none')}")
    elif status == 413:
        mapped = PayloadTooLarge("the request body exceeds the gateway's limit")
    elif status == 401:
        mapped = Unauthenticated(detail)
    elif status == 403:
        mapped = Forbidden(detail)
    elif status == 429:
        mapped = RateLimited(detail)
    elif status == 400:
        mapped = InvalidRequest(detail)
    else:
        mapped = _generic(status)(detail)
    return mapped, headers


def _handle_gateway_error(request: Request[Any, Any, Any], exc: GatewayError) -> Response[Any]:
    if exc.status >= 500:
        log.warning("http.error", error_type=exc.slug, status=exc.status, detail=exc.detail)
    return problem_response(request, exc)


def _handle_http_exception(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    error, headers = to_gateway_error(exc)
    if error.status >= 500:
        log.error("http.litestar_error", status=exc.status_code, detail=str(exc.detail))
    return problem_response(request, error, headers=headers)


def _handle_unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    # the traceback goes to the log (masked like every line); the caller gets only the id
    log.error(
        "http.unhandled_exception", exc_info=exc, path_template=request.scope.get("path_template")
    )
    return problem_response(request, GatewayError("an unexpected error occurred"))


def exception_handlers() -> ExceptionHandlersMap:
    return {
        GatewayError: _handle_gateway_error,
        HTTPException: _handle_http_exception,
        Exception: _handle_unexpected,
    }
