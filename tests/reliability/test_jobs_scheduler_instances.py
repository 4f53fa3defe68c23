"""Two gateway instances sharing one Redis run the scheduler: one tick per period.

Both run a scheduler; only the lock holder enqueues. The receiver sees each tick of a 1 s
interval schedule exactly once, with no tick skipped, and the lock never changes hands.
"""

from __future__ import annotations

import itertools
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from support.receiver import Receiver, start_gateway
from support.reliability_rig import Backend, eventually

from gateway.scheduler import LOCK_NAME

TICK = 1.0
WANTED_TICKS = 6

pytestmark = pytest.mark.slow


async def test_two_instances_run_each_tick_once(
    backend_factory: Callable[[str], Backend], tmp_path: Path
) -> None:
    backend = backend_factory("redis")
    store = backend.open_store()
    await store.open()
    with Receiver() as receiver:
        config = backend.write_config(
            tmp_path, "worker", receiver_url=receiver.url, workers=2, tick_seconds=TICK
        )
        instances = [start_gateway("worker", config, tmp_path / f"worker-{i}.log") for i in (1, 2)]
        try:
            await eventually(
                lambda: len(receiver.ticks) >= 1,
                within=20,
                message=f"no tick: {instances[0].output()}",
            )
            token = await store.lock_token(LOCK_NAME)
            await eventually(
                lambda: len(receiver.ticks) >= WANTED_TICKS + 1,
                within=WANTED_TICKS * TICK + 10,
                message="ticks stopped",
            )
            assert await store.lock_token(LOCK_NAME) == token  # one holder throughout
            for instance in instances:
                assert instance.terminate() == 0
        finally:
            for instance in instances:
                instance.ensure_stopped()
        ticks = list(receiver.ticks)
    await store.close()

    per_tick = Counter(t["tick"] for t in ticks)
    assert all(count == 1 for count in per_tick.values()), per_tick
    times = sorted(float(str(tick).rsplit(":", 1)[1]) for tick in per_tick)
    gaps = [round(b - a, 3) for a, b in itertools.pairwise(times)]
    assert all(gap == TICK for gap in gaps), f"a tick was skipped: {gaps}"
    assert len(times) >= WANTED_TICKS
    print(f"{len(times)} ticks, each once, {time.time() - times[-1]:.1f}s after the last")
