"""A dossier's integration timeline, across every national system.

Built from what the gateway already keeps, never a copy: the audit records carrying the dossier
code (exchanges with the national systems, callbacks received, replays) and the jobs whose
ordering key is the dossier code (pending, failed, replayed work). Used by the API
(``GET /v1/dossiers/{code}/timeline``) and the ops dashboard.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from gateway.store.base import AuditQuery, AuditRecord, Job, Store

__all__ = ["TimelineEntry", "dossier_timeline"]

#: how operations read on a timeline (the English label, and the dashboard's translation
#: key); others show as they are: they are the systems' own operation names
_LABELS: dict[str, tuple[str, str]] = {
    "dlq.replay": ("replayed by an operator", "tl_replayed"),
    "dlq.discard": ("discarded by an operator", "tl_discarded"),
}


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    at: float
    #: English, as the API returns it
    label: str
    outcome: str
    system: str | None = None
    detail: str | None = None
    request_id: str | None = None
    source: str = "audit"  # "audit" | "job"
    ref: str | None = None  # audit seq or job id
    #: the label as a translation key (``tl_*`` in gateway/ops/i18n.py) and its arguments, for
    #: the dashboard; None when the label is an operation name, shown as it is
    label_key: str | None = None
    label_args: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The API's form: times in RFC 3339 UTC like every other time the API returns."""
        return {
            "at": datetime.fromtimestamp(self.at, UTC).isoformat().replace("+00:00", "Z"),
            "label": self.label,
            "outcome": self.outcome,
            "system": self.system,
            "detail": self.detail,
            "request_id": self.request_id,
            "source": self.source,
            "ref": self.ref,
        }


def _from_audit(r: AuditRecord, queued_at: dict[str, float]) -> TimelineEntry:
    detail = r.detail
    if r.direction == "internal":  # an operator's move: say who
        detail = f"{detail} — {r.actor}" if detail else r.actor
    at = r.at
    job_id = r.extra.get("job_id")
    if r.direction != "internal" and isinstance(job_id, str) and job_id in queued_at:
        # a command is audited just after its job is queued, and a worker may already have
        # tried it by then: the acceptance shows when the job was queued, before any attempt.
        # An operator's move (replay, discard) names the job too, but came later: it stays put
        at = min(at, queued_at[job_id])
    label, key = _LABELS.get(r.operation, (r.operation, None))
    return TimelineEntry(
        at=at,
        label=label,
        label_key=key,
        outcome=r.outcome,
        system=r.adapter,
        detail=detail,
        request_id=r.request_id,
        source="audit",
        ref=str(r.seq),
    )


def _job_entries(job: Job) -> list[TimelineEntry]:
    system = job.kind.split(".", 1)[0]
    entries = [
        TimelineEntry(
            at=job.created_at,
            label=f"{job.kind} queued",
            label_key="tl_job_queued",
            label_args={"kind": job.kind},
            outcome="queued",
            system=system,
            request_id=job.request_id,
            source="job",
            ref=job.id,
        )
    ]
    for attempt in job.attempts:
        if attempt.error is None:
            continue
        entries.append(
            TimelineEntry(
                at=attempt.at,
                label=f"{job.kind} attempt failed",
                label_key="tl_job_attempt_failed",
                label_args={"kind": job.kind},
                outcome="error",
                system=system,
                detail=attempt.error,
                request_id=attempt.request_id,
                source="job",
                ref=job.id,
            )
        )
    if job.state.value in ("queued", "leased", "dead"):
        entries.append(
            TimelineEntry(
                at=job.updated_at,
                label=f"{job.kind} {job.state.value}",
                label_key=f"tl_job_now_{job.state.value}",
                label_args={"kind": job.kind},
                outcome="error" if job.state.value == "dead" else "pending",
                system=system,
                detail=job.last_error if job.state.value == "dead" else None,
                source="job",
                ref=job.id,
            )
        )
    return entries


async def dossier_timeline(
    store: Store, dossier_code: str, *, limit: int = 500
) -> list[TimelineEntry]:
    """Every integration event of one dossier, oldest first."""
    records = await store.audit.query(AuditQuery(dossier_code=dossier_code, limit=limit))
    jobs = await store.jobs.by_ordering_key(dossier_code, limit=limit)
    queued_at = {job.id: job.created_at for job in jobs}
    entries = [_from_audit(r, queued_at) for r in records]
    for job in jobs:
        entries.extend(_job_entries(job))
    # stable: at equal times an audit record (the command accepted) precedes its job's entries
    entries.sort(key=lambda e: e.at)
    return entries[-limit:]
