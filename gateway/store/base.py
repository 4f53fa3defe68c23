"""The Store contract: everything the gateway keeps, behind one abstract class.

Two backends implement it side by side (``sqlite.py``, the embedded default, and ``redis.py``
for scale-out), and one contract test suite (``tests/contract/test_store.py``) runs against
both. Nothing else in the gateway keeps state that another instance would need.

Facets:
- values with TTL, atomic counters, compare-and-set, expiring locks with fencing tokens;
- ``jobs``: the durable queue (ordering keys, leases, retries, dead letters);
- ``audit``: the append-only exchange log, a hash chain;
- ``events``: canonical events for the provincial system, in ULID order.

Times are epoch seconds (float, UTC). Values are bytes; JSON is the callers' business.
Backend failures (connection refused, timeouts) raise ``gateway.errors.StoreUnavailable``.
"""

from __future__ import annotations

import enum
import hashlib
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "GENESIS_HASH",
    "Attempt",
    "AuditQuery",
    "AuditRecord",
    "AuditStore",
    "Event",
    "EventStore",
    "Job",
    "JobState",
    "JobStore",
    "NewJob",
    "QueueFull",
    "QueueStats",
    "Store",
    "chain_digest",
]

#: prev_hash of the first audit record
GENESIS_HASH = "0" * 64


def chain_digest(prev_hash: str, body: bytes) -> str:
    """The audit chain link: SHA-256 over the previous hash, a newline and the record body.

    ``body`` is the record's canonical JSON without ``seq``-independent fields excluded: see
    ``AuditRecord.canonical_body``. Both backends and ``gateway audit verify`` use this.
    """
    return hashlib.sha256(prev_hash.encode("ascii") + b"\n" + body).hexdigest()


# ---------------------------------------------------------------- jobs


class JobState(enum.StrEnum):
    QUEUED = "queued"  # waiting for run_at and for its ordering key's turn
    LEASED = "leased"  # a worker holds it until lease_expires_at
    SUCCEEDED = "succeeded"
    DEAD = "dead"  # dead-lettered: holds back later jobs of its ordering key
    DISCARDED = "discarded"


@dataclass(frozen=True, slots=True)
class Attempt:
    """One run of a job: when, how it ended, the error (safe text) and the request id."""

    at: float
    error: str | None = None
    error_type: str | None = None
    request_id: str | None = None
    retryable: bool | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "at": self.at,
            "error": self.error,
            "error_type": self.error_type,
            "request_id": self.request_id,
            "retryable": self.retryable,
        }


@dataclass(frozen=True, slots=True)
class NewJob:
    kind: str
    payload: dict[str, Any]
    #: jobs sharing a key run one at a time, in enqueue order (e.g. the dossier code)
    ordering_key: str | None = None
    #: a second enqueue with the same key returns the existing job instead of a new one
    dedupe_key: str | None = None
    #: not before this time (epoch seconds); None = now
    run_at: float | None = None
    request_id: str | None = None
    #: the client that created it (GET /v1/jobs/{id} is limited to that client)
    client_id: str | None = None

    def queued(self, job_id: str, *, now: float, run_at: float) -> Job:
        """The job as a backend has just stored it."""
        return Job(
            id=job_id,
            kind=self.kind,
            payload=self.payload,
            state=JobState.QUEUED,
            created_at=now,
            updated_at=now,
            run_at=run_at,
            ordering_key=self.ordering_key,
            dedupe_key=self.dedupe_key,
            request_id=self.request_id,
            client_id=self.client_id,
        )


@dataclass(slots=True)
class Job:
    id: str  # ULID, sortable by creation
    kind: str
    payload: dict[str, Any]
    state: JobState
    created_at: float
    updated_at: float
    run_at: float
    ordering_key: str | None = None
    dedupe_key: str | None = None
    request_id: str | None = None
    client_id: str | None = None
    attempts: list[Attempt] = field(default_factory=list)
    lease_owner: str | None = None
    lease_expires_at: float | None = None
    result: dict[str, Any] | None = None
    #: why it is dead (the last attempt's error), for listings
    last_error: str | None = None

    @property
    def attempt_count(self) -> int:
        return len(self.attempts)


@dataclass(frozen=True, slots=True)
class QueueStats:
    kind: str
    queued: int
    in_flight: int
    dead: int
    #: age in seconds (now - run_at) of the oldest queued job that is due and eligible (the
    #: head of its ordering key), None when none is due
    oldest_due_age: float | None


class QueueFull(Exception):
    """The kind's bounded queue is at its limit; the caller answers 503 with Retry-After."""


class JobStore(ABC):
    """The durable queue.

    Ordering: among jobs with the same ``ordering_key``, only the oldest one whose state is
    QUEUED, LEASED or DEAD is eligible ("the head"); a DEAD head blocks its key until it is
    replayed or discarded. Jobs without a key are independent.

    A lease is exclusive until ``lease_expires_at``; an expired lease makes the job leasable
    again (the worker died). Mutations that name an ``owner`` fail (return False) when the
    caller no longer holds the lease, so a slow worker cannot ack a job another one took.
    """

    @abstractmethod
    async def enqueue(self, job: NewJob, *, max_queued: int | None = None) -> tuple[Job, bool]:
        """Add a job; returns (job, created). With a known dedupe_key returns the existing job
        and False. Raises QueueFull when ``max_queued`` jobs of the kind are queued already."""

    @abstractmethod
    async def lease(
        self, owner: str, *, visibility: float, now: float, kinds: Sequence[str] | None = None
    ) -> Job | None:
        """Take the next eligible job (due, head of its ordering key, not leased or lease
        expired), oldest run_at first; mark it LEASED by owner until now + visibility."""

    @abstractmethod
    async def heartbeat(self, job_id: str, owner: str, *, visibility: float, now: float) -> bool:
        """Extend a held lease."""

    @abstractmethod
    async def ack(
        self,
        job_id: str,
        owner: str,
        *,
        now: float,
        attempt: Attempt,
        result: dict[str, Any] | None = None,
    ) -> bool:
        """Mark SUCCEEDED, recording the attempt."""

    @abstractmethod
    async def retry(self, job_id: str, owner: str, *, run_at: float, attempt: Attempt) -> bool:
        """Back to QUEUED at run_at, recording the failed attempt. Keeps its place in its
        ordering key (later jobs of the key still wait)."""

    @abstractmethod
    async def defer(self, job_id: str, owner: str, *, run_at: float) -> bool:
        """Back to QUEUED at run_at without counting an attempt (circuit open, shutdown)."""

    @abstractmethod
    async def dead_letter(self, job_id: str, owner: str, *, now: float, attempt: Attempt) -> bool:
        """Mark DEAD with the final attempt; it now blocks its ordering key."""

    @abstractmethod
    async def replay(self, job_id: str, *, now: float) -> Job | None:
        """DEAD -> QUEUED, due now, attempts kept. None if not DEAD."""

    @abstractmethod
    async def discard(self, job_id: str, *, now: float) -> Job | None:
        """DEAD -> DISCARDED, unblocking its key. None if not DEAD."""

    @abstractmethod
    async def get(self, job_id: str) -> Job | None: ...

    @abstractmethod
    async def list_dead(
        self, *, kind: str | None = None, limit: int = 100, before_id: str | None = None
    ) -> list[Job]:
        """Dead letters, newest first, paginated by id."""

    @abstractmethod
    async def held_back(self, ordering_key: str, *, limit: int = 100) -> list[Job]:
        """QUEUED jobs of the key waiting behind its head (what a dead letter holds back)."""

    @abstractmethod
    async def by_ordering_key(self, ordering_key: str, *, limit: int = 100) -> list[Job]:
        """All jobs of a key, any state, in enqueue order."""

    @abstractmethod
    async def stats(self, *, now: float) -> list[QueueStats]:
        """Per kind that has any queued, leased or dead job."""

    @abstractmethod
    async def count_queued(self, kind: str) -> int: ...

    @abstractmethod
    async def purge_finished(self, *, older_than: float) -> int:
        """Delete SUCCEEDED and DISCARDED jobs updated before ``older_than``; returns count."""


# ---------------------------------------------------------------- audit


@dataclass(slots=True)
class AuditRecord:
    """One exchange, inbound or outbound. Never the payload or an identifier in clear."""

    at: float
    direction: str  # "inbound" | "outbound" | "internal"
    actor: str  # client id or national system name
    operation: str
    outcome: str  # "ok" | "error" | "rejected" | ...
    adapter: str | None = None
    request_id: str | None = None
    status: int | None = None
    latency_ms: float | None = None
    procedure_code: str | None = None
    dossier_code: str | None = None
    officer_id: str | None = None
    payload_sha256: str | None = None
    #: keyed digests (HMAC-SHA256 hex) of personal identifiers
    subject_digests: list[str] = field(default_factory=list)
    detail: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    # assigned by the store on append
    seq: int = 0
    prev_hash: str = GENESIS_HASH
    hash: str = ""

    def body_dict(self) -> dict[str, Any]:
        """Every field the chain covers (all but ``hash``)."""
        return {
            "seq": self.seq,
            "at": self.at,
            "direction": self.direction,
            "actor": self.actor,
            "operation": self.operation,
            "outcome": self.outcome,
            "adapter": self.adapter,
            "request_id": self.request_id,
            "status": self.status,
            "latency_ms": self.latency_ms,
            "procedure_code": self.procedure_code,
            "dossier_code": self.dossier_code,
            "officer_id": self.officer_id,
            "payload_sha256": self.payload_sha256,
            "subject_digests": list(self.subject_digests),
            "detail": self.detail,
            "extra": self.extra,
            "prev_hash": self.prev_hash,
        }

    def as_dict(self) -> dict[str, Any]:
        """Every chain field, ``hash`` included: how backends store it and exports write it."""
        out = self.body_dict()
        out["hash"] = self.hash
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AuditRecord:
        """The inverse of :meth:`as_dict` (stored rows, export lines)."""
        return cls(
            at=float(data["at"]),
            direction=str(data["direction"]),
            actor=str(data["actor"]),
            operation=str(data["operation"]),
            outcome=str(data["outcome"]),
            adapter=data.get("adapter"),
            request_id=data.get("request_id"),
            status=data.get("status"),
            latency_ms=data.get("latency_ms"),
            procedure_code=data.get("procedure_code"),
            dossier_code=data.get("dossier_code"),
            officer_id=data.get("officer_id"),
            payload_sha256=data.get("payload_sha256"),
            subject_digests=list(data.get("subject_digests") or []),
            detail=data.get("detail"),
            extra=dict(data.get("extra") or {}),
            seq=int(data["seq"]),
            prev_hash=str(data["prev_hash"]),
            hash=str(data["hash"]),
        )

    def canonical_body(self) -> bytes:
        import json

        return json.dumps(
            self.body_dict(), sort_keys=True, separators=(",", ":"), ensure_ascii=False
        ).encode("utf-8")

    def compute_hash(self) -> str:
        return chain_digest(self.prev_hash, self.canonical_body())


@dataclass(frozen=True, slots=True)
class AuditQuery:
    #: since <= at < until
    since: float | None = None
    until: float | None = None
    adapter: str | None = None
    actor: str | None = None
    outcome: str | None = None
    request_id: str | None = None
    dossier_code: str | None = None
    subject_digest: str | None = None
    operation: str | None = None
    #: newest first; records with seq < before_seq
    before_seq: int | None = None
    limit: int = 100


class AuditStore(ABC):
    @abstractmethod
    async def append(self, record: AuditRecord) -> AuditRecord:
        """Atomically assign seq = last + 1 and prev_hash = last hash, compute ``hash`` with
        ``record.compute_hash()``, store, and return the completed record. Appends from
        several instances at once must still form one unbroken chain."""

    @abstractmethod
    async def query(self, q: AuditQuery) -> list[AuditRecord]: ...

    @abstractmethod
    def iterate(
        self, *, from_seq: int = 1, to_seq: int | None = None
    ) -> AsyncIterator[AuditRecord]:
        """All records in seq order (for verify and export), streamed."""

    @abstractmethod
    async def head(self) -> tuple[int, str]:
        """(last seq, last hash); (0, GENESIS_HASH) when empty."""

    @abstractmethod
    async def purge(self, *, up_to_seq: int) -> int:
        """Delete records with seq <= up_to_seq (after export); the chain then starts at the
        first remaining record, whose prev_hash is kept for verification."""


# ---------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class Event:
    """A canonical event for the provincial system (webhook and pull feed)."""

    id: str  # ULID: sortable, the pull feed's cursor
    type: str  # e.g. "dossier.received", "job.succeeded"
    occurred_at: float
    data: dict[str, Any]
    request_id: str | None = None
    #: a dossier code or other subject, for filtering timelines
    subject: str | None = None


class EventStore(ABC):
    @abstractmethod
    async def append(self, event: Event) -> None: ...

    @abstractmethod
    async def get(self, event_id: str) -> Event | None: ...

    @abstractmethod
    async def list_after(self, after_id: str | None, *, limit: int = 100) -> list[Event]:
        """Events with id > after_id, oldest first."""

    @abstractmethod
    async def purge(self, *, older_than: float) -> int: ...


# ---------------------------------------------------------------- the store


class Store(ABC):
    jobs: JobStore
    audit: AuditStore
    events: EventStore

    @abstractmethod
    async def open(self) -> None:
        """Connect and create what is missing (tables, scripts). Idempotent."""

    @abstractmethod
    async def close(self) -> None: ...

    @abstractmethod
    async def ping(self) -> bool:
        """True when the backend answers (readiness)."""

    # values with TTL -------------------------------------------------------------------
    @abstractmethod
    async def get(self, key: str) -> bytes | None: ...

    @abstractmethod
    async def set(self, key: str, value: bytes, *, ttl: float | None = None) -> None: ...

    @abstractmethod
    async def set_if_absent(self, key: str, value: bytes, *, ttl: float | None = None) -> bool:
        """Store only if the key is absent (or expired); True if stored."""

    @abstractmethod
    async def compare_and_set(
        self, key: str, expected: bytes | None, value: bytes, *, ttl: float | None = None
    ) -> bool:
        """Replace the value only if it currently equals ``expected`` (None = absent)."""

    @abstractmethod
    async def delete(self, key: str) -> bool: ...

    @abstractmethod
    async def incr(self, key: str, amount: int = 1, *, ttl: float | None = None) -> int:
        """Atomic counter; ``ttl`` applies when the key is created (fixed windows)."""

    @abstractmethod
    async def scan(self, prefix: str, *, limit: int = 1000) -> dict[str, bytes]:
        """Live keys starting with prefix and their values (small sets: health, webhooks)."""

    async def purge_expired(self) -> int:
        """Delete expired values; returns how many (for the retention job). Reads already
        ignore expired values; Redis expires keys by itself, so its count is 0."""
        return 0

    # locks -----------------------------------------------------------------------------
    @abstractmethod
    async def acquire_lock(self, name: str, owner: str, *, ttl: float) -> int | None:
        """Take or renew the lock; returns a fencing token that strictly increases each time
        the lock changes hands, or None if another owner holds it."""

    @abstractmethod
    async def release_lock(self, name: str, owner: str) -> bool: ...

    @abstractmethod
    async def lock_token(self, name: str) -> int:
        """The latest fencing token issued for the lock (0 if never)."""
