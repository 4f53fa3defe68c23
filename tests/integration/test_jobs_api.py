"""GET /v1/jobs/{id} and the ops queue API over real HTTP, the app's own workers and both
store backends: who may see a job, dead letters with what they hold back, audited moves."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from litestar import Litestar
from support.jobs_app import (
    DOSSIER_SYSTEM,
    OPERATOR,
    OTHER_SYSTEM,
    VIEWER,
    drop_redis_prefix,
    gateway_settings,
    store_settings,
)
from support.uvicorn_server import serving

from gateway.app import create_app
from gateway.errors import UpstreamRejected, UpstreamUnavailable
from gateway.runtime import Runtime
from gateway.store.base import AuditQuery, Job, JobState

FAST = {"max_attempts": 3, "backoff_initial": 0.0, "backoff_max": 0.0}


@pytest.fixture(params=["sqlite", "redis"])
async def app(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Litestar]:
    redis_url = request.getfixturevalue("redis_url") if request.param == "redis" else None
    store, prefix = store_settings(request.param, tmp_path, redis_url)
    jobs = {"workers": 2, "poll_interval": 0.02, "grace_period": 1.0, "default_policy": FAST}
    yield create_app(gateway_settings(store, tmp_path, jobs=jobs))
    if redis_url is not None:
        await drop_redis_prefix(redis_url, prefix)


def runtime_of(app: Litestar) -> Runtime:
    runtime = app.state.runtime
    assert isinstance(runtime, Runtime)
    return runtime


async def settled(runtime: Runtime, job_id: str, state: JobState, within: float = 10) -> Job:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        job = await runtime.store.jobs.get(job_id)
        if job is not None and job.state is state:
            return job
        await asyncio.sleep(0.02)
    raise AssertionError(f"job {job_id} did not become {state}")


async def test_the_creator_sees_its_job_with_attempts_and_others_do_not(app: Litestar) -> None:
    runtime = runtime_of(app)
    calls = 0

    async def flaky(job: Job) -> dict[str, Any]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise UpstreamUnavailable("the portal answered 503", system="portal")
        return {"receipt": "R-1"}

    runtime.jobs.register_handler("portal.push", flaky)
    async with serving(app) as url, httpx.AsyncClient(base_url=url) as client:
        job = await runtime.jobs.enqueue("portal.push", {"x": 1}, client_id=DOSSIER_SYSTEM.id)
        await settled(runtime, job.id, JobState.SUCCEEDED)

        seen = await client.get(f"/v1/jobs/{job.id}", headers=DOSSIER_SYSTEM.headers)
        assert seen.status_code == 200
        body = seen.json()
        assert body["id"] == job.id
        assert body["state"] == "succeeded"
        assert body["attempt_count"] == 2
        assert body["attempts"][0]["error"] == "the portal answered 503"
        assert body["attempts"][0]["error_type"] == "upstream-unavailable"
        assert body["attempts"][0]["retryable"] is True
        assert body["attempts"][1]["error"] is None
        assert body["last_error"] == "the portal answered 503"
        assert body["result"] == {"receipt": "R-1"}
        assert body["created_at"].endswith("Z")
        assert "payload" not in body  # may hold personal data

        other = await client.get(f"/v1/jobs/{job.id}", headers=OTHER_SYSTEM.headers)
        assert other.status_code == 404
        assert other.json()["type"].endswith(":not-found")
        missing = await client.get(
            "/v1/jobs/01NOSUCHJOB0000000000000000", headers=DOSSIER_SYSTEM.headers
        )
        assert missing.status_code == 404
        anonymous = await client.get(f"/v1/jobs/{job.id}")
        assert anonymous.status_code == 401


async def test_dead_letters_list_replay_discard_with_audit(app: Litestar) -> None:
    runtime = runtime_of(app)
    portal_up = False

    async def push(job: Job) -> None:
        if job.payload["n"] == 0 and not portal_up:
            raise UpstreamRejected("the portal does not know this dossier")

    async def poll(job: Job) -> None:
        raise UpstreamRejected("unknown transaction")

    runtime.jobs.register_handler("portal.push", push)
    runtime.jobs.register_handler("payments.poll", poll)
    async with serving(app) as url, httpx.AsyncClient(base_url=url) as client:
        head = await runtime.jobs.enqueue("portal.push", {"n": 0}, ordering_key="D-1")
        await settled(runtime, head.id, JobState.DEAD)
        later = [
            await runtime.jobs.enqueue("portal.push", {"n": n}, ordering_key="D-1") for n in (1, 2)
        ]
        other = await runtime.jobs.enqueue("payments.poll", {})
        await settled(runtime, other.id, JobState.DEAD)
        await asyncio.sleep(0.2)  # the held-back jobs must not run meanwhile
        for job in later:
            waiting = await runtime.store.jobs.get(job.id)
            assert waiting is not None
            assert waiting.state is JobState.QUEUED

        listing = await client.get("/ops/api/dead-letters", headers=VIEWER.headers)
        assert listing.status_code == 200, listing.text
        assert [d["job"]["id"] for d in listing.json()] == [other.id, head.id]  # newest first

        portal = (
            await client.get("/ops/api/dead-letters?system=portal", headers=VIEWER.headers)
        ).json()
        assert len(portal) == 1
        assert portal[0]["system"] == "portal"
        assert portal[0]["job"]["last_error"] == "the portal does not know this dossier"
        assert [h["id"] for h in portal[0]["held_back"]] == [j.id for j in later]
        by_kind = (
            await client.get("/ops/api/dead-letters?kind=payments.poll", headers=VIEWER.headers)
        ).json()
        assert [d["job"]["id"] for d in by_kind] == [other.id]

        queues = (await client.get("/ops/api/queues", headers=VIEWER.headers)).json()
        push_stats = next(q for q in queues if q["kind"] == "portal.push")
        assert push_stats["dead"] == 1
        assert push_stats["queued"] == 2
        assert push_stats["system"] == "portal"

        refused = await client.post(
            f"/ops/api/dead-letters/{head.id}/replay", headers=VIEWER.headers
        )
        assert refused.status_code == 403  # ops:read is not enough to move jobs
        assert refused.json()["type"].endswith(":missing-scope")

        portal_up = True
        replayed = await client.post(
            f"/ops/api/dead-letters/{head.id}/replay", headers=OPERATOR.headers
        )
        assert replayed.status_code == 200
        assert replayed.json()["state"] == "queued"
        assert replayed.json()["attempt_count"] == 1  # attempts kept
        for job in [head, *later]:
            await settled(runtime, job.id, JobState.SUCCEEDED)

        discarded = await client.delete(
            f"/ops/api/dead-letters/{other.id}", headers=OPERATOR.headers
        )
        assert discarded.status_code == 200
        assert discarded.json()["state"] == "discarded"
        again = await client.post(
            f"/ops/api/dead-letters/{other.id}/replay", headers=OPERATOR.headers
        )
        assert again.status_code == 409
        unknown = await client.delete(
            "/ops/api/dead-letters/01NOSUCHJOB0000000000000000", headers=OPERATOR.headers
        )
        assert unknown.status_code == 404
        assert (await client.get("/ops/api/dead-letters", headers=VIEWER.headers)).json() == []

    moves = await runtime_store_audit(runtime)
    assert [(r.operation, r.outcome, r.actor, r.extra.get("job_id")) for r in moves] == [
        ("dlq.replay", "ok", OPERATOR.id, head.id),
        ("dlq.discard", "ok", OPERATOR.id, other.id),
        ("dlq.replay", "rejected", OPERATOR.id, other.id),
        ("dlq.discard", "rejected", OPERATOR.id, "01NOSUCHJOB0000000000000000"),
    ]
    assert moves[0].adapter == "portal"
    assert all(r.request_id for r in moves)


async def runtime_store_audit(runtime: Runtime) -> list[Any]:
    await runtime.store.open()  # the app stopped; read its store again
    try:
        records = await runtime.store.audit.query(AuditQuery(limit=100))
    finally:
        await runtime.store.close()
    return sorted((r for r in records if r.operation.startswith("dlq.")), key=lambda r: r.seq)
