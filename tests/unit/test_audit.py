"""The audit chain: digests, hashing, verification over records, export and its mark.

The chain tests that need storage use a real SQLite file (the store under test elsewhere);
the pure ones build records in memory with the same ``chain_digest`` the stores use.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.audit import (
    EXPORT_MARK_KEY,
    Auditor,
    chain_status,
    export,
    normalise_identifier,
    read_export_mark,
    verify_chain,
    verify_export_file,
    verify_records,
)
from gateway.errors import InvalidRequest
from gateway.observability import request_id_var
from gateway.store.base import GENESIS_HASH, AuditQuery, AuditRecord
from gateway.store.sqlite import SqliteStore

KEY = b"test-digest-key"


def _chain(n: int) -> list[AuditRecord]:
    """n records linked the way a store links them."""
    records: list[AuditRecord] = []
    prev = GENESIS_HASH
    for i in range(1, n + 1):
        rec = AuditRecord(
            at=1_700_000_000.0 + i,
            direction="outbound",
            actor="population_db",
            operation="verify",
            outcome="ok",
            seq=i,
            prev_hash=prev,
            subject_digests=[f"{i:064x}"],
            extra={"n": i},
        )
        rec.hash = rec.compute_hash()
        prev = rec.hash
        records.append(rec)
    return records


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    s = SqliteStore(tmp_path / "gateway.db")
    await s.open()
    yield s
    await s.close()


# ---------------------------------------------------------------- digests


def test_digest_is_keyed_hmac_of_the_normalised_identifier(tmp_path: Path) -> None:
    auditor = Auditor(SqliteStore(tmp_path / "x.db"), KEY)  # digest never touches the store
    expected = hmac.new(KEY, b"079012345678", hashlib.sha256).hexdigest()
    assert auditor.digest("079012345678") == expected
    assert auditor.digest(" 0790 1234 5678 ") == expected
    assert auditor.digest("b1234567") == auditor.digest("B1234567")
    # another key, another digest: a leaked log cannot be matched against a list of IDs
    other = Auditor(SqliteStore(tmp_path / "x.db"), b"another-key")
    assert other.digest("079012345678") != expected


def test_normalise_identifier() -> None:
    assert normalise_identifier(" 0790\t1234 5678\n") == "079012345678"
    assert normalise_identifier("c0123456") == "C0123456"


def test_empty_key_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="must not be empty"):
        Auditor(SqliteStore(tmp_path / "x.db"), b"")


# ---------------------------------------------------------------- verification in memory


def test_an_intact_chain_verifies() -> None:
    result = verify_records(_chain(5))
    assert result.ok
    assert result.checked == 5
    assert result.last_seq == 5
    assert result.first_broken_seq is None


def test_an_empty_chain_verifies() -> None:
    result = verify_records([])
    assert result.ok
    assert result.checked == 0


def test_an_edited_record_is_named() -> None:
    records = _chain(6)
    records[3].outcome = "error"  # seq 4 edited, its hash left as it was
    result = verify_records(records)
    assert not result.ok
    assert result.first_broken_seq == 4
    assert result.reason is not None and "content" in result.reason
    assert result.checked == 4


def test_an_edited_record_with_a_recomputed_hash_breaks_the_next_link() -> None:
    records = _chain(6)
    records[2].dossier_code = "H99.99-250101-0001"
    records[2].hash = records[2].compute_hash()  # the forger rehashed seq 3 only
    result = verify_records(records)
    assert result.first_broken_seq == 4
    assert result.reason is not None and "prev_hash" in result.reason


def test_a_deleted_record_is_named() -> None:
    records = _chain(6)
    del records[2]
    result = verify_records(records)
    assert result.first_broken_seq == 4
    assert result.reason is not None and "missing" in result.reason


def test_a_chain_must_start_at_genesis() -> None:
    records = _chain(3)
    assert not verify_records(records[1:]).ok
    # a slice of the chain verifies when its start is taken as given (an export file)
    assert verify_records(records[1:], expected_prev=None, expected_seq=None).ok


def test_each_field_is_covered_by_the_hash() -> None:
    base = _chain(1)[0]
    for f in dataclasses.fields(AuditRecord):
        if f.name == "hash":
            continue
        changed = dataclasses.replace(base)
        value = getattr(base, f.name)
        if isinstance(value, bool) or value is None:
            new: object = "x"
        elif isinstance(value, int | float):
            new = value + 1
        elif isinstance(value, str):
            new = value + "x"
        elif isinstance(value, list):
            new = [*value, "x"]
        else:
            new = {**value, "x": 1}
        setattr(changed, f.name, new)
        assert changed.compute_hash() != base.hash, f.name


# ---------------------------------------------------------------- the Auditor over a store


async def test_record_hashes_payload_digests_subjects_and_reads_request_id(
    store: SqliteStore,
) -> None:
    auditor = Auditor(store, KEY)
    token = request_id_var.set("req-123")
    try:
        rec = await auditor.record(
            direction="outbound",
            actor="population_db",
            adapter="population_db",
            operation="verify_citizen",
            outcome="ok",
            status=200,
            latency_ms=12,
            procedure_code="1.001",
            dossier_code="H01.01-250101-0001",
            officer_id="officer-7",
            payload=b"<xml>079012345678</xml>",
            subjects=["079012345678", "0790 1234 5678", ""],
            extra={"attempt": 1, "tags": ("a", "b")},
        )
    finally:
        request_id_var.reset(token)
    assert rec.seq == 1
    assert rec.request_id == "req-123"
    assert rec.payload_sha256 == hashlib.sha256(b"<xml>079012345678</xml>").hexdigest()
    assert rec.subject_digests == [auditor.digest("079012345678")]  # one person, once
    stored = (await store.audit.query(AuditQuery()))[0]
    # the identifier itself is nowhere in what was stored
    assert "079012345678" not in json.dumps(stored.as_dict())
    assert stored.latency_ms == 12.0
    assert stored.extra == {"attempt": 1, "tags": ["a", "b"]}
    assert stored.hash == stored.compute_hash()
    found = await store.audit.query(AuditQuery(subject_digest=auditor.digest("079 012 345 678")))
    assert [r.seq for r in found] == [1]


async def test_record_refuses_extra_that_is_not_json(store: SqliteStore) -> None:
    auditor = Auditor(store, KEY)
    with pytest.raises(InvalidRequest):
        await auditor.record(
            direction="internal", actor="x", operation="y", outcome="ok", extra={"o": object()}
        )


async def test_verify_chain_over_the_store_and_tampering(store: SqliteStore) -> None:
    auditor = Auditor(store, KEY)
    for i in range(12):
        await auditor.record(
            direction="inbound", actor="client-a", operation=f"op{i}", outcome="ok"
        )
    result = await verify_chain(store)
    assert result.ok
    assert (result.checked, result.last_seq) == (12, 12)

    # tamper with seq 7's stored JSON, the way someone with the file would
    def tamper(conn: object) -> None:
        import sqlite3

        assert isinstance(conn, sqlite3.Connection)
        body = json.loads(conn.execute("SELECT body FROM audit WHERE seq = 7").fetchone()[0])
        body["outcome"] = "error"
        conn.execute("UPDATE audit SET body = ? WHERE seq = 7", (json.dumps(body),))

    await store._db.write(tamper)
    result = await verify_chain(store)
    assert not result.ok
    assert result.first_broken_seq == 7


async def test_chain_status_checks_new_records_and_rewalks_periodically(
    store: SqliteStore,
) -> None:
    auditor = Auditor(store, KEY)
    for _ in range(3):
        await auditor.record(direction="internal", actor="a", operation="o", outcome="ok")
    first = await chain_status(store)
    assert first.ok and first.last_seq == 3
    for _ in range(2):
        await auditor.record(direction="internal", actor="a", operation="o", outcome="ok")
    second = await chain_status(store)
    assert second.ok and second.last_seq == 5 and second.checked == 5

    def tamper(conn: object) -> None:
        import sqlite3

        assert isinstance(conn, sqlite3.Connection)
        body = json.loads(conn.execute("SELECT body FROM audit WHERE seq = 2").fetchone()[0])
        body["actor"] = "someone-else"
        conn.execute("UPDATE audit SET body = ? WHERE seq = 2", (json.dumps(body),))

    await store._db.write(tamper)
    # an old record changed: the incremental check cannot see it, the periodic full walk does
    assert (await chain_status(store)).ok
    full = await chain_status(store, full_every=0.0)
    assert not full.ok and full.first_broken_seq == 2


# ---------------------------------------------------------------- export


async def test_export_writes_jsonl_with_chain_fields_and_advances_the_mark(
    store: SqliteStore, tmp_path: Path
) -> None:
    auditor = Auditor(store, KEY)
    records = [
        await auditor.record(direction="internal", actor="a", operation=f"o{i}", outcome="ok")
        for i in range(6)
    ]
    cut = records[3].at  # export the first three
    out = tmp_path / "exports" / "audit-1.jsonl"
    result = await export(store, out, None, cut)
    assert (result.written, result.first_seq, result.last_seq) == (3, 1, 3)
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["seq"] for line in lines] == [1, 2, 3]
    assert {"seq", "prev_hash", "hash", "at", "payload_sha256"} <= set(lines[0])
    assert AuditRecord.from_dict(lines[1]) == records[1]
    mark = await read_export_mark(store)
    assert mark is not None and (mark.seq, mark.hash) == (3, records[2].hash)
    assert verify_export_file(out).ok

    # a range that skips records after the mark does not move it
    later = tmp_path / "audit-2.jsonl"
    await export(store, later, records[4].at, None)
    mark = await read_export_mark(store)
    assert mark is not None and mark.seq == 3
    # the rest, contiguous with the mark, moves it to the end
    await export(store, tmp_path / "audit-3.jsonl", records[3].at, None)
    mark = await read_export_mark(store)
    assert mark is not None and mark.seq == 6
    assert await store.get(EXPORT_MARK_KEY) is not None


async def test_a_tampered_export_file_fails_verification(
    store: SqliteStore, tmp_path: Path
) -> None:
    auditor = Auditor(store, KEY)
    for i in range(4):
        await auditor.record(direction="internal", actor="a", operation=f"o{i}", outcome="ok")
    out = tmp_path / "audit.jsonl"
    await export(store, out)
    lines = out.read_text().splitlines()
    row = json.loads(lines[2])
    row["operation"] = "forged"
    lines[2] = json.dumps(row)
    out.write_text("\n".join(lines) + "\n")
    result = verify_export_file(out)
    assert not result.ok and result.first_broken_seq == 3
