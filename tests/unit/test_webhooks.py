"""Webhook signing, matching, retry policy and publishing (real SQLite store and JobQueue).

Delivery over HTTP is in tests/integration/test_webhooks_delivery.py.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from gateway.errors import ConfigurationError
from gateway.jobs import JobQueue, backoff_delay
from gateway.observability import request_id_var
from gateway.settings import JobSettings, WebhookEndpointSettings, WebhookSettings
from gateway.store.base import Event
from gateway.store.sqlite import SqliteStore
from gateway.webhooks import (
    DELIVER_KIND,
    EventPublisher,
    delivery_policy,
    event_body,
    event_to_dict,
    parse_retry_after,
    sign_headers,
    type_matches,
)


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def endpoint(id: str, *types: str, enabled: bool = True) -> WebhookEndpointSettings:
    return WebhookEndpointSettings.model_validate(
        {
            "id": id,
            "url": f"http://127.0.0.1:9/{id}",
            "secret": new_secret(),
            "event_types": list(types),
            "enabled": enabled,
        }
    )


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    s = SqliteStore(tmp_path / "gateway.db")
    await s.open()
    yield s
    await s.close()


# ---------------------------------------------------------------- signing


def _event() -> Event:
    return Event(
        id="01JABCDEFGHJKMNPQRSTVWXYZ0",
        type="dossier.received",
        occurred_at=1_767_225_600.25,
        data={"dossier_code": "H01.01-260101-0001", "title": "Đăng ký khai sinh"},
        request_id="req-1",
        subject="H01.01-260101-0001",
    )


def test_signature_verifies_with_the_standardwebhooks_receiver() -> None:
    secret = new_secret()
    body = event_body(_event())
    headers = sign_headers(secret, "01JABCDEFGHJKMNPQRSTVWXYZ0", body, time.time())
    assert set(headers) == {"webhook-id", "webhook-timestamp", "webhook-signature"}
    assert headers["webhook-signature"].startswith("v1,")
    payload = Webhook(secret).verify(body, headers)
    assert payload["id"] == "01JABCDEFGHJKMNPQRSTVWXYZ0"
    assert payload["data"]["title"] == "Đăng ký khai sinh"  # UTF-8 body signed as sent
    assert payload["occurred_at"] == "2026-01-01T00:00:00.250Z"


def test_a_tampered_body_fails_verification() -> None:
    secret = new_secret()
    body = event_body(_event())
    headers = sign_headers(secret, "msg_1", body, time.time())
    tampered = body.replace(b"0001", b"0002")
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(tampered, headers)


def test_another_secret_or_id_fails_verification() -> None:
    body = event_body(_event())
    headers = sign_headers(new_secret(), "msg_1", body, time.time())
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(body, headers)


def test_an_old_timestamp_fails_verification() -> None:
    secret = new_secret()
    body = event_body(_event())
    headers = sign_headers(secret, "msg_1", body, time.time() - 3600)
    with pytest.raises(WebhookVerificationError, match="too old"):
        Webhook(secret).verify(body, headers)


def test_event_dict_shape() -> None:
    d = event_to_dict(_event())
    assert list(d) == ["id", "type", "occurred_at", "subject", "request_id", "data"]
    assert json.loads(event_body(_event())) == d


# ---------------------------------------------------------------- matching, Retry-After, policy


def test_type_matches() -> None:
    assert type_matches([], "anything")
    assert type_matches(["dossier.received"], "dossier.received")
    assert not type_matches(["dossier.received"], "dossier.returned")
    assert type_matches(["dossier.*"], "dossier.returned")
    assert not type_matches(["dossier.*"], "dossiers.x")
    assert type_matches(["payment.completed", "*"], "job.failed")


def test_parse_retry_after() -> None:
    now = 1_767_225_600.0
    assert parse_retry_after("120", now=now) == 120.0
    assert parse_retry_after("Thu, 01 Jan 2026 00:01:00 GMT", now=now) == 60.0
    assert parse_retry_after("Wed, 31 Dec 2025 00:00:00 GMT", now=now) == 0.0
    assert parse_retry_after("soon", now=now) is None
    assert parse_retry_after(None, now=now) is None
    assert parse_retry_after("99999999", now=now) == 24 * 3600.0


def test_delivery_policy_follows_the_retry_schedule() -> None:
    import random

    settings = WebhookSettings()
    policy = delivery_policy(settings)
    assert policy.max_attempts == 10
    rng = random.Random(1)
    waits = [backoff_delay(policy, n, rng) for n in range(1, 11)]
    # after each failure: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 14 h, 20 h, 24 h, then no more
    assert waits == [5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 50400.0, 72000.0, 86400.0, None]
    assert policy.deadline > sum(settings.retry_schedule)


def test_bad_endpoint_configuration_is_refused(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "x.db")
    jobs = JobQueue(JobSettings(), store)
    no_secret = WebhookEndpointSettings(id="a", url="http://127.0.0.1:1/")
    with pytest.raises(ConfigurationError, match="secret"):
        EventPublisher(store, WebhookSettings(endpoints=[no_secret]), jobs)
    dup = [endpoint("a"), endpoint("a")]
    with pytest.raises(ConfigurationError, match="duplicate"):
        EventPublisher(store, WebhookSettings(endpoints=dup), jobs)
    bad = WebhookEndpointSettings.model_validate(
        {"id": "b", "url": "ftp://x/", "secret": new_secret()}
    )
    with pytest.raises(ConfigurationError, match="url"):
        EventPublisher(store, WebhookSettings(endpoints=[bad]), jobs)


# ---------------------------------------------------------------- publishing


async def test_publish_appends_and_enqueues_one_delivery_per_matching_endpoint(
    store: SqliteStore,
) -> None:
    settings = WebhookSettings(
        endpoints=[
            endpoint("all"),
            endpoint("dossiers", "dossier.*"),
            endpoint("payments", "payment.completed"),
            endpoint("off", enabled=False),
        ]
    )
    jobs = JobQueue(JobSettings(), store)
    publisher = EventPublisher(store, settings, jobs)
    token = request_id_var.set("req-77")
    try:
        event = await publisher.publish("dossier.received", {"dossier_code": "D-1"}, subject="D-1")
    finally:
        request_id_var.reset(token)
    assert event.request_id == "req-77"
    assert await store.events.get(event.id) == event
    assert [e.id for e in await store.events.list_after(None)] == [event.id]
    assert await store.jobs.count_queued(DELIVER_KIND) == 2
    queued = []
    while (job := await store.jobs.lease("t", visibility=30, now=time.time())) is not None:
        queued.append(job)
    assert sorted(j.payload["endpoint_id"] for j in queued) == ["all", "dossiers"]
    assert all(j.payload["event_id"] == event.id for j in queued)
    assert all(j.ordering_key is None for j in queued)


async def test_publish_again_with_the_same_id_does_not_duplicate(store: SqliteStore) -> None:
    jobs = JobQueue(JobSettings(), store)
    publisher = EventPublisher(store, WebhookSettings(endpoints=[endpoint("a")]), jobs)
    first = await publisher.publish("payment.completed", {"amount": 10000})
    again = await publisher.publish("payment.completed", {"amount": 1}, event_id=first.id)
    assert again == first
    assert len(await store.events.list_after(None)) == 1
    assert await store.jobs.count_queued(DELIVER_KIND) == 1


async def test_disabled_endpoints_get_no_deliveries_until_enabled(store: SqliteStore) -> None:
    jobs = JobQueue(JobSettings(), store)
    publisher = EventPublisher(store, WebhookSettings(endpoints=[endpoint("a")]), jobs)
    await publisher.disable("a", "the receiver answered 410 Gone")
    [status] = await publisher.statuses()
    assert status.state == "disabled"
    assert status.disabled_reason == "the receiver answered 410 Gone"
    await publisher.publish("x.y", {})
    assert await store.jobs.count_queued(DELIVER_KIND) == 0
    assert await publisher.enable("a")
    await publisher.publish("x.y", {})
    assert await store.jobs.count_queued(DELIVER_KIND) == 1
    [status] = await publisher.statuses()
    assert status.state == "delivering"


async def test_event_data_must_be_plain_json(store: SqliteStore) -> None:
    publisher = EventPublisher(store, WebhookSettings(), JobQueue(JobSettings(), store))
    with pytest.raises(TypeError, match="plain JSON"):
        await publisher.publish("x.y", {"when": object()})
