"""A worker killed with SIGKILL mid-run loses nothing (both backends).

2,000 jobs each call a local HTTP receiver. The first ``gateway worker`` process is killed
with SIGKILL while it holds leases; a second one starts. Every job id reaches the receiver,
none is missing, and a job delivered twice carries the same id and payload both times.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from support.receiver import HIT_KIND, Receiver, start_gateway
from support.reliability_rig import Backend, eventually

from gateway.jobs import JobQueue
from gateway.settings import JobSettings
from gateway.store.base import JobState

JOBS = 2000

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("backend_name", ["sqlite", "redis"])
async def test_a_killed_worker_loses_no_job(
    backend_name: str, backend_factory: Callable[[str], Backend], tmp_path: Path
) -> None:
    backend = backend_factory(backend_name)
    store = backend.open_store()
    await store.open()
    with Receiver() as receiver:
        config = backend.write_config(tmp_path, "worker", receiver_url=receiver.url, workers=8)
        queue = JobQueue(JobSettings(), store)
        ids = [(await queue.enqueue(HIT_KIND, {"n": n})).id for n in range(JOBS)]
        number_of = {job_id: n for n, job_id in enumerate(ids)}

        began = time.monotonic()
        first = start_gateway("worker", config, tmp_path / "worker-1.log", "--concurrency", "8")
        second = None
        try:
            await eventually(
                lambda: len(receiver.hit_ids()) >= JOBS // 4,
                within=40,
                message=f"the first worker delivered too little: {first.output()}",
            )
            first.kill()
            killed_after = time.monotonic() - began
            delivered_before_kill = len(receiver.hit_ids())
            assert delivered_before_kill < JOBS, "killed too late to prove anything"
            stats = {s.kind: s for s in await store.jobs.stats(now=time.time())}
            # the dead worker still holds leases: those jobs must come back by themselves
            assert stats[HIT_KIND].in_flight > 0

            second = start_gateway(
                "worker", config, tmp_path / "worker-2.log", "--concurrency", "8"
            )
            await eventually(
                lambda: len(receiver.hit_ids()) == JOBS,
                within=45,
                message=f"missing deliveries: {JOBS - len(receiver.hit_ids())}; {second.output()}",
            )

            async def all_acknowledged() -> bool:
                s = {x.kind: x for x in await store.jobs.stats(now=time.time())}
                return HIT_KIND not in s or s[HIT_KIND].queued + s[HIT_KIND].in_flight == 0

            await eventually(all_acknowledged, within=20, message="jobs left unacknowledged")
            done_after = time.monotonic() - began
            assert second.terminate() == 0  # SIGTERM: a clean, graceful exit
        finally:
            first.ensure_stopped()
            if second is not None:
                second.ensure_stopped()

        hits = receiver.snapshot()
    try:
        assert receiver.hit_ids() == set(ids)  # every job id, none missing, none unknown
        for hit in hits:
            assert hit["n"] == number_of[hit["job_id"]]  # a repeat is the same job
        repeats = sum(c - 1 for c in Counter(h["job_id"] for h in hits).values())
        # only jobs the killed worker had in hand may repeat
        assert repeats <= 8
        pids = {h["pid"] for h in hits}
        assert pids == {first.pid, second.pid}
        for job_id in ids:
            job = await store.jobs.get(job_id)
            assert job is not None
            assert job.state is JobState.SUCCEEDED
            assert job.updated_at >= job.created_at
        print(
            f"{backend_name}: {delivered_before_kill} delivered before SIGKILL at "
            f"{killed_after:.1f}s, all {JOBS} acknowledged at {done_after:.1f}s, "
            f"{repeats} repeated"
        )
    finally:
        await store.close()
