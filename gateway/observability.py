"""Request ids, structured logs that never carry secrets or personal data in clear, metrics.

- :class:`RequestContextMiddleware` (outermost): accepts a well-formed ``X-Request-ID`` or makes
  one, puts it in ``request.state.request_id`` and :data:`request_id_var` (outbound calls, jobs
  and audit records read it there), returns it on the response, records the HTTP metrics and
  writes one access-log line per request (route template, not the raw path).
- :func:`configure_logging`: structlog and the standard library share one handler and one
  processor chain, so uvicorn's and httpx's lines are masked exactly like ours. JSON lines, or
  console rendering on a terminal.
- :class:`PiiMasker` and :func:`redact_secrets`: processors run on every line, ours or foreign.
"""

from __future__ import annotations

import contextvars
import logging
import re
import sys
import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, TextIO

import structlog
from litestar.enums import ScopeType
from prometheus_client import Counter, Gauge, Histogram
from structlog.typing import EventDict, Processor, WrappedLogger
from ulid import ULID

if TYPE_CHECKING:
    from litestar.types import ASGIApp, Message, Receive, Scope, Send

    from gateway.settings import LoggingSettings

__all__ = [
    "HTTP_REQUESTS",
    "HTTP_REQUEST_DURATION",
    "REQUEST_ID_HEADER",
    "PiiMasker",
    "RequestContextMiddleware",
    "add_request_id",
    "configure_logging",
    "current_request_id",
    "new_request_id",
    "redact_secrets",
    "request_id_var",
    "valid_request_id",
]

REQUEST_ID_HEADER = "X-Request-ID"
_REQUEST_ID_HEADER_BYTES = REQUEST_ID_HEADER.lower().encode("latin-1")
#: ids we accept from callers: short and without anything that could forge a log line
_REQUEST_ID_PATTERN = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

#: the request id of the work in progress (an HTTP request, or the job being run)
request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "gateway_request_id", default=None
)

HTTP_REQUESTS = Counter(
    "gateway_http_requests_total",
    "HTTP requests answered, by method, route template and status",
    ["method", "route", "status"],
)
HTTP_REQUEST_DURATION = Histogram(
    "gateway_http_request_duration_seconds",
    "Time to answer an HTTP request, by method and route template",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
HTTP_IN_FLIGHT = Gauge("gateway_http_requests_in_flight", "HTTP requests being answered")

log = structlog.get_logger(__name__)


def new_request_id() -> str:
    """A fresh id: a ULID, so ids sort by time in logs and audit queries."""
    return str(ULID())


def valid_request_id(value: str | None) -> str | None:
    """The caller's id if it is safe to echo and log, else None."""
    if value and _REQUEST_ID_PATTERN.match(value):
        return value
    return None


def current_request_id() -> str | None:
    return request_id_var.get()


# ---------------------------------------------------------------- the middleware


class RequestContextMiddleware:
    """Request id, HTTP metrics and the access log. Must be the outermost middleware."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        incoming = None
        for key, value in scope["headers"]:
            if key == _REQUEST_ID_HEADER_BYTES:
                incoming = value.decode("latin-1")
                break
        request_id = valid_request_id(incoming) or new_request_id()
        scope["state"]["request_id"] = request_id
        token = request_id_var.set(request_id)
        header_value = request_id.encode("latin-1")
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [
                    (k, v) for k, v in message.get("headers", ()) if k != _REQUEST_ID_HEADER_BYTES
                ]
                headers.append((_REQUEST_ID_HEADER_BYTES, header_value))
                message["headers"] = headers
            await send(message)

        HTTP_IN_FLIGHT.inc()
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            HTTP_IN_FLIGHT.dec()
            elapsed = time.perf_counter() - started
            method = str(scope.get("method", ""))
            route = scope.get("path_template") or "<unmatched>"
            HTTP_REQUESTS.labels(method, route, str(status)).inc()
            HTTP_REQUEST_DURATION.labels(method, route).observe(elapsed)
            user = scope.get("user")
            log.info(
                "http.request",
                method=method,
                route=route,
                status=status,
                duration_ms=round(elapsed * 1000, 2),
                client_id=getattr(user, "id", None),
            )
            request_id_var.reset(token)


def record_unrouted(method: str, status: int) -> None:
    """Count a request that never reached a route (404/405), which the middleware cannot see."""
    HTTP_REQUESTS.labels(method, "<unmatched>", str(status)).inc()


# ---------------------------------------------------------------- log processors

#: keys whose values are credentials: dropped from every line whatever their content
SECRET_KEYS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "proxy_authorization",
        "x-api-key",
        "x_api_key",
        "api_key",
        "apikey",
        "password",
        "passwd",
        "secret",
        "client_secret",
        "token",
        "access_token",
        "refresh_token",
        "id_token",
        "cookie",
        "set-cookie",
        "set_cookie",
        "session",
        "session_id",
        "key_password",
    }
)
REDACTED = "[REDACTED]"

_SECRET_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # our API keys and Standard Webhooks secrets, wherever they appear in a string
    (re.compile(r"dvcgw_[A-Za-z0-9_-]{8,}"), "dvcgw_" + REDACTED),
    (re.compile(r"whsec_[A-Za-z0-9+/=]{8,}"), "whsec_" + REDACTED),
    # Authorization values quoted in a message
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{6,}"), r"\1 " + REDACTED),
    # credentials in query strings and key=value text
    (
        re.compile(
            r"(?i)\b(api[_-]?key|access_token|refresh_token|token|secret|password|passwd)"
            r"=[^&\s\"',;]+"
        ),
        r"\1=" + REDACTED,
    ),
    # user:password@ in URLs (a Redis URL, say)
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s:@]*:[^/\s@]+@"), r"\1" + REDACTED + "@"),
)


def _redact_text(text: str) -> str:
    for pattern, replacement in _SECRET_PATTERNS:
        if pattern.search(text):
            text = pattern.sub(replacement, text)
    return text


def _is_secret(key: object, value: Any) -> bool:
    # numbers are never credentials (a lock's fencing "token" is a counter, worth seeing)
    return (
        isinstance(key, str)
        and key.lower() in SECRET_KEYS
        and not isinstance(value, int | float)
        and value is not None
    )


def _redact(value: Any) -> Any:
    if isinstance(value, str):
        return _redact_text(value)
    if isinstance(value, Mapping):
        return {k: (REDACTED if _is_secret(k, v) else _redact(v)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact(v) for v in value]
    return value


def redact_secrets(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """Drop credential values: by key name (``authorization``, ``token`` ...) and by shape
    (``dvcgw_`` keys, ``Bearer`` values, ``password=`` in URLs) inside any string."""
    for key, value in list(event_dict.items()):
        event_dict[key] = REDACTED if _is_secret(key, value) else _redact(value)
    return event_dict


# 12-digit citizen ID (CCCD) and 9-digit legacy ID (CMND): bounded by non-alphanumerics so
# digits inside hex ids, longer numbers and decimals (0.123456789) are left alone
_NOT_AFTER = r"(?<![0-9A-Za-z+])(?<!\d\.)(?<!\d,)"
_NOT_BEFORE = r"(?![0-9A-Za-z])(?![.,]\d)"
_ID12 = re.compile(_NOT_AFTER + r"\d{12}" + _NOT_BEFORE)
_ID9 = re.compile(_NOT_AFTER + r"\d{9}" + _NOT_BEFORE)
# Vietnamese phones: 0 + 9 or 10 digits, or +84 / 84 then the same without the 0, optionally
# grouped with spaces, dots or dashes
_PHONE = re.compile(_NOT_AFTER + r"(?:\+84[ .-]?|84|0)[1-9](?:[ .-]?\d){8,9}" + _NOT_BEFORE)
#: integers of these lengths are ID numbers (a CCCD starts with 0, so it loses a digit or two
#: as an int); 10 digits are left alone, they are epoch seconds far more often
_ID_INT_DIGITS = frozenset({9, 11, 12})
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@((?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,})")
MASKED = "***"


def _mask_digits(match: re.Match[str]) -> str:
    # keep the last two digits: enough to tell two people apart in a log, too little to identify
    text = match.group(0)
    digits = [c for c in text if c.isdigit()]
    return "*" * (len(digits) - 2) + "".join(digits[-2:])


def mask_text(text: str) -> str:
    """Mask ID numbers, phone numbers and e-mail addresses in free text."""
    if not any(c.isdigit() for c in text) and "@" not in text:
        return text
    text = _ID12.sub(_mask_digits, text)
    text = _PHONE.sub(_mask_digits, text)
    text = _ID9.sub(_mask_digits, text)
    if "@" in text:
        text = _EMAIL.sub(lambda m: MASKED + "@" + m.group(1), text)
    return text


class PiiMasker:
    """Masks personal data in every value of a log line.

    Values of the configured name fields (``logging.masked_fields``: names, addresses, birth
    dates) are replaced whole, at any depth; ID numbers, phones and e-mails are masked inside
    every string, and integers of ID-number length are masked too.
    """

    def __init__(self, masked_fields: Iterable[str] = ()) -> None:
        self.masked_fields = frozenset(f.lower() for f in masked_fields)

    def _mask(self, value: Any) -> Any:
        if isinstance(value, str):
            return mask_text(value)
        if isinstance(value, bool):
            return value
        if isinstance(value, int):
            digits = str(abs(value))
            if len(digits) in _ID_INT_DIGITS:
                return "*" * (len(digits) - 2) + digits[-2:]
            return value
        if isinstance(value, Mapping):
            return {
                k: (
                    MASKED
                    if isinstance(k, str) and k.lower() in self.masked_fields
                    else self._mask(v)
                )
                for k, v in value.items()
            }
        if isinstance(value, list | tuple | set | frozenset):
            return [self._mask(v) for v in value]
        return value

    def __call__(self, logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
        for key, value in list(event_dict.items()):
            if key.lower() in self.masked_fields:
                event_dict[key] = MASKED
            elif key not in ("timestamp", "level", "logger", "request_id"):
                event_dict[key] = self._mask(value)
        return event_dict


def add_request_id(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """Stamp the current request (or job) id on the line."""
    if "request_id" not in event_dict:
        request_id = request_id_var.get()
        if request_id is not None:
            event_dict["request_id"] = request_id
    return event_dict


# ---------------------------------------------------------------- configuration


class _GatewayHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Marks the handler configure_logging installed, so a second call replaces it."""


#: third-party loggers that configure themselves when their library starts
_FOREIGN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "httpx", "httpcore", "litestar")


def configure_logging(settings: LoggingSettings, *, stream: TextIO | None = None) -> None:
    """Route structlog and the standard library through one masked, rendered handler.

    Idempotent: a later call (another app in the same process, a test) replaces the handler.
    """
    stream = stream if stream is not None else sys.stderr
    if settings.format == "auto":
        console = bool(getattr(stream, "isatty", lambda: False)())
    else:
        console = settings.format == "console"
    renderer: Processor = (
        structlog.dev.ConsoleRenderer(colors=False)
        if console
        else structlog.processors.JSONRenderer(ensure_ascii=False)
    )
    timestamper = structlog.processors.TimeStamper(fmt="iso", utc=True)
    pre_chain: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        add_request_id,
        timestamper,
    ]
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*pre_chain, structlog.stdlib.ExtraAdder()],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            redact_secrets,
            PiiMasker(settings.masked_fields),
            renderer,
        ],
    )
    handler = _GatewayHandler(stream)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _GatewayHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(settings.level)
    # servers and clients we embed may have given their loggers handlers of their own (or,
    # like uvicorn with access_log off, cut them from the root): every line must pass through
    # the one masked handler above, so they propagate to it and keep nothing of their own
    for name in _FOREIGN_LOGGERS:
        foreign = logging.getLogger(name)
        foreign.handlers.clear()
        foreign.propagate = True
        foreign.setLevel(logging.NOTSET)
    # one line per outbound call is gateway.outbound's job; httpx's own would double it
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *pre_chain,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        # loggers made at import time must follow a later reconfiguration
        cache_logger_on_first_use=False,
    )
