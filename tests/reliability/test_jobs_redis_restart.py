"""Redis restarts mid-run (AOF on, fsync always) under a running ``gateway serve``.

Readiness turns false while Redis is gone and true once it is back; no acknowledged job is
lost or run again; the workers resume by themselves and every job reaches the receiver.
The test starts its own redis-server on a free port (it must kill and restart it).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from support.receiver import HIT_KIND, Receiver, start_gateway, write_config
from support.redis_server import RedisServer, private_redis_server
from support.reliability_rig import eventually, process_settings
from support.uvicorn_server import free_port

from gateway.jobs import JobQueue
from gateway.settings import JobSettings
from gateway.store.base import JobState
from gateway.store.redis import RedisStore

JOBS = 1500
LATE_JOBS = 100

pytestmark = pytest.mark.slow


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    with private_redis_server(tmp_path / "redis") as server:
        yield server


async def ready_status(client: httpx.AsyncClient) -> int:
    try:
        return (await client.get("/health/ready", timeout=2.0)).status_code
    except httpx.TransportError:
        return 0


async def states(store: RedisStore, ids: list[str]) -> dict[str, JobState | None]:
    out: dict[str, JobState | None] = {}
    for job_id in ids:
        job = await store.jobs.get(job_id)
        out[job_id] = job.state if job else None
    return out


async def test_a_redis_restart_loses_no_acknowledged_job(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    port = free_port()
    store = RedisStore(redis_server.url, key_prefix="dvcgw-restart:")
    await store.open()
    with Receiver() as receiver:
        settings = process_settings(
            {"backend": "redis", "redis_url": redis_server.url, "key_prefix": "dvcgw-restart:"},
            tmp_path,
            receiver.url,
            workers=8,
            port=port,
        )
        config = write_config(tmp_path / "serve.toml", settings)
        queue = JobQueue(JobSettings(), store)
        ids = [(await queue.enqueue(HIT_KIND, {"n": n})).id for n in range(JOBS)]
        gateway = start_gateway("serve", config, tmp_path / "serve.log")
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:

                async def is_ready() -> bool:
                    return await ready_status(client) == 200

                await eventually(is_ready, within=20, message=f"never ready: {gateway.output()}")
                await eventually(
                    lambda: len(receiver.hit_ids()) >= JOBS // 5,
                    within=30,
                    message="the gateway delivered too little before the restart",
                )

                before = await states(store, ids)
                acknowledged = {i for i, s in before.items() if s is JobState.SUCCEEDED}
                assert acknowledged, "nothing acknowledged yet"
                redis_server.kill()
                hits_at_kill = Counter(h["job_id"] for h in receiver.snapshot())

                async def not_ready() -> bool:
                    return await ready_status(client) == 503

                await eventually(not_ready, within=15, message="readiness stayed true")
                await asyncio.sleep(1.0)  # a real outage, not a blip
                redis_server.start()
                await eventually(
                    is_ready, within=20, message=f"not ready again: {gateway.output()}"
                )

                # workers resume by themselves, for old and new work alike
                late = [
                    (await queue.enqueue(HIT_KIND, {"n": JOBS + n})).id for n in range(LATE_JOBS)
                ]
                await eventually(
                    lambda: receiver.hit_ids() >= set(ids) | set(late),
                    within=45,
                    message=f"{len(set(ids) - receiver.hit_ids())} jobs never delivered; "
                    f"{gateway.output()}",
                )
            assert gateway.terminate() == 0
        finally:
            gateway.ensure_stopped()
        hits = Counter(h["job_id"] for h in receiver.snapshot())

    try:
        after = await states(store, ids + late)
        # every acknowledged job is still acknowledged (the AOF kept it) and ran no more
        for job_id in acknowledged:
            assert after[job_id] is JobState.SUCCEEDED
            assert hits[job_id] == hits_at_kill[job_id]
        assert all(state is JobState.SUCCEEDED for state in after.values())
        print(
            f"{len(acknowledged)} acknowledged before the restart; "
            f"{sum(hits.values()) - len(hits)} deliveries repeated"
        )
    finally:
        await store.close()  # the server and its files go with tmp_path
