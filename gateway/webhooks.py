"""Canonical events for the provincial system, delivered by webhook (Standard Webhooks).

:meth:`EventPublisher.publish` appends an event to ``store.events`` (the pull feed,
``GET /v1/events``) and enqueues one ``webhook.deliver`` job per configured endpoint that
wants the event's type and is not disabled. :class:`WebhookDeliverer` is that job's handler:
it signs the event per the Standard Webhooks specification (``webhook-id`` = the event id,
stable across retries so receivers can deduplicate; ``webhook-timestamp`` = the attempt's
time; ``webhook-signature`` = ``v1,<base64 HMAC-SHA256>``) and POSTs it.

Only a 2xx answer counts. 410 Gone disables the endpoint (its queued deliveries dead-letter,
replayable once ops re-enable it). 429 and 503 honour ``Retry-After``. Anything else is
retried on ``webhooks.retry_schedule`` (the job kind's policy); an exhausted delivery is
dead-lettered by the job machinery, so nothing is dropped. Each endpoint's state (delivering,
failing, disabled; last success and failure) is kept in the store for the dashboard.
"""

from __future__ import annotations

import email.utils
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

import httpx
import structlog
from prometheus_client import Counter, Histogram
from standardwebhooks import Webhook

from gateway.errors import (
    ConfigurationError,
    UpstreamError,
    UpstreamRateLimited,
    UpstreamRejected,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from gateway.observability import request_id_var
from gateway.settings import JobKindPolicy, WebhookEndpointSettings, WebhookSettings
from gateway.store.base import Event, Job, Store
from gateway.store.ids import new_id

if TYPE_CHECKING:
    from gateway.audit import Auditor
    from gateway.jobs import JobQueue

__all__ = [
    "DELIVER_KIND",
    "EndpointState",
    "EndpointStatus",
    "EventPublisher",
    "WebhookDeliverer",
    "delivery_policy",
    "enable_endpoint",
    "endpoint_statuses",
    "event_body",
    "event_to_dict",
    "parse_retry_after",
    "sign_headers",
    "type_matches",
]

log = structlog.get_logger(__name__)

DELIVER_KIND = "webhook.deliver"
USER_AGENT = "dvc-gateway-webhooks/1"
#: the longest Retry-After we take from a receiver; beyond it the schedule's deadline rules
MAX_RETRY_AFTER = 24 * 3600.0
#: how often a process records an endpoint's latest success in the store, seconds
SUCCESS_WRITE_INTERVAL = 1.0
#: the state a receiver may keep an endpoint in, shown on the dashboard
EndpointState = Literal["delivering", "failing", "disabled"]

DELIVERIES = Counter(
    "gateway_webhook_deliveries_total",
    "Webhook delivery attempts by endpoint and outcome (delivered, failed, gone)",
    ["endpoint", "outcome"],
)
DELIVERY_SECONDS = Histogram(
    "gateway_webhook_delivery_seconds", "Time a receiver took to answer", ["endpoint"]
)
EVENTS_PUBLISHED = Counter("gateway_events_published_total", "Events published", ["type"])


def _key(endpoint_id: str, what: str) -> str:
    return f"webhook:endpoint:{endpoint_id}:{what}"


# ---------------------------------------------------------------- the wire form


def _rfc3339(ts: float) -> str:
    return (
        datetime.fromtimestamp(ts, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


def event_to_dict(event: Event) -> dict[str, Any]:
    """The JSON an event travels as, in webhooks and in the pull feed alike."""
    return {
        "id": event.id,
        "type": event.type,
        "occurred_at": _rfc3339(event.occurred_at),
        "subject": event.subject,
        "request_id": event.request_id,
        "data": event.data,
    }


def event_body(event: Event) -> bytes:
    return json.dumps(event_to_dict(event), ensure_ascii=False, separators=(",", ":")).encode()


def sign_headers(secret: str, msg_id: str, body: bytes, timestamp: float) -> dict[str, str]:
    """The three Standard Webhooks headers for one attempt (``secret`` is ``whsec_...``)."""
    when = datetime.fromtimestamp(int(timestamp), tz=UTC)
    signature = Webhook(secret).sign(msg_id, when, body.decode("utf-8"))
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(timestamp)),
        "webhook-signature": signature,
    }


def type_matches(patterns: list[str], event_type: str) -> bool:
    """Empty = every type; ``"dossier.*"`` = every type starting with ``"dossier."``."""
    if not patterns:
        return True
    for pattern in patterns:
        if pattern == event_type or pattern == "*":
            return True
        if pattern.endswith(".*") and event_type.startswith(pattern[:-1]):
            return True
    return False


def parse_retry_after(value: str | None, *, now: float) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date), capped."""
    if not value:
        return None
    value = value.strip()
    seconds: float | None
    if value.isdigit():
        seconds = float(value)
    else:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = when.timestamp() - now
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def delivery_policy(settings: WebhookSettings) -> JobKindPolicy:
    """The ``webhook.deliver`` policy from ``webhooks.retry_schedule``: its first entry is the
    wait before the first attempt, the others the waits after each failure."""
    retries = [float(s) for s in settings.retry_schedule[1:]]
    total = sum(settings.retry_schedule)
    return JobKindPolicy(
        max_attempts=len(settings.retry_schedule),
        schedule=retries,
        # the schedule, plus room for Retry-After waits and for the queue being slow
        deadline=max(total * 1.5, total + 3600.0),
    )


# ---------------------------------------------------------------- endpoint state


@dataclass(frozen=True, slots=True)
class EndpointStatus:
    id: str
    url: str
    state: EndpointState
    event_types: list[str]
    last_success: float | None = None
    last_failure: float | None = None
    #: safe text (no URL, no secret) of the last failure
    last_error: str | None = None
    disabled_reason: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "url": self.url,
            "state": self.state,
            "event_types": list(self.event_types),
            "last_success": self.last_success,
            "last_failure": self.last_failure,
            "last_error": self.last_error,
            "disabled_reason": self.disabled_reason,
        }


async def _disabled_reason(store: Store, endpoint: WebhookEndpointSettings) -> str | None:
    if not endpoint.enabled:
        return "disabled in the configuration"
    raw = await store.get(_key(endpoint.id, "disabled"))
    if raw is None:
        return None
    return str(json.loads(raw).get("reason") or "disabled")


async def endpoint_statuses(store: Store, settings: WebhookSettings) -> list[EndpointStatus]:
    """Every configured endpoint's state, for the dashboard and ``/ops/api``."""
    out: list[EndpointStatus] = []
    for endpoint in settings.endpoints:
        reason = await _disabled_reason(store, endpoint)
        ok_raw = await store.get(_key(endpoint.id, "last_success"))
        fail_raw = await store.get(_key(endpoint.id, "last_failure"))
        last_success = float(ok_raw) if ok_raw else None
        failure = json.loads(fail_raw) if fail_raw else None
        last_failure = float(failure["at"]) if failure else None
        state: EndpointState
        if reason is not None:
            state = "disabled"
        elif last_failure is not None and (last_success is None or last_failure > last_success):
            state = "failing"
        else:
            state = "delivering"
        out.append(
            EndpointStatus(
                id=endpoint.id,
                url=endpoint.url,
                state=state,
                event_types=list(endpoint.event_types),
                last_success=last_success,
                last_failure=last_failure,
                last_error=failure.get("error") if failure else None,
                disabled_reason=reason,
            )
        )
    return out


async def enable_endpoint(store: Store, endpoint_id: str) -> bool:
    """Re-enable an endpoint a 410 disabled; True if it was disabled. Replay its dead
    letters (``gateway dlq replay``) to send what it missed."""
    return await store.delete(_key(endpoint_id, "disabled"))


def _check_endpoints(settings: WebhookSettings) -> None:
    seen: set[str] = set()
    for i, endpoint in enumerate(settings.endpoints):
        where = f"webhooks.endpoints[{i}] ({endpoint.id})"
        if endpoint.id in seen:
            raise ConfigurationError(f"{where}: duplicate endpoint id")
        seen.add(endpoint.id)
        if not endpoint.url.startswith(("https://", "http://")):
            raise ConfigurationError(f"{where}.url: must be an http(s) URL")
        if endpoint.secret is None:
            raise ConfigurationError(f"{where}.secret: a whsec_ secret is required")
        secret = endpoint.secret.get_secret_value()
        if not secret.startswith("whsec_"):
            raise ConfigurationError(f"{where}.secret: must start with whsec_")
        try:
            Webhook(secret)
        except Exception:
            raise ConfigurationError(f"{where}.secret: not valid base64 after whsec_") from None


# ---------------------------------------------------------------- publishing


class EventPublisher:
    """Appends events and fans them out to the webhook endpoints. One per runtime."""

    def __init__(self, store: Store, settings: WebhookSettings, jobs: JobQueue) -> None:
        _check_endpoints(settings)
        self._store = store
        self._settings = settings
        self._jobs = jobs

    @property
    def settings(self) -> WebhookSettings:
        return self._settings

    async def publish(
        self,
        type: str,
        data: Mapping[str, Any],
        *,
        subject: str | None = None,
        event_id: str | None = None,
    ) -> Event:
        """Append the event and enqueue its deliveries; returns the stored event.

        ``event_id`` lets a caller finish an interrupted publish (the callback intake after
        a crash): the event is appended once and each endpoint gets one delivery job, since
        the jobs carry a dedupe key per (endpoint, event). ``data`` must be plain JSON and
        hold no more personal data than the provincial system needs."""
        event: Event | None = None
        if event_id is not None:
            event = await self._store.events.get(event_id)
        if event is None:
            try:
                plain = json.loads(json.dumps(dict(data), ensure_ascii=False, allow_nan=False))
            except (TypeError, ValueError) as exc:
                raise TypeError(f"event data for {type} is not plain JSON: {exc}") from None
            event = Event(
                id=event_id or new_id(),
                type=type,
                occurred_at=time.time(),
                data=plain,
                request_id=request_id_var.get(),
                subject=subject,
            )
            await self._store.events.append(event)
            EVENTS_PUBLISHED.labels(type).inc()
        run_at = None
        if self._settings.retry_schedule and self._settings.retry_schedule[0] > 0:
            run_at = time.time() + self._settings.retry_schedule[0]
        for endpoint in self._settings.endpoints:
            if not type_matches(endpoint.event_types, event.type):
                continue
            if await _disabled_reason(self._store, endpoint) is not None:
                continue  # the pull feed still has it
            await self._jobs.enqueue(
                DELIVER_KIND,
                {"endpoint_id": endpoint.id, "event_id": event.id},
                dedupe_key=f"webhook:{endpoint.id}:{event.id}",
                run_at=run_at,
            )
        return event

    async def statuses(self) -> list[EndpointStatus]:
        return await endpoint_statuses(self._store, self._settings)

    async def disable(self, endpoint_id: str, reason: str) -> None:
        await self._store.set(
            _key(endpoint_id, "disabled"),
            json.dumps({"at": time.time(), "reason": reason}).encode(),
        )

    async def enable(self, endpoint_id: str) -> bool:
        return await enable_endpoint(self._store, endpoint_id)


# ---------------------------------------------------------------- delivering


class WebhookDeliverer:
    """The ``webhook.deliver`` job handler: one signed POST per attempt."""

    def __init__(
        self,
        store: Store,
        settings: WebhookSettings,
        *,
        auditor: Auditor | None = None,
        publisher: EventPublisher | None = None,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self._store = store
        self._settings = settings
        self._auditor = auditor
        self._publisher = publisher
        self._own_http = http is None
        #: made on first use, so a runtime that never delivers opens no client
        self._http = http
        self._endpoints = {e.id: e for e in settings.endpoints}
        #: when this process last wrote each endpoint's last_success (see _record_success)
        self._success_written: dict[str, float] = {}

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = httpx.AsyncClient(
                timeout=self._settings.timeout,
                follow_redirects=False,  # a redirect is not a delivery; and no SSRF by 3xx
                trust_env=False,
                headers={"user-agent": USER_AGENT},
                limits=httpx.Limits(max_connections=50, max_keepalive_connections=20),
            )
        return self._http

    async def aclose(self) -> None:
        if self._own_http and self._http is not None:
            await self._http.aclose()
            self._http = None

    async def __call__(self, job: Job) -> dict[str, Any] | None:
        endpoint_id = str(job.payload.get("endpoint_id", ""))
        event_id = str(job.payload.get("event_id", ""))
        endpoint = self._endpoints.get(endpoint_id)
        if endpoint is None:
            raise UpstreamRejected(f"webhook endpoint {endpoint_id!r} is no longer configured")
        reason = await _disabled_reason(self._store, endpoint)
        if reason is not None:
            raise UpstreamRejected(
                f"webhook endpoint {endpoint_id!r} is disabled ({reason}); "
                "replay this delivery once it is enabled again"
            )
        event = await self._store.events.get(event_id)
        if event is None:
            raise UpstreamRejected(f"event {event_id} is no longer in the store (retention)")
        assert endpoint.secret is not None  # checked at start-up
        return await self._deliver(endpoint, endpoint.secret.get_secret_value(), event, job)

    async def _deliver(
        self, endpoint: WebhookEndpointSettings, secret: str, event: Event, job: Job
    ) -> dict[str, Any]:
        body = event_body(event)
        now = time.time()
        headers = sign_headers(secret, event.id, body, now)
        headers["content-type"] = "application/json"
        request_id = request_id_var.get() or event.request_id
        if request_id:
            headers["x-request-id"] = request_id
        attempt = job.attempt_count + 1
        started = time.perf_counter()
        status: int | None = None
        error: UpstreamError | None
        try:
            response = await self._client().post(endpoint.url, content=body, headers=headers)
            status = response.status_code
            await response.aclose()
        except httpx.TimeoutException:
            error = UpstreamTimeout(
                f"webhook endpoint {endpoint.id} did not answer in {self._settings.timeout:g}s",
                system=f"webhook:{endpoint.id}",
            )
        except httpx.HTTPError as exc:
            error = UpstreamUnavailable(
                f"webhook endpoint {endpoint.id} unreachable ({type(exc).__name__})",
                system=f"webhook:{endpoint.id}",
            )
        else:
            error = self._judge(endpoint, response)
        latency_ms = (time.perf_counter() - started) * 1000.0
        DELIVERY_SECONDS.labels(endpoint.id).observe(latency_ms / 1000.0)
        ok = error is None
        outcome = "ok" if ok else ("gone" if status == 410 else "error")
        await self._audit(endpoint, event, body, status, latency_ms, outcome, attempt, error)
        if ok:
            DELIVERIES.labels(endpoint.id, "delivered").inc()
            await self._record_success(endpoint.id)
            return {"endpoint_id": endpoint.id, "event_id": event.id, "status": status}
        assert error is not None
        self._success_written.pop(endpoint.id, None)  # the next success is written at once
        DELIVERIES.labels(endpoint.id, "gone" if status == 410 else "failed").inc()
        await self._store.set(
            _key(endpoint.id, "last_failure"),
            json.dumps({"at": time.time(), "error": error.detail}).encode(),
        )
        if status == 410:
            await self._disable(endpoint.id)
        log.info(
            "webhook delivery failed",
            endpoint=endpoint.id,
            event_id=event.id,
            status=status,
            attempt=attempt,
            error=error.slug,
        )
        raise error

    async def _record_success(self, endpoint_id: str) -> None:
        """At most one write a second per endpoint and process while nothing fails: the
        dashboard needs the time to the second, not a store write per delivery. After a
        failure (seen here or recorded by another instance) the success is written at once."""
        now = time.time()
        written = self._success_written.get(endpoint_id, 0.0)
        if now - written < SUCCESS_WRITE_INTERVAL:
            raw = await self._store.get(_key(endpoint_id, "last_failure"))
            if raw is None or float(json.loads(raw)["at"]) < written:
                return
        self._success_written[endpoint_id] = now
        await self._store.set(_key(endpoint_id, "last_success"), repr(now).encode())

    def _judge(
        self, endpoint: WebhookEndpointSettings, response: httpx.Response
    ) -> UpstreamError | None:
        """None for a 2xx answer, else the error to raise (it decides retry or dead letter)."""
        status = response.status_code
        if 200 <= status < 300:
            return None
        system = f"webhook:{endpoint.id}"
        if status == 410:
            return UpstreamRejected(
                f"webhook endpoint {endpoint.id} answered 410 Gone; the endpoint is disabled",
                system=system,
            )
        if status in (429, 503):
            wait = parse_retry_after(response.headers.get("retry-after"), now=time.time())
            cls = UpstreamRateLimited if status == 429 else UpstreamUnavailable
            return cls(
                f"webhook endpoint {endpoint.id} answered {status}", system=system, retry_after=wait
            )
        return UpstreamUnavailable(
            f"webhook endpoint {endpoint.id} answered {status}", system=system
        )

    async def _disable(self, endpoint_id: str) -> None:
        reason = "the receiver answered 410 Gone"
        if self._publisher is not None:
            await self._publisher.disable(endpoint_id, reason)
        else:
            await self._store.set(
                _key(endpoint_id, "disabled"),
                json.dumps({"at": time.time(), "reason": reason}).encode(),
            )
        log.warning("webhook endpoint disabled", endpoint=endpoint_id, reason=reason)

    async def _audit(
        self,
        endpoint: WebhookEndpointSettings,
        event: Event,
        body: bytes,
        status: int | None,
        latency_ms: float,
        outcome: str,
        attempt: int,
        error: UpstreamError | None,
    ) -> None:
        if self._auditor is None:
            return
        dossier = event.data.get("dossier_code")
        await self._auditor.record(
            direction="outbound",
            actor=f"webhook:{endpoint.id}",
            operation=DELIVER_KIND,
            outcome=outcome,
            status=status,
            latency_ms=latency_ms,
            dossier_code=dossier if isinstance(dossier, str) else None,
            payload=body,
            detail=None if outcome == "ok" or error is None else error.detail,
            extra={"event_id": event.id, "event_type": event.type, "attempt": attempt},
        )
