"""A dossier's timeline reads in the order things happened, on both stores."""

from __future__ import annotations

import time

from gateway.store.base import Attempt, AuditRecord, NewJob, Store
from gateway.timeline import dossier_timeline

CODE = "000.00.01.H12-261128-0001"


async def test_an_acceptance_audited_after_a_failed_attempt_still_comes_first(
    store: Store,
) -> None:
    job, _ = await store.jobs.enqueue(NewJob("portal.sync", {}, ordering_key=CODE))
    leased = await store.jobs.lease("w1", visibility=30, now=time.time())
    assert leased is not None and leased.id == job.id
    # the worker fails the job before the API has written the acceptance's audit record
    failed_at = time.time()
    assert await store.jobs.retry(
        job.id, "w1", run_at=failed_at + 60, attempt=Attempt(at=failed_at, error="timeout")
    )
    await store.audit.append(
        AuditRecord(
            at=failed_at + 0.01,
            direction="inbound",
            actor="dossier-system",
            operation="dossier.accepted",
            outcome="ok",
            dossier_code=CODE,
            extra={"job_id": job.id},
        )
    )
    labels = [e.label for e in await dossier_timeline(store, CODE)]
    assert labels == [
        "dossier.accepted",
        "portal.sync queued",
        "portal.sync attempt failed",
        "portal.sync queued",  # waiting for its next attempt
    ]
