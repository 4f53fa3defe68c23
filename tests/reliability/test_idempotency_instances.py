"""Idempotency-Key across two gateway instances sharing one Redis: the key claimed on one
instance is in flight (409) on the other, its answer is replayed by the other, and another
body under the same key is refused (422) by either."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from litestar import Request, post
from support.jobs_app import DOSSIER_SYSTEM, gateway_settings
from support.reliability_rig import Backend
from support.uvicorn_server import serving

from gateway.app import create_app
from gateway.runtime import Runtime

pytestmark = pytest.mark.slow


def command(entered: asyncio.Event, release: asyncio.Event, runs: list[str]) -> Any:
    @post("/v1/test/commands", opt={"scopes": ["dossiers:write"]}, status_code=202)
    async def handler(
        data: dict[str, Any], request: Request[Any, Any, Any], runtime: Runtime
    ) -> dict[str, Any]:
        runs.append(runtime.settings.server.public_url or "")
        entered.set()
        await release.wait()
        job = await runtime.jobs.enqueue("test.command", data, client_id=request.user.id)
        return {"job_id": job.id}

    return handler


async def test_one_key_one_run_across_instances(
    backend_factory: Callable[[str], Backend], tmp_path: Path
) -> None:
    backend = backend_factory("redis")
    entered, release = asyncio.Event(), asyncio.Event()
    runs: list[str] = []
    apps = []
    for name in ("a", "b"):
        app = create_app(
            gateway_settings(backend.settings, tmp_path, server={"public_url": f"http://{name}"})
        )
        app.register(command(entered, release, runs))
        apps.append(app)
    headers = {**DOSSIER_SYSTEM.headers, "Idempotency-Key": "dossier-42-status-3"}
    body = {"dossier": "000.00.19.H47-260105-0042", "status": 3}
    async with (
        serving(apps[0]) as url_a,
        serving(apps[1]) as url_b,
        httpx.AsyncClient(base_url=url_a) as a,
        httpx.AsyncClient(base_url=url_b) as b,
    ):
        first = asyncio.create_task(a.post("/v1/test/commands", json=body, headers=headers))
        await asyncio.wait_for(entered.wait(), 10)
        busy = await b.post("/v1/test/commands", json=body, headers=headers)
        assert busy.status_code == 409
        other = await b.post("/v1/test/commands", json={**body, "status": 4}, headers=headers)
        assert other.status_code == 422
        release.set()
        done = await first
        assert done.status_code == 202
        replay = await b.post("/v1/test/commands", json=body, headers=headers)
        assert replay.status_code == 202
        assert replay.headers["idempotent-replayed"] == "true"
        assert replay.json() == done.json()
        again = await a.post("/v1/test/commands", json={**body, "status": 4}, headers=headers)
        assert again.status_code == 422
    assert runs == ["http://a"]
