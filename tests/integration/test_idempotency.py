"""Idempotency-Key through the real app (auth, request ids, problems) on both backends:
replay, 422 for another body, 409 while in flight, per-client keys, what is not kept."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from litestar import Litestar, Request, post
from support.jobs_app import (
    DOSSIER_SYSTEM,
    OTHER_SYSTEM,
    drop_redis_prefix,
    gateway_settings,
    store_settings,
)
from support.uvicorn_server import serving

from gateway.app import create_app
from gateway.errors import UpstreamUnavailable
from gateway.runtime import Runtime


class Gate:
    """Holds the test command until released (to observe a request in flight)."""

    def __init__(self) -> None:
        self.entered = asyncio.Event()
        self.release = asyncio.Event()
        self.release.set()
        self.runs = 0
        self.fail_next = False


def command_route(gate: Gate) -> Any:
    @post("/v1/test/commands", opt={"scopes": ["dossiers:write"]}, status_code=202)
    async def command(
        data: dict[str, Any], request: Request[Any, Any, Any], runtime: Runtime
    ) -> dict[str, Any]:
        gate.runs += 1
        gate.entered.set()
        await gate.release.wait()
        if gate.fail_next:
            gate.fail_next = False
            raise UpstreamUnavailable("the portal is down")
        job = await runtime.jobs.enqueue("test.command", data, client_id=request.user.id)
        return {"job_id": job.id, "echo": data}

    return command


@pytest.fixture(params=["sqlite", "redis"])
async def app_and_gate(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[Litestar, Gate]]:
    redis_url = request.getfixturevalue("redis_url") if request.param == "redis" else None
    store, prefix = store_settings(request.param, tmp_path, redis_url)
    app = create_app(gateway_settings(store, tmp_path))
    gate = Gate()
    app.register(command_route(gate))
    yield app, gate
    if redis_url is not None:
        await drop_redis_prefix(redis_url, prefix)


async def test_same_key_and_body_replays_the_stored_answer(
    app_and_gate: tuple[Litestar, Gate],
) -> None:
    app, gate = app_and_gate
    async with serving(app) as url, httpx.AsyncClient(base_url=url) as client:
        headers = {**DOSSIER_SYSTEM.headers, "Idempotency-Key": "push-0001"}
        first = await client.post("/v1/test/commands", json={"status": 2}, headers=headers)
        assert first.status_code == 202
        assert "idempotent-replayed" not in first.headers
        again = await client.post("/v1/test/commands", json={"status": 2}, headers=headers)
        assert again.status_code == 202
        assert again.headers["idempotent-replayed"] == "true"
        assert again.json() == first.json()  # the same job id: the command ran once
        assert again.headers["content-type"] == first.headers["content-type"]
        assert again.headers["x-request-id"] != first.headers["x-request-id"]
        assert gate.runs == 1


async def test_same_key_with_another_body_is_422(app_and_gate: tuple[Litestar, Gate]) -> None:
    app, gate = app_and_gate
    async with serving(app) as url, httpx.AsyncClient(base_url=url) as client:
        headers = {**DOSSIER_SYSTEM.headers, "Idempotency-Key": "push-0002"}
        assert (
            await client.post("/v1/test/commands", json={"status": 2}, headers=headers)
        ).status_code == 202
        reused = await client.post("/v1/test/commands", json={"status": 3}, headers=headers)
        assert reused.status_code == 422
        assert reused.headers["content-type"].startswith("application/problem+json")
        problem = reused.json()
        assert problem["type"].endswith(":idempotency-key-reused")
        assert problem["request_id"] == reused.headers["x-request-id"]
        # another path with the same key is another request too
        other = await client.post("/v1/test/commands?x=1", json={"status": 2}, headers=headers)
        assert other.status_code == 422
        assert gate.runs == 1


async def test_same_key_still_in_flight_is_409(app_and_gate: tuple[Litestar, Gate]) -> None:
    app, gate = app_and_gate
    gate.release.clear()
    async with serving(app) as url, httpx.AsyncClient(base_url=url) as client:
        headers = {**DOSSIER_SYSTEM.headers, "Idempotency-Key": "push-0003"}
        first = asyncio.create_task(
            client.post("/v1/test/commands", json={"status": 2}, headers=headers)
        )
        await asyncio.wait_for(gate.entered.wait(), 5)
        busy = await client.post("/v1/test/commands", json={"status": 2}, headers=headers)
        assert busy.status_code == 409
        assert busy.json()["type"].endswith(":idempotency-key-in-flight")
        assert busy.headers["retry-after"] == "1"
        gate.release.set()
        done = await first
        assert done.status_code == 202
        replay = await client.post("/v1/test/commands", json={"status": 2}, headers=headers)
        assert replay.json() == done.json()
        assert gate.runs == 1


async def test_keys_are_scoped_per_client(app_and_gate: tuple[Litestar, Gate]) -> None:
    app, gate = app_and_gate
    async with serving(app) as url, httpx.AsyncClient(base_url=url) as client:
        key = {"Idempotency-Key": "shared-key"}
        a = await client.post(
            "/v1/test/commands", json={"n": 1}, headers={**DOSSIER_SYSTEM.headers, **key}
        )
        b = await client.post(
            "/v1/test/commands", json={"n": 2}, headers={**OTHER_SYSTEM.headers, **key}
        )
        assert a.status_code == b.status_code == 202
        assert "idempotent-replayed" not in b.headers
        assert a.json()["job_id"] != b.json()["job_id"]
        assert gate.runs == 2


async def test_a_server_failure_is_not_kept_so_the_key_can_be_retried(
    app_and_gate: tuple[Litestar, Gate],
) -> None:
    app, gate = app_and_gate
    gate.fail_next = True
    async with serving(app) as url, httpx.AsyncClient(base_url=url) as client:
        headers = {**DOSSIER_SYSTEM.headers, "Idempotency-Key": "push-0004"}
        failed = await client.post("/v1/test/commands", json={"s": 1}, headers=headers)
        assert failed.status_code == 503
        retried = await client.post("/v1/test/commands", json={"s": 1}, headers=headers)
        assert retried.status_code == 202
        assert "idempotent-replayed" not in retried.headers
        assert gate.runs == 2


async def test_without_a_key_commands_run_each_time_and_bad_keys_are_refused(
    app_and_gate: tuple[Litestar, Gate],
) -> None:
    app, gate = app_and_gate
    async with serving(app) as url, httpx.AsyncClient(base_url=url) as client:
        for _ in range(2):
            r = await client.post(
                "/v1/test/commands", json={"s": 1}, headers=DOSSIER_SYSTEM.headers
            )
            assert r.status_code == 202
        assert gate.runs == 2
        bad = await client.post(
            "/v1/test/commands",
            json={"s": 1},
            headers={**DOSSIER_SYSTEM.headers, "Idempotency-Key": "x" * 256},
        )
        assert bad.status_code == 400
        assert gate.runs == 2
        # authentication still comes first: no credential, no idempotency record
        anonymous = await client.post(
            "/v1/test/commands", json={"s": 1}, headers={"Idempotency-Key": "k-anon"}
        )
        assert anonymous.status_code == 401
