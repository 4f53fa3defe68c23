"""Two gateway instances sharing one Redis: 5,000 jobs over 50 ordering keys.

Each key's jobs reach the receiver in enqueue order (a job never overtakes the one before it,
even with the next one leased by the other instance), and every job id arrives at least once.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import pytest
from support.receiver import HIT_KIND, Receiver, start_gateway
from support.reliability_rig import Backend, eventually

from gateway.jobs import JobQueue
from gateway.settings import JobSettings

JOBS = 5000
KEYS = 50

pytestmark = pytest.mark.slow


def dedupe_adjacent(values: list[int]) -> list[int]:
    """A redelivered job arrives right after itself (its successor waits for its ack)."""
    out: list[int] = []
    for v in values:
        if not out or out[-1] != v:
            out.append(v)
    return out


async def test_two_instances_keep_each_keys_order(
    backend_factory: Callable[[str], Backend], tmp_path: Path
) -> None:
    backend = backend_factory("redis")
    store = backend.open_store()
    await store.open()
    with Receiver() as receiver:
        config = backend.write_config(tmp_path, "worker", receiver_url=receiver.url, workers=12)
        queue = JobQueue(JobSettings(), store)
        ids: list[str] = []
        for n in range(JOBS):
            key = f"000.00.19.H47-260105-{n % KEYS:04d}"
            job = await queue.enqueue(HIT_KIND, {"key": key, "seq": n // KEYS}, ordering_key=key)
            ids.append(job.id)

        began = time.monotonic()
        instances = [
            start_gateway("worker", config, tmp_path / f"worker-{i}.log", "--concurrency", "12")
            for i in (1, 2)
        ]
        try:
            await eventually(
                lambda: len(receiver.hit_ids()) == JOBS,
                within=55,
                message=(
                    f"{JOBS - len(receiver.hit_ids())} ids never arrived; "
                    f"{instances[0].output()} {instances[1].output()}"
                ),
            )
            elapsed = time.monotonic() - began
            for instance in instances:
                assert instance.terminate() == 0
        finally:
            for instance in instances:
                instance.ensure_stopped()
        hits = receiver.snapshot()
    await store.close()

    assert receiver.hit_ids() == set(ids)
    by_key: dict[str, list[int]] = defaultdict(list)
    for hit in hits:
        by_key[hit["key"]].append(hit["seq"])
    assert len(by_key) == KEYS
    for key, seqs in by_key.items():
        assert dedupe_adjacent(seqs) == list(range(JOBS // KEYS)), f"{key} out of order"
    # both instances did part of the work
    per_instance = defaultdict(int)
    for hit in hits:
        per_instance[hit["pid"]] += 1
    assert set(per_instance) == {i.pid for i in instances}
    assert min(per_instance.values()) > JOBS // 10
    print(f"{JOBS} jobs over {KEYS} keys in {elapsed:.1f}s, per instance {dict(per_instance)}")
