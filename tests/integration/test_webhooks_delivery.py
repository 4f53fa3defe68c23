"""Webhook delivery end to end: a real runtime (store, job queue, workers) POSTing over real
HTTP to a receiver that verifies with the ``standardwebhooks`` package, on both backends.

Covers: signatures verify (and fail for a tampered body or an old timestamp), only 2xx
counts, 410 disables the endpoint, 429/503 Retry-After is honoured, an exhausted delivery
is dead-lettered, endpoint state for the dashboard, and an audit record per attempt.
"""

from __future__ import annotations

import asyncio
import base64
import secrets
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError
from support.jobs_app import drop_redis_prefix, gateway_settings, store_settings
from support.uvicorn_server import serving

from gateway.observability import request_id_var
from gateway.runtime import Runtime
from gateway.store.base import AuditQuery, Job, JobState
from gateway.webhook_receiver import Answer, WebhookReceiver
from gateway.webhooks import DELIVER_KIND


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


@dataclass
class Rig:
    runtime: Runtime
    receiver: WebhookReceiver
    secret: str


RigFactory = Callable[..., Any]


@pytest.fixture(params=["sqlite", "redis"])
async def rig(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[RigFactory]:
    """Builds a started runtime delivering to a live receiver; stops everything after."""
    redis_url = request.getfixturevalue("redis_url") if request.param == "redis" else None
    store, prefix = store_settings(request.param, tmp_path, redis_url)
    started: list[tuple[Runtime, Any]] = []

    async def make(
        *,
        schedule: list[float] | None = None,
        deliver_timeout: float = 5.0,
        event_types: list[str] = (),
    ) -> Rig:
        secret = new_secret()
        receiver = WebhookReceiver(secret)
        ctx = serving(receiver)
        url = await ctx.__aenter__()
        settings = gateway_settings(
            store,
            tmp_path,
            jobs={"workers": 2, "poll_interval": 0.02},
            webhooks={
                "endpoints": [
                    {
                        "id": "province",
                        "url": f"{url}/hooks",
                        "secret": secret,
                        "event_types": list(event_types),
                    }
                ],
                "retry_schedule": schedule if schedule is not None else [0, 0.05, 0.05],
                "timeout": deliver_timeout,
            },
        )
        runtime = Runtime.build(settings)
        await runtime.start()
        started.append((runtime, ctx))
        return Rig(runtime, receiver, secret)

    yield make
    for runtime, ctx in started:
        await runtime.stop()
        await ctx.__aexit__(None, None, None)
    if redis_url is not None:
        await drop_redis_prefix(redis_url, prefix)


async def delivery_jobs(runtime: Runtime, event_id: str) -> list[Job]:
    jobs = [await runtime.store.jobs.get(j.id) for j in await runtime.store.jobs.list_dead()]
    return [j for j in jobs if j is not None and j.payload.get("event_id") == event_id]


async def wait_until(check: Callable[[], Any], *, within: float = 10.0) -> Any:
    deadline = time.monotonic() + within
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        await asyncio.sleep(0.02)


async def test_events_arrive_signed_and_verify_with_standardwebhooks(rig: RigFactory) -> None:
    r: Rig = await rig()
    token = request_id_var.set("req-webhook-1")
    try:
        events = [
            await r.runtime.events.publish(
                "dossier.received", {"dossier_code": f"D-{i}", "title": "Đăng ký khai sinh"}
            )
            for i in range(3)
        ]
    finally:
        request_id_var.reset(token)
    got = await r.receiver.wait_for(lambda d: len(d) >= 3)
    assert all(d.verified for d in got), [d.error for d in got]
    assert {d.webhook_id for d in got} == {e.id for e in events}
    for d in got:
        assert d.headers["webhook-signature"].startswith("v1,")
        assert d.headers["x-request-id"] == "req-webhook-1"
        assert d.headers["content-type"] == "application/json"
        assert d.payload is not None
        assert d.payload["id"] == d.webhook_id
        assert d.payload["type"] == "dossier.received"
        assert d.payload["data"]["title"] == "Đăng ký khai sinh"
        # the receiver's own check, independent of ours
        assert Webhook(r.secret).verify(d.body, d.headers)["id"] == d.webhook_id

    # a tampered body, an old timestamp, another secret: all refused by the receiver's library
    sample = got[0]
    with pytest.raises(WebhookVerificationError):
        Webhook(r.secret).verify(sample.body.replace(b"D-", b"X-"), sample.headers)
    old = {**sample.headers, "webhook-timestamp": str(int(time.time()) - 3600)}
    with pytest.raises(WebhookVerificationError, match="too old"):
        Webhook(r.secret).verify(sample.body, old)
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(sample.body, sample.headers)

    async def all_audited() -> bool:
        records = await r.runtime.store.audit.query(AuditQuery(operation=DELIVER_KIND))
        return len(records) == 3

    await wait_until(all_audited)
    [status] = await r.runtime.webhook_endpoint_states()
    assert status.state == "delivering"
    records = await r.runtime.store.audit.query(AuditQuery(operation=DELIVER_KIND))
    assert len(records) == 3
    assert {rec.outcome for rec in records} == {"ok"}
    assert {rec.status for rec in records} == {204}
    assert {rec.extra["event_id"] for rec in records} == {e.id for e in events}
    assert all(rec.payload_sha256 for rec in records)


async def test_only_2xx_counts_and_the_same_id_is_retried(rig: RigFactory) -> None:
    r: Rig = await rig(schedule=[0, 0.05, 0.05, 0.05])
    r.receiver.script = [Answer(500), Answer(302, {"location": "http://127.0.0.1:1/"})]
    event = await r.runtime.events.publish("payment.completed", {"amount": 50000})
    got = await r.receiver.wait_for(lambda d: any(x.status == 204 for x in d))
    assert [d.status for d in got] == [500, 302, 204]
    assert {d.webhook_id for d in got} == {event.id}  # one id across attempts: dedupe works
    assert all(d.verified for d in got)  # each attempt signed afresh, each verifies

    async def delivering_again() -> bool:
        [status] = await r.runtime.webhook_endpoint_states()
        return status.state == "delivering" and status.last_failure is not None

    # the success after failures shows at once, though successes are written sparingly
    await wait_until(delivering_again, within=5)


async def test_410_disables_the_endpoint(rig: RigFactory) -> None:
    r: Rig = await rig()
    r.receiver.default = Answer(410)
    event = await r.runtime.events.publish("dossier.returned", {"dossier_code": "D-9"})
    await r.receiver.wait_for(lambda d: len(d) >= 1)

    async def dead() -> list[Job]:
        return await delivery_jobs(r.runtime, event.id)

    [job] = await wait_until(dead)
    assert job.state is JobState.DEAD
    assert job.attempt_count == 1  # not retried
    assert job.last_error is not None and "410" in job.last_error
    [status] = await r.runtime.webhook_endpoint_states()
    assert status.state == "disabled"
    assert status.disabled_reason == "the receiver answered 410 Gone"
    # later events are not sent to it, but stay in the pull feed
    later = await r.runtime.events.publish("dossier.returned", {"dossier_code": "D-10"})
    await asyncio.sleep(0.3)
    assert len(r.receiver.deliveries) == 1
    assert await r.runtime.store.jobs.count_queued(DELIVER_KIND) == 0
    assert later.id in [e.id for e in await r.runtime.store.events.list_after(None)]
    # re-enabled and replayed, the dead delivery goes through
    assert await r.runtime.events.enable("province")
    r.receiver.default = Answer(200)
    assert await r.runtime.store.jobs.replay(job.id, now=time.time()) is not None
    r.runtime.jobs.wakeup.set()
    got = await r.receiver.wait_for(lambda d: any(x.status == 200 for x in d))
    assert got[-1].webhook_id == event.id


@pytest.mark.parametrize("status", [503, 429])
async def test_retry_after_is_honoured(rig: RigFactory, status: int) -> None:
    r: Rig = await rig(schedule=[0, 0.05, 0.05])
    r.receiver.script = [Answer(status, {"retry-after": "1"})]
    await r.runtime.events.publish("postal.status", {"tracking": "EE123"})
    got = await r.receiver.wait_for(lambda d: len(d) >= 2)
    first, second = got[0], got[1]
    assert (first.status, second.status) == (status, 204)
    # the schedule says 0.05 s; the receiver asked for 1 s
    assert second.at - first.at >= 0.95


async def test_exhausted_deliveries_are_dead_lettered(rig: RigFactory) -> None:
    r: Rig = await rig(schedule=[0, 0.05, 0.05])
    r.receiver.default = Answer(500)
    event = await r.runtime.events.publish("job.failed", {"job_id": "x"})

    async def dead() -> list[Job]:
        return await delivery_jobs(r.runtime, event.id)

    [job] = await wait_until(dead)
    assert job.kind == DELIVER_KIND
    assert job.attempt_count == 3  # at once, then the two retries of the schedule
    assert len(r.receiver.deliveries) == 3
    assert job.last_error is not None and "answered 500" in job.last_error
    [status] = await r.runtime.webhook_endpoint_states()
    assert status.state == "failing"
    assert status.last_error is not None and "500" in status.last_error
    # the URL and secret never appear in what ops see
    assert "127.0.0.1" not in status.last_error and r.secret not in status.last_error
    outcomes = [
        rec.outcome for rec in await r.runtime.store.audit.query(AuditQuery(operation=DELIVER_KIND))
    ]
    assert outcomes == ["error", "error", "error"]


async def test_a_receiver_slower_than_the_timeout_is_retried(rig: RigFactory) -> None:
    r: Rig = await rig(schedule=[0, 0.05], deliver_timeout=0.3)
    r.receiver.script = [Answer(204, delay=1.0)]
    event = await r.runtime.events.publish("dossier.received", {"dossier_code": "D-1"})
    got = await r.receiver.wait_for(lambda d: len(d) >= 2)
    assert {d.webhook_id for d in got} == {event.id}

    async def succeeded() -> bool:
        records = await r.runtime.store.audit.query(AuditQuery(operation=DELIVER_KIND))
        return [rec.outcome for rec in reversed(records)] == ["error", "ok"]

    await wait_until(succeeded)
    [first] = await r.runtime.store.audit.query(AuditQuery(operation=DELIVER_KIND, outcome="error"))
    assert first.detail is not None and "did not answer" in first.detail


async def test_event_types_filter_what_an_endpoint_gets(rig: RigFactory) -> None:
    r: Rig = await rig(event_types=["payment.*"])
    await r.runtime.events.publish("dossier.received", {"dossier_code": "D-1"})
    paid = await r.runtime.events.publish("payment.completed", {"amount": 1})
    got = await r.receiver.wait_for(lambda d: len(d) >= 1)
    await asyncio.sleep(0.2)
    assert [d.webhook_id for d in r.receiver.deliveries] == [paid.id]
    assert got[0].payload is not None and got[0].payload["type"] == "payment.completed"
