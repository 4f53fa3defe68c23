"""``GET /metrics`` through the real app: the queue gauges are read from the store at each
scrape, so a server without workers (``jobs.workers = 0``) exports them too."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from litestar import Litestar
from support.jobs_app import (
    OPERATOR,
    drop_redis_prefix,
    gateway_settings,
    store_settings,
)
from support.uvicorn_server import serving

from gateway.app import create_app
from gateway.runtime import Runtime
from gateway.store.base import Attempt


@pytest.fixture(params=["sqlite", "redis"])
async def app(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Litestar]:
    redis_url = request.getfixturevalue("redis_url") if request.param == "redis" else None
    store, prefix = store_settings(request.param, tmp_path, redis_url)
    yield create_app(gateway_settings(store, tmp_path, clients=(OPERATOR,)))
    if redis_url is not None:
        await drop_redis_prefix(redis_url, prefix)


def _sample(text: str, name: str, **labels: str) -> float | None:
    for line in text.splitlines():
        match = re.match(rf"^{name}\{{(.*)\}} (\S+)$", line)
        if match and all(f'{k}="{v}"' in match.group(1) for k, v in labels.items()):
            return float(match.group(2))
    return None


async def test_queue_gauges_come_from_the_store_without_workers(app: Litestar) -> None:
    kind = f"test.metrics_{uuid.uuid4().hex[:8]}"  # the registry is shared by the tests
    async with serving(app) as url, httpx.AsyncClient(base_url=url) as client:
        runtime: Runtime = app.state.runtime
        assert runtime.settings.jobs.workers == 0
        await runtime.jobs.enqueue(kind, {"n": 1})
        await runtime.jobs.enqueue(kind, {"n": 2}, run_at=time.time() + 3600)
        first = await client.get("/metrics", headers=OPERATOR.headers)
        assert first.status_code == 200, first.text
        assert _sample(first.text, "gateway_queue_jobs", kind=kind, state="queued") == 2.0
        assert _sample(first.text, "gateway_queue_jobs", kind=kind, state="dead") == 0.0
        oldest = _sample(first.text, "gateway_queue_oldest_due_age_seconds", kind=kind)
        assert oldest is not None and oldest >= 0.0

        await runtime.jobs.enqueue(kind, {"n": 3})
        again = await client.get("/metrics", headers=OPERATOR.headers)
        assert _sample(again.text, "gateway_queue_jobs", kind=kind, state="queued") == 3.0

        # the kind drains (leased and acknowledged here, as a worker would): back to 0, not
        # the last value, although the store no longer lists the kind
        for _ in range(3):
            job = await runtime.store.jobs.lease("test", visibility=30, now=time.time() + 7200)
            assert job is not None and job.kind == kind
            done = Attempt(at=time.time())
            assert await runtime.store.jobs.ack(job.id, "test", now=time.time(), attempt=done)
        drained = await client.get("/metrics", headers=OPERATOR.headers)
        assert _sample(drained.text, "gateway_queue_jobs", kind=kind, state="queued") == 0.0
        assert _sample(drained.text, "gateway_queue_jobs", kind=kind, state="in_flight") == 0.0
