"""Callback intake over real HTTP, on both backends.

A test route plays an adapter's ``callbacks.py``: it checks the system's own checksum (an
HMAC header here), then hands the message to ``runtime.callbacks``. The national system is
an HTTP client posting to the gateway served by uvicorn; the provincial system is a
``WebhookReceiver`` verifying Standard Webhooks signatures.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from litestar import Request, Response, post
from support.jobs_app import drop_redis_prefix, gateway_settings, make_client, store_settings
from support.uvicorn_server import serving

from gateway.app import create_app
from gateway.callbacks import TAKEOVER_SECONDS, _Claim, dedupe_key
from gateway.errors import SignatureInvalid
from gateway.runtime import Runtime
from gateway.store.base import Attempt, AuditQuery
from gateway.webhook_receiver import Answer, WebhookReceiver

SYSTEM = "testpay"
CHECKSUM_KEY = b"testpay-shared-key"
NATIONAL = make_client("testpay-callbacks", f"callbacks:{SYSTEM}")
CITIZEN_ID = "079012345678"


def checksum(body: bytes) -> str:
    return hmac.new(CHECKSUM_KEY, body, hashlib.sha256).hexdigest()


@post(f"/callbacks/{SYSTEM}/payment", opt={"scopes": [f"callbacks:{SYSTEM}"]})
async def payment_callback(request: Request[Any, Any, Any], runtime: Runtime) -> Response[bytes]:
    """What an adapter's callbacks.py does, in miniature."""
    body = await request.body()
    if not hmac.compare_digest(request.headers.get("x-checksum", ""), checksum(body)):
        await runtime.callbacks.refuse(
            system=SYSTEM, reason="checksum mismatch", actor=request.user.id, payload=body
        )
        raise SignatureInvalid("the checksum does not match the message")
    message = json.loads(body)
    reply = await runtime.callbacks.accept(
        system=SYSTEM,
        event_id=message["transaction_id"],
        event_type="payment.completed",
        data={"dossier_code": message["dossier_code"], "amount": message["amount"]},
        subject=message["dossier_code"],
        # the system's expected answer; a different one for each copy, to show the first is
        # the one kept
        reply=json.dumps({"code": "00", "ref": message.get("nonce")}).encode(),
        media_type="application/json",
        actor=request.user.id,
        payload=body,
        subjects=[message["payer_id"]],
        dossier_code=message["dossier_code"],
    )
    response = reply.to_response()
    response.headers["x-duplicate"] = "true" if reply.duplicate else "false"
    response.headers["x-event-id"] = reply.event_id
    return response


@dataclass
class Rig:
    runtime: Runtime
    gateway: str
    receiver: WebhookReceiver
    secret: str


@pytest.fixture(params=["sqlite", "redis"])
async def rig(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Rig]:
    redis_url = request.getfixturevalue("redis_url") if request.param == "redis" else None
    store, prefix = store_settings(request.param, tmp_path, redis_url)
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    receiver = WebhookReceiver(secret)
    async with serving(receiver) as receiver_url:
        settings = gateway_settings(
            store,
            tmp_path,
            clients=(NATIONAL,),
            jobs={"workers": 2, "poll_interval": 0.02},
            webhooks={
                "endpoints": [{"id": "province", "url": receiver_url, "secret": secret}],
                "retry_schedule": [0, 0.05],
            },
        )
        app = create_app(settings)
        app.register(payment_callback)
        async with serving(app) as gateway_url:
            yield Rig(app.state.runtime, gateway_url, receiver, secret)
    if redis_url is not None:
        await drop_redis_prefix(redis_url, prefix)


def message(transaction_id: str, **extra: Any) -> bytes:
    return json.dumps(
        {
            "transaction_id": transaction_id,
            "dossier_code": "H01.01-260101-0042",
            "amount": 150000,
            "payer_id": CITIZEN_ID,
            **extra,
        }
    ).encode()


async def post_callback(http: httpx.AsyncClient, url: str, body: bytes) -> httpx.Response:
    return await http.post(
        f"{url}/callbacks/{SYSTEM}/payment",
        content=body,
        headers={**NATIONAL.headers, "x-checksum": checksum(body)},
    )


async def test_a_callback_is_answered_forwarded_once_and_audited(rig: Rig) -> None:
    async with httpx.AsyncClient() as http:
        first = await post_callback(http, rig.gateway, message("TX-1", nonce="a"))
        assert first.status_code == 200, first.text
        assert first.json() == {"code": "00", "ref": "a"}
        assert first.headers["content-type"].startswith("application/json")
        assert first.headers["x-duplicate"] == "false"

        # the system retries (our answer was lost): same answer, not forwarded again
        again = await post_callback(http, rig.gateway, message("TX-1", nonce="b"))
        assert again.status_code == 200
        assert again.content == first.content  # the stored reply, not the new one
        assert again.headers["x-duplicate"] == "true"
        assert again.headers["x-event-id"] == first.headers["x-event-id"]

    delivered = await rig.receiver.wait_for(lambda d: len(d) >= 1)
    await asyncio.sleep(0.3)  # a second delivery would have arrived by now
    assert len(rig.receiver.deliveries) == 1
    [d] = delivered
    assert d.verified
    assert d.webhook_id == first.headers["x-event-id"]
    assert d.payload is not None
    assert d.payload["type"] == "payment.completed"
    assert d.payload["subject"] == "H01.01-260101-0042"
    assert d.payload["data"] == {
        "dossier_code": "H01.01-260101-0042",
        "amount": 150000,
        "source": {"system": SYSTEM, "event_id": "TX-1"},
    }
    # the pull feed has the same event
    [event] = await rig.runtime.store.events.list_after(None)
    assert event.id == d.webhook_id

    records = await rig.runtime.store.audit.query(AuditQuery(adapter=SYSTEM))
    inbound = [r for r in records if r.direction == "inbound"]
    assert [r.outcome for r in reversed(inbound)] == ["ok", "duplicate"]
    for r in inbound:
        assert r.actor == NATIONAL.id
        assert r.operation == "callback.payment.completed"
        assert r.dossier_code == "H01.01-260101-0042"
        assert r.subject_digests == [rig.runtime.audit.digest(CITIZEN_ID)]
        assert r.extra["source_event_id"] == "TX-1"
        assert r.request_id  # the callback's request id
        assert CITIZEN_ID not in json.dumps(r.body_dict())
    assert inbound[-1].payload_sha256 == hashlib.sha256(message("TX-1", nonce="a")).hexdigest()


async def test_copies_arriving_together_are_forwarded_once(rig: Rig) -> None:
    async with httpx.AsyncClient() as http:
        answers = await asyncio.gather(
            *(post_callback(http, rig.gateway, message("TX-2")) for _ in range(8))
        )
    statuses = sorted(a.status_code for a in answers)
    assert set(statuses) <= {200, 409}
    assert 200 in statuses
    for a in answers:
        if a.status_code == 409:  # still being accepted: the system is told to retry
            assert a.headers["retry-after"] == "1"
            assert a.json()["type"].endswith(":idempotency-key-in-flight")
    await rig.receiver.wait_for(lambda d: len(d) >= 1)
    await asyncio.sleep(0.3)
    assert len(rig.receiver.deliveries) == 1
    assert len(await rig.runtime.store.events.list_after(None)) == 1


async def test_a_bad_checksum_is_refused_and_audited(rig: Rig) -> None:
    body = message("TX-3")
    async with httpx.AsyncClient() as http:
        refused = await http.post(
            f"{rig.gateway}/callbacks/{SYSTEM}/payment",
            content=body,
            headers={**NATIONAL.headers, "x-checksum": "0" * 64},
        )
    assert refused.status_code == 422
    assert refused.json()["type"].endswith(":signature-invalid")
    [record] = await rig.runtime.store.audit.query(AuditQuery(outcome="rejected"))
    assert record.adapter == SYSTEM
    assert record.detail == "checksum mismatch"
    assert record.payload_sha256 == hashlib.sha256(body).hexdigest()
    assert await rig.runtime.store.events.list_after(None) == []
    # a refused copy claims nothing: the genuine message is still accepted afterwards
    async with httpx.AsyncClient() as http:
        ok = await post_callback(http, rig.gateway, body)
    assert ok.status_code == 200 and ok.headers["x-duplicate"] == "false"


async def test_a_claim_left_by_a_dead_process_is_finished_by_the_next_copy(rig: Rig) -> None:
    store = rig.runtime.store
    stale = _Claim(
        reply=b'{"code":"00","ref":"first"}',
        media_type="application/json",
        status_code=200,
        event_id="01KCRASHEDCLA1M0000000000A",
        claimed_at=time.time() - TAKEOVER_SECONDS - 1,
        published=False,
    )
    assert await store.set_if_absent(dedupe_key(SYSTEM, "TX-4"), stale.dump(), ttl=60)
    fresh = _Claim(
        reply=b"{}",
        media_type="application/json",
        status_code=200,
        event_id="01KBUSYCLA1M00000000000000",
        claimed_at=time.time(),
        published=False,
    )
    assert await store.set_if_absent(dedupe_key(SYSTEM, "TX-5"), fresh.dump(), ttl=60)
    async with httpx.AsyncClient() as http:
        finished = await post_callback(http, rig.gateway, message("TX-4"))
        busy = await post_callback(http, rig.gateway, message("TX-5"))
    # the crashed accept is completed with its own event id and its stored reply
    assert finished.status_code == 200
    assert finished.content == stale.reply
    assert finished.headers["x-event-id"] == stale.event_id
    [d] = await rig.receiver.wait_for(lambda d: len(d) >= 1)
    assert d.webhook_id == stale.event_id
    # a claim younger than the takeover time belongs to a request still running
    assert busy.status_code == 409


async def test_the_reply_does_not_wait_for_the_webhook(rig: Rig) -> None:
    rig.receiver.default = Answer(204, delay=2.0)  # a slow provincial system
    async with httpx.AsyncClient() as http:
        started = time.perf_counter()
        answer = await post_callback(http, rig.gateway, message("TX-6"))
        elapsed = time.perf_counter() - started
    assert answer.status_code == 200
    assert elapsed < 1.0, f"the callback took {elapsed:.3f}s"
    await rig.receiver.wait_for(lambda d: len(d) >= 1, within=10)


async def test_a_full_delivery_queue_is_503_and_the_retry_finishes_it(
    tmp_path: Path, redis_url: str
) -> None:
    """The webhook queue holds one job and no worker drains it: the second message is refused
    with 503; once there is room, the system's retry completes it with the same event."""
    store, prefix = store_settings("redis", tmp_path, redis_url)
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    settings = gateway_settings(
        store,
        tmp_path,
        clients=(NATIONAL,),
        jobs={"workers": 0, "policies": {"webhook.deliver": {"max_queued": 1}}},
        webhooks={"endpoints": [{"id": "p", "url": "http://127.0.0.1:9/", "secret": secret}]},
    )
    app = create_app(settings)
    app.register(payment_callback)
    runtime: Runtime = app.state.runtime
    try:
        async with serving(app) as url, httpx.AsyncClient() as http:
            assert (await post_callback(http, url, message("TX-7"))).status_code == 200
            full = await post_callback(http, url, message("TX-8"))
            assert full.status_code == 503
            assert full.headers["retry-after"]
            assert full.json()["type"].endswith(":overloaded")
            [error] = await runtime.store.audit.query(AuditQuery(outcome="error"))
            assert error.adapter == SYSTEM
            # make room: the first delivery is taken and done
            job = await runtime.store.jobs.lease("t", visibility=30, now=time.time())
            assert job is not None
            await runtime.store.jobs.ack(job.id, "t", now=time.time(), attempt=Attempt(at=0))
            retried = await post_callback(http, url, message("TX-8"))
            assert retried.status_code == 200
            assert retried.headers["x-duplicate"] == "false"
            events = await runtime.store.events.list_after(None)
            # TX-8's event was appended before the queue refused; the retry reused it
            assert len(events) == 2
            assert events[1].id == retried.headers["x-event-id"]
            queued = await runtime.store.jobs.lease("t", visibility=30, now=time.time())
            assert queued is not None and queued.payload["event_id"] == events[1].id
    finally:
        await drop_redis_prefix(redis_url, prefix)
