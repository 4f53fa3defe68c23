"""JSON encodings shared by both store backends (private).

Both backends keep payloads, attempts, audit records and event data as compact JSON text so a
record written by one reads back identically (and the audit hash, which covers the canonical
body, does not depend on the backend).
"""

from __future__ import annotations

import json
from typing import Any

from gateway.store.base import Attempt, AuditRecord, Event, NewJob

__all__ = [
    "attempt_json",
    "attempts_from_json",
    "audit_from_json",
    "audit_json",
    "check_new_job",
    "dumps",
    "event_from_json",
    "event_json",
    "loads_dict",
]


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def loads_dict(text: str | bytes | None) -> dict[str, Any] | None:
    if text is None or text == "" or text == b"":
        return None
    value = json.loads(text)
    if not isinstance(value, dict):
        raise ValueError("stored JSON is not an object")
    return value


def check_new_job(job: NewJob) -> None:
    """Refuse empty keys: on Redis they would read as "no key", on SQLite as one shared key."""
    if job.ordering_key == "":
        raise ValueError("ordering_key must not be empty")
    if job.dedupe_key == "":
        raise ValueError("dedupe_key must not be empty")


def attempt_json(attempt: Attempt) -> str:
    return dumps(attempt.as_dict())


def attempts_from_json(text: str | bytes | None) -> list[Attempt]:
    if not text:
        return []
    return [
        Attempt(
            at=float(a["at"]),
            error=a.get("error"),
            error_type=a.get("error_type"),
            request_id=a.get("request_id"),
            retryable=a.get("retryable"),
        )
        for a in json.loads(text)
    ]


def audit_json(record: AuditRecord) -> str:
    return dumps(record.as_dict())


def audit_from_json(text: str | bytes) -> AuditRecord:
    return AuditRecord.from_dict(json.loads(text))


def event_json(event: Event) -> str:
    return dumps(
        {
            "id": event.id,
            "type": event.type,
            "occurred_at": event.occurred_at,
            "data": event.data,
            "request_id": event.request_id,
            "subject": event.subject,
        }
    )


def event_from_json(text: str | bytes) -> Event:
    d = json.loads(text)
    return Event(
        id=d["id"],
        type=d["type"],
        occurred_at=d["occurred_at"],
        data=d["data"],
        request_id=d.get("request_id"),
        subject=d.get("subject"),
    )
