"""Two gateway instances sharing one Redis: the province sends each dossier's commands to
either instance at random, both instances' workers deliver; the portal still sees every
dossier's updates in the order they were sent, and the instances share one session."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest
from support.national_portal_rig import Rig, dossier_body, dossier_code, portal_rig, progress_record

pytestmark = pytest.mark.timeout(120)

#: (command, status, TrangThai the portal stores)
STEPS = [
    ("put", "received", "2"),
    ("progress", "processing", "4"),
    ("progress", "supplement_requested", "5"),
    ("put", "processing", "4"),
    ("progress", "payment_requested", "6"),
    ("progress", "processing", "4"),
    ("put", "processed", "9"),
    ("put", "returned", "10"),
]


async def _life(rig: Rig, code: str, rng: random.Random) -> list[str]:
    urls = [rig.gateway, *(url for url, _ in rig.others)]
    job_ids = []
    for n, (command, status, _) in enumerate(STEPS):
        via = rng.choice(urls)
        if command == "put":
            r = await rig.put_dossier(code, dossier_body(status), via=via)
        else:
            r = await rig.post_progress(code, [progress_record(status, n)], via=via)
        assert r.status_code == 202, r.text
        job_ids.append(r.json()["job_id"])
    return job_ids


async def test_two_instances_keep_each_dossiers_order(tmp_path: Path, redis_url: str) -> None:
    async with portal_rig("redis", tmp_path, redis_url, instances=2, workers=3) as rig:
        rng = random.Random(6)
        codes = [dossier_code(600 + i) for i in range(8)]
        batches = await asyncio.gather(*(_life(rig, c, random.Random(rng.random())) for c in codes))
        jobs = await rig.wait_jobs([j for b in batches for j in b], timeout=90)
        assert all(j.state.value == "succeeded" for j in jobs)
        for code in codes:
            calls = await rig.portal_calls(code)
            assert [c["TrangThai"] for c in calls] == [wire for _, _, wire in STEPS], code
        # the session lives in the store: at most one login per instance (their first jobs
        # may race), never one per worker or per job
        assert 1 <= (await rig.portal_summary())["logins"] <= 2
