"""The exchange log: one record per exchange, chained by SHA-256, never a payload or an ID.

Every inbound and outbound exchange becomes an :class:`~gateway.store.base.AuditRecord`
through :meth:`Auditor.record`. The record keeps metadata (who, which system, which operation,
the purpose fields, outcome, status, latency), the SHA-256 of the payload and keyed digests
(HMAC-SHA256 with ``security.identifier_digest_key``) of the personal identifiers involved.
The store appends it to a hash chain (``store.base.chain_digest``): each record's hash covers
its body and the previous record's hash, so editing, inserting or deleting one record breaks
every link after it. :func:`verify_chain` walks the chain and names the first broken record;
:func:`export` writes JSON Lines with every chain field, and records the export high-water
mark that retention needs before it may purge (:mod:`gateway.retention`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import math
import time
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import structlog

from gateway.errors import InvalidRequest
from gateway.observability import request_id_var
from gateway.store.base import GENESIS_HASH, AuditRecord, Store

__all__ = [
    "ANCHOR_KEY",
    "EXPORT_MARK_KEY",
    "Auditor",
    "ChainVerifier",
    "ExportMark",
    "ExportResult",
    "VerifyResult",
    "chain_status",
    "export",
    "normalise_identifier",
    "parse_time",
    "read_anchor",
    "read_export_mark",
    "verify_chain",
    "verify_export_file",
    "verify_records",
]

log = structlog.get_logger(__name__)

#: the highest seq such that every record up to it has been exported (JSON ExportMark)
EXPORT_MARK_KEY = "audit:export:mark"
#: the last purged record (seq, hash): the first remaining record must link to it
ANCHOR_KEY = "audit:anchor"
#: the last verification result, so the dashboard verifies only what is new
STATUS_KEY = "audit:verify:status"
#: a cached status older than this is re-verified from the start, not just the new records
FULL_REVERIFY_SECONDS = 300.0

#: how far out of time order instances may append records (their clocks differ)
CLOCK_SKEW_SECONDS = 60.0

#: keep details short: they are for people, and must not grow the log without bound
MAX_DETAIL_CHARS = 500


#: times typed without an offset are the province's local time
LOCAL_TZ = ZoneInfo("Asia/Ho_Chi_Minh")


def parse_time(text: str) -> float:
    """Epoch seconds from epoch seconds or ISO 8601 (``2026-01-31``, ``2026-01-31T08:00``,
    ``...+07:00``, ``...Z``); without an offset the time is Asia/Ho_Chi_Minh. ValueError
    otherwise."""
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if when.tzinfo is None:
        when = when.replace(tzinfo=LOCAL_TZ)
    return when.timestamp()


def normalise_identifier(identifier: str) -> str:
    """The canonical form digested: no whitespace, upper case (ID numbers typed as
    ``"0790 1234 5678"`` or passport numbers in lower case give the same digest)."""
    return "".join(identifier.split()).upper()


def _json_plain(value: Mapping[str, Any] | None) -> dict[str, Any]:
    """A JSON round trip, so the stored record hashes the same once read back (tuples become
    lists, non-string keys strings); a value JSON cannot carry is refused here, not later."""
    if not value:
        return {}
    try:
        plain = json.loads(json.dumps(dict(value), ensure_ascii=False, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise InvalidRequest(f"audit extra is not plain JSON: {exc}") from None
    assert isinstance(plain, dict)
    return plain


class Auditor:
    """Builds audit records and appends them to the chain. One per process (the runtime's)."""

    def __init__(self, store: Store, digest_key: bytes) -> None:
        if not digest_key:
            raise ValueError("the identifier digest key must not be empty")
        self._store = store
        self._key = digest_key

    def digest(self, identifier: str) -> str:
        """Keyed digest (HMAC-SHA256, hex) of a personal identifier, as stored in records.

        Search the log with it; the identifier itself is never stored."""
        normal = normalise_identifier(identifier)
        return hmac.new(self._key, normal.encode("utf-8"), hashlib.sha256).hexdigest()

    async def record(
        self,
        *,
        direction: str,
        actor: str,
        operation: str,
        outcome: str,
        adapter: str | None = None,
        status: int | None = None,
        latency_ms: float | None = None,
        procedure_code: str | None = None,
        dossier_code: str | None = None,
        officer_id: str | None = None,
        payload: bytes | None = None,
        subjects: Sequence[str] = (),
        detail: str | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> AuditRecord:
        """Append one exchange to the chain and return the stored record (seq, hash set).

        ``payload`` is hashed, never kept; ``subjects`` (ID numbers) become keyed digests.
        ``detail`` and ``extra`` must hold no personal data: they are stored as given.
        Raises ``StoreUnavailable`` when the store cannot be reached (the caller decides
        whether the exchange may proceed unaudited; the gateway's own paths do not)."""
        digests: list[str] = []
        for subject in subjects:
            if subject and normalise_identifier(subject):
                d = self.digest(subject)
                if d not in digests:
                    digests.append(d)
        if latency_ms is not None:
            # a float with fixed precision, so a backend storing REAL reads back the same JSON
            latency_ms = round(float(latency_ms), 3)
            if not math.isfinite(latency_ms):
                latency_ms = None
        record = AuditRecord(
            at=time.time(),
            direction=direction,
            actor=actor,
            operation=operation,
            outcome=outcome,
            adapter=adapter,
            request_id=request_id_var.get(),
            status=int(status) if status is not None else None,
            latency_ms=latency_ms,
            procedure_code=procedure_code,
            dossier_code=dossier_code,
            officer_id=officer_id,
            payload_sha256=hashlib.sha256(payload).hexdigest() if payload is not None else None,
            subject_digests=digests,
            detail=detail[:MAX_DETAIL_CHARS] if detail else detail,
            extra=_json_plain(extra),
        )
        return await self._store.audit.append(record)


# ---------------------------------------------------------------- verification


@dataclass(frozen=True, slots=True)
class VerifyResult:
    ok: bool
    #: records examined
    checked: int
    first_broken_seq: int | None = None
    reason: str | None = None
    #: the last record examined (the chain head when ok)
    last_seq: int = 0
    last_hash: str = GENESIS_HASH
    #: when this result was computed (epoch seconds)
    verified_at: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class ChainVerifier:
    """Checks records fed in seq order: each hash recomputed, each link to the one before.

    ``expected_prev`` is the hash the first record must link to: ``GENESIS_HASH`` for a chain
    starting at seq 1, the purge anchor's hash after a purge, or None to accept the first
    record's ``prev_hash`` as given (a slice of the chain, e.g. one export file)."""

    def __init__(
        self, *, expected_prev: str | None = GENESIS_HASH, expected_seq: int | None = None
    ) -> None:
        self._prev_hash = expected_prev
        self._prev_seq = None if expected_seq is None else expected_seq - 1
        self.checked = 0
        self.broken: tuple[int, str] | None = None
        self.last_seq = 0 if expected_seq is None else expected_seq - 1
        self.last_hash = expected_prev or GENESIS_HASH

    def feed(self, record: AuditRecord) -> bool:
        """False (and ``broken`` set) at the first bad record; later records are ignored."""
        if self.broken is not None:
            return False
        self.checked += 1
        reason = self._check(record)
        if reason is not None:
            self.broken = (record.seq, reason)
            return False
        self._prev_hash = record.hash
        self._prev_seq = record.seq
        self.last_seq = record.seq
        self.last_hash = record.hash
        return True

    def _check(self, record: AuditRecord) -> str | None:
        if self._prev_seq is not None and record.seq != self._prev_seq + 1:
            return f"seq {record.seq} follows {self._prev_seq}: records are missing"
        if self._prev_hash is not None and record.prev_hash != self._prev_hash:
            return "prev_hash does not match the previous record's hash"
        if record.compute_hash() != record.hash:
            return "the record's content does not match its hash"
        return None

    def result(self) -> VerifyResult:
        if self.broken is not None:
            seq, reason = self.broken
            return VerifyResult(
                ok=False,
                checked=self.checked,
                first_broken_seq=seq,
                reason=reason,
                last_seq=self.last_seq,
                last_hash=self.last_hash,
                verified_at=time.time(),
            )
        return VerifyResult(
            ok=True,
            checked=self.checked,
            last_seq=self.last_seq,
            last_hash=self.last_hash,
            verified_at=time.time(),
        )


def verify_records(
    records: Iterable[AuditRecord],
    *,
    expected_prev: str | None = GENESIS_HASH,
    expected_seq: int | None = 1,
) -> VerifyResult:
    """Verify records already in memory (a chain from seq 1 unless told otherwise)."""
    verifier = ChainVerifier(expected_prev=expected_prev, expected_seq=expected_seq)
    for record in records:
        if not verifier.feed(record):
            break
    return verifier.result()


async def read_anchor(store: Store) -> tuple[int, str] | None:
    """(seq, hash) of the last purged record, or None when nothing was ever purged."""
    raw = await store.get(ANCHOR_KEY)
    if raw is None:
        return None
    data = json.loads(raw)
    return int(data["seq"]), str(data["hash"])


async def _verify_from(
    store: Store, verifier: ChainVerifier, from_seq: int, to_seq: int | None = None
) -> VerifyResult:
    records: AsyncIterator[AuditRecord] = store.audit.iterate(from_seq=from_seq, to_seq=to_seq)
    async for record in records:
        if not verifier.feed(record):
            break
    return verifier.result()


async def verify_chain(store: Store, *, to_seq: int | None = None) -> VerifyResult:
    """Walk the whole stored chain from its first record (after the purge anchor, if any).

    Then compares the end of the walk with the store's head (last seq and hash, kept apart
    from the records): records deleted from the end leave the head pointing past them."""
    anchor = await read_anchor(store)
    if anchor is None:
        verifier = ChainVerifier(expected_prev=GENESIS_HASH, expected_seq=1)
        result = await _verify_from(store, verifier, 1, to_seq)
    else:
        verifier = ChainVerifier(expected_prev=anchor[1], expected_seq=anchor[0] + 1)
        result = await _verify_from(store, verifier, anchor[0] + 1, to_seq)
    if result.ok and to_seq is None:
        result = await _check_head(store, verifier)
    await _save_status(store, result)
    return result


async def _check_head(store: Store, verifier: ChainVerifier) -> VerifyResult:
    head_seq, head_hash = await store.audit.head()
    if head_seq > verifier.last_seq:
        # appended while we walked, or deleted from the end: look once more
        result = await _verify_from(store, verifier, verifier.last_seq + 1, head_seq)
        if not result.ok:
            return result
    result = verifier.result()
    if head_seq > verifier.last_seq:
        missing = verifier.last_seq + 1
        return dataclasses.replace(
            result,
            ok=False,
            first_broken_seq=missing,
            reason=f"records {missing}..{head_seq} are missing (the store's head is {head_seq})",
        )
    if head_seq == verifier.last_seq and head_seq > 0 and head_hash != verifier.last_hash:
        return dataclasses.replace(
            result,
            ok=False,
            first_broken_seq=head_seq,
            reason="the store's head hash differs from the last record's hash",
        )
    return result


async def _save_status(store: Store, result: VerifyResult) -> None:
    data = result.as_dict()
    data["full_at"] = result.verified_at
    await store.set(STATUS_KEY, json.dumps(data).encode())


async def chain_status(store: Store, *, full_every: float = FULL_REVERIFY_SECONDS) -> VerifyResult:
    """The chain's state, cheaply: the last result plus a check of the records appended since.

    A full walk runs when the last full one is older than ``full_every`` seconds, so tampering
    with an old record shows within that time. ``gateway audit verify`` always walks it all."""
    raw = await store.get(STATUS_KEY)
    now = time.time()
    if raw is None:
        return await verify_chain(store)
    data = json.loads(raw)
    full_at = float(data.pop("full_at", 0.0))
    cached = VerifyResult(**data)
    if now - full_at >= full_every:
        return await verify_chain(store)
    if not cached.ok:
        return cached
    verifier = ChainVerifier(expected_prev=cached.last_hash, expected_seq=cached.last_seq + 1)
    fresh = await _verify_from(store, verifier, cached.last_seq + 1)
    merged = VerifyResult(
        ok=fresh.ok,
        checked=cached.checked + fresh.checked,
        first_broken_seq=fresh.first_broken_seq,
        reason=fresh.reason,
        last_seq=fresh.last_seq,
        last_hash=fresh.last_hash,
        verified_at=fresh.verified_at,
    )
    out = merged.as_dict()
    out["full_at"] = full_at
    await store.set(STATUS_KEY, json.dumps(out).encode())
    return merged


# ---------------------------------------------------------------- export


@dataclass(frozen=True, slots=True)
class ExportMark:
    """Every record with seq <= ``seq`` has been exported (``hash`` is that record's)."""

    seq: int
    hash: str
    at: float
    file: str


@dataclass(frozen=True, slots=True)
class ExportResult:
    path: Path
    written: int
    first_seq: int | None
    last_seq: int | None
    #: the high-water mark after this export (None: nothing contiguous exported yet)
    mark: ExportMark | None


async def read_export_mark(store: Store) -> ExportMark | None:
    raw = await store.get(EXPORT_MARK_KEY)
    if raw is None:
        return None
    return ExportMark(**json.loads(raw))


async def export(
    store: Store, path: Path, since: float | None = None, until: float | None = None
) -> ExportResult:
    """Write the records with ``since <= at < until`` as JSON Lines, in seq order.

    The export high-water mark advances over the records exported contiguously from the
    current mark: only those may later be purged. The file is written beside its final name
    and renamed, so a half-written export never counts."""
    mark = await read_export_mark(store)
    mark_seq = mark.seq if mark else 0
    anchor = await read_anchor(store)
    start = (anchor[0] + 1) if anchor else 1
    new_mark: tuple[int, str] | None = None
    # the mark may only advance over records exported without a gap after it
    contiguous = True
    written = 0
    first_seq: int | None = None
    last_seq: int | None = None
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    with partial.open("w", encoding="utf-8") as out:
        async for record in store.audit.iterate(from_seq=start):
            if until is not None and record.at >= until + CLOCK_SKEW_SECONDS:
                # appended in time order (give or take instances' clock skew): nothing
                # later can fall in the range
                break
            included = (since is None or record.at >= since) and (
                until is None or record.at < until
            )
            if included:
                out.write(json.dumps(record.as_dict(), ensure_ascii=False) + "\n")
                written += 1
                first_seq = record.seq if first_seq is None else first_seq
                last_seq = record.seq
            if record.seq > mark_seq and contiguous:
                if included:
                    new_mark = (record.seq, record.hash)
                else:
                    contiguous = False
    partial.replace(path)
    result_mark = mark
    if new_mark is not None:
        result_mark = ExportMark(seq=new_mark[0], hash=new_mark[1], at=time.time(), file=str(path))
        await store.set(EXPORT_MARK_KEY, json.dumps(asdict(result_mark)).encode())
    log.info(
        "audit exported", path=str(path), written=written, mark=result_mark and result_mark.seq
    )
    return ExportResult(
        path=path, written=written, first_seq=first_seq, last_seq=last_seq, mark=result_mark
    )


def verify_export_file(path: Path) -> VerifyResult:
    """Verify an export file on its own: hashes and links within it (its first record's
    ``prev_hash`` is taken as given, since the file may start anywhere in the chain)."""
    verifier = ChainVerifier(expected_prev=None)
    with path.open(encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            if not verifier.feed(AuditRecord.from_dict(json.loads(line))):
                break
    return verifier.result()
