"""Dead letters: list (with the jobs each one holds back), replay, discard; every move audited.

Shared by the ops API (``gateway.api.ops_dead_letters``) and the CLI (``gateway dlq``), so both
behave and audit the same way.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from gateway.audit import Auditor
from gateway.capabilities.dossiers import DOSSIER_CODE_PATTERN
from gateway.errors import Conflict, NotFound
from gateway.jobs import system_of
from gateway.store.base import Job, Store

__all__ = ["SCAN_LIMIT", "DeadLetter", "DeadLetterPage", "DeadLetters"]

#: how many dead letters one listing may read to satisfy a ``system`` filter (the store filters
#: by kind, not by system); past it the page ends early and says where to go on from
SCAN_LIMIT = 5000


@dataclass(frozen=True, slots=True)
class DeadLetter:
    job: Job
    #: queued jobs of the same ordering key waiting behind it (first page)
    held_back: list[Job]

    @property
    def system(self) -> str:
        return system_of(self.job.kind)


def _dossier_of(job: Job) -> str | None:
    key = job.ordering_key
    return key if key is not None and DOSSIER_CODE_PATTERN.match(key) else None


@dataclass(frozen=True, slots=True)
class DeadLetterPage:
    items: list[DeadLetter]
    #: pass as ``before_id`` for the next (older) page; None when nothing older is left. Set
    #: even with fewer than ``limit`` items when the scan window ran out before the end
    next_before: str | None


class DeadLetters:
    def __init__(self, store: Store, auditor: Auditor | None) -> None:
        self.store = store
        self.auditor = auditor

    async def list(
        self,
        *,
        system: str | None = None,
        kind: str | None = None,
        limit: int = 50,
        before_id: str | None = None,
        held_back_limit: int = 20,
    ) -> list[DeadLetter]:
        """Newest first. ``system`` is the adapter prefix of the kind."""
        found = await self.page(
            system=system,
            kind=kind,
            limit=limit,
            before_id=before_id,
            held_back_limit=held_back_limit,
        )
        return found.items

    async def page(
        self,
        *,
        system: str | None = None,
        kind: str | None = None,
        limit: int = 50,
        before_id: str | None = None,
        held_back_limit: int = 20,
        scan_limit: int | None = None,
    ) -> DeadLetterPage:
        """Newest first, with where the next page starts. ``system`` is the adapter prefix of
        the kind; at most ``scan_limit`` dead letters are read for it, so a system with few
        dead letters among many of others' never makes one page slow: the page then ends
        early, and ``next_before`` (the scan's cursor) carries the search on."""
        scan_limit = scan_limit or SCAN_LIMIT
        found: list[Job] = []
        cursor = before_id
        scanned = 0
        exhausted = False
        batch_size = limit if system is None else max(limit, 100)
        while len(found) < limit:
            if scanned >= scan_limit:
                break
            size = min(batch_size, scan_limit - scanned)
            batch = await self.store.jobs.list_dead(kind=kind, limit=size, before_id=cursor)
            scanned += len(batch)
            for job in batch:
                cursor = job.id
                if system is None or system_of(job.kind) == system:
                    found.append(job)
                    if len(found) == limit:
                        # the next page starts after this one, not after the whole batch:
                        # the batch's later matches would be skipped
                        break
            if len(batch) < size:
                exhausted = True
                break
        # a full page goes on after its last item; a short one after the window it read,
        # unless the store had nothing more
        next_before: str | None = None
        if len(found) == limit:
            next_before = found[-1].id
        elif not exhausted:
            next_before = cursor
        result: list[DeadLetter] = []
        for job in found:
            held: list[Job] = []
            if job.ordering_key is not None:
                held = await self.store.jobs.held_back(job.ordering_key, limit=held_back_limit)
            result.append(DeadLetter(job, held))
        return DeadLetterPage(result, next_before)

    async def replay(self, job_id: str, *, actor: str) -> Job:
        """DEAD -> QUEUED (attempts kept); NotFound / Conflict otherwise. Audited."""
        job = await self.store.jobs.replay(job_id, now=time.time())
        if job is None:
            await self._refused(job_id, actor, "dlq.replay")
        assert job is not None
        await self._audit(job, actor, "dlq.replay")
        return job

    async def discard(self, job_id: str, *, actor: str) -> Job:
        """DEAD -> DISCARDED, unblocking its ordering key; NotFound / Conflict otherwise."""
        job = await self.store.jobs.discard(job_id, now=time.time())
        if job is None:
            await self._refused(job_id, actor, "dlq.discard")
        assert job is not None
        await self._audit(job, actor, "dlq.discard")
        return job

    async def _refused(self, job_id: str, actor: str, operation: str) -> None:
        existing = await self.store.jobs.get(job_id)
        error: NotFound | Conflict
        if existing is None:
            error = NotFound(f"no job {job_id}")
        else:
            error = Conflict(f"job {job_id} is {existing.state.value}, not dead")
        if self.auditor is not None:
            await self.auditor.record(
                direction="internal",
                actor=actor,
                operation=operation,
                outcome="rejected",
                adapter=system_of(existing.kind) if existing else None,
                detail=error.detail,
                extra={"job_id": job_id},
            )
        raise error

    async def _audit(self, job: Job, actor: str, operation: str) -> None:
        if self.auditor is None:
            return
        await self.auditor.record(
            direction="internal",
            actor=actor,
            operation=operation,
            outcome="ok",
            adapter=system_of(job.kind),
            # so the move shows on the dossier's timeline (dossier jobs are keyed by its code)
            dossier_code=_dossier_of(job),
            detail=f"job {job.id} ({job.kind}) is now {job.state.value}",
            extra={
                "job_id": job.id,
                "kind": job.kind,
                "ordering_key": job.ordering_key,
                "attempts": job.attempt_count,
            },
        )
