"""Retention: a scheduled purge per kind of record, and the audit log only once exported.

The scheduler enqueues ``retention.purge`` every ``retention.purge_interval_seconds``; one
worker runs :func:`purge`:

- finished jobs (succeeded, discarded) older than ``finished_jobs_days``; dead letters stay
  until replayed or discarded;
- events older than ``events_days`` (the pull feed's horizon);
- values past their TTL: idempotency records (``jobs.idempotency_ttl``) and callback dedupe
  ids (``callback_dedupe_days``) expire by TTL already; this deletes the expired rows the
  SQLite backend keeps until then (Redis expires keys by itself);
- audit records older than ``audit_days``, **but only up to the export high-water mark**
  (``gateway audit export``): a record never exported is never purged. Before deleting, the
  last purged record's (seq, hash) is stored as the chain's anchor, so ``gateway audit
  verify`` still checks the first remaining record's link.

Each purge is itself an audit record (operation ``retention.purge``) with the counts.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import structlog

from gateway.adapters import ScheduledJob
from gateway.audit import ANCHOR_KEY, read_anchor, read_export_mark
from gateway.settings import RetentionSettings

if TYPE_CHECKING:
    from gateway.audit import Auditor
    from gateway.store.base import Job, Store

__all__ = ["PURGE_KIND", "PurgeReport", "RetentionPurger", "purge", "purge_audit", "schedule"]

log = structlog.get_logger(__name__)

PURGE_KIND = "retention.purge"
DAY = 86400.0


@dataclass(frozen=True, slots=True)
class PurgeReport:
    finished_jobs: int
    events: int
    expired_values: int
    audit_records: int
    #: the highest audit seq now purged (None: none ever)
    audit_purged_up_to: int | None
    #: why old audit records were kept, when some were
    audit_note: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def schedule(settings: RetentionSettings) -> ScheduledJob:
    return ScheduledJob(
        name="retention-purge",
        kind=PURGE_KIND,
        interval_seconds=settings.purge_interval_seconds,
    )


WAITING_NOTE = "audit records past retention wait for `gateway audit export`"


async def _is_older(store: Store, seq: int, older_than: float) -> bool:
    async for record in store.audit.iterate(from_seq=seq, to_seq=seq):
        return record.at < older_than
    return False


async def purge_audit(store: Store, *, older_than: float) -> tuple[int, int | None, str | None]:
    """Purge audit records older than ``older_than`` that are exported.

    Returns (records purged, highest seq purged so far, a note when old records had to stay
    because they are not exported yet)."""
    anchor = await read_anchor(store)
    start = anchor[0] + 1 if anchor else 1
    mark = await read_export_mark(store)
    mark_seq = mark.seq if mark else 0
    last: tuple[int, str] | None = None
    if mark_seq >= start:
        async for record in store.audit.iterate(from_seq=start, to_seq=mark_seq):
            if record.at >= older_than:
                break
            last = (record.seq, record.hash)
    waiting = await _is_older(store, max(start, mark_seq + 1), older_than)
    note = WAITING_NOTE if waiting else None
    if last is None:
        return 0, anchor[0] if anchor else None, note
    # the anchor first: a verify running meanwhile starts after it and skips the doomed rows
    await store.set(ANCHOR_KEY, json.dumps({"seq": last[0], "hash": last[1]}).encode())
    count = await store.audit.purge(up_to_seq=last[0])
    return count, last[0], note


async def purge(
    store: Store, settings: RetentionSettings, *, now: float | None = None
) -> PurgeReport:
    """One pass over every kind of record (what the scheduled job runs)."""
    now = time.time() if now is None else now
    jobs = await store.jobs.purge_finished(older_than=now - settings.finished_jobs_days * DAY)
    events = await store.events.purge(older_than=now - settings.events_days * DAY)
    expired = await store.purge_expired()
    audit_count, up_to, note = await purge_audit(store, older_than=now - settings.audit_days * DAY)
    report = PurgeReport(
        finished_jobs=jobs,
        events=events,
        expired_values=expired,
        audit_records=audit_count,
        audit_purged_up_to=up_to,
        audit_note=note,
    )
    log.info("retention purge", **report.as_dict())
    return report


class RetentionPurger:
    """The ``retention.purge`` job handler; audits each pass."""

    def __init__(self, store: Store, settings: RetentionSettings, auditor: Auditor) -> None:
        self._store = store
        self._settings = settings
        self._auditor = auditor

    async def __call__(self, job: Job) -> dict[str, Any]:
        report = await purge(self._store, self._settings)
        await self._auditor.record(
            direction="internal",
            actor="gateway",
            operation=PURGE_KIND,
            outcome="ok",
            detail=report.audit_note,
            extra={k: v for k, v in report.as_dict().items() if k != "audit_note"},
        )
        return report.as_dict()
