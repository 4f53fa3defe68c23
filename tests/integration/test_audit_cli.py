"""``gateway audit verify | export`` as real processes over a real SQLite file.

Tampering with one record in the file (as someone with write access to the disk would) makes
``gateway audit verify`` exit 1 naming that record's seq.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.audit import Auditor
from gateway.settings import Settings
from gateway.store.sqlite import SqliteStore

GATEWAY = str(Path(sys.executable).parent / "gateway")


def run(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [GATEWAY, "audit", *args, "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
async def filled(tmp_path: Path) -> tuple[Path, Path]:
    """A config file and its SQLite store holding 20 audit records."""
    db = tmp_path / "gateway.db"
    config = tmp_path / "gateway.toml"
    config.write_text(
        f'[store]\nbackend = "sqlite"\nsqlite_path = "{db}"\n'
        f'[audit]\nexport_dir = "{tmp_path / "exports"}"\n'
    )
    store = SqliteStore(db)
    await store.open()
    auditor = Auditor(store, Settings().digest_key())
    for i in range(20):
        await auditor.record(
            direction="outbound",
            actor="population_db",
            adapter="population_db",
            operation="verify_citizen",
            outcome="ok",
            status=200,
            latency_ms=10 + i,
            dossier_code=f"H01.01-260101-{i:04d}",
            payload=f"<request {i}/>".encode(),
            subjects=[f"0790123456{i:02d}"],
        )
    await store.close()
    return config, db


def tamper(db: Path, seq: int, **changes: object) -> None:
    conn = sqlite3.connect(db)
    try:
        (body,) = conn.execute("SELECT body FROM audit WHERE seq = ?", (seq,)).fetchone()
        record = json.loads(body)
        record.update(changes)
        conn.execute("UPDATE audit SET body = ? WHERE seq = ?", (json.dumps(record), seq))
        conn.commit()
    finally:
        conn.close()


def test_verify_passes_then_names_the_tampered_record(filled: tuple[Path, Path]) -> None:
    config, db = filled
    ok = run(config, "verify")
    assert ok.returncode == 0, ok.stderr
    assert "intact: 20 records checked (up to seq 20)" in ok.stdout

    tamper(db, 13, outcome="error")
    broken = run(config, "verify")
    assert broken.returncode == 1
    assert "BROKEN at record seq 13" in broken.stderr
    assert "content does not match its hash" in broken.stderr


def test_a_rehashed_forgery_is_caught_at_the_next_link(filled: tuple[Path, Path]) -> None:
    config, db = filled
    conn = sqlite3.connect(db)
    (body,) = conn.execute("SELECT body FROM audit WHERE seq = 5").fetchone()
    conn.close()
    from gateway.store._codec import audit_from_json

    forged = audit_from_json(body)
    forged.dossier_code = "H01.01-260101-9999"
    tamper(db, 5, dossier_code=forged.dossier_code, hash=forged.compute_hash())
    broken = run(config, "verify")
    assert broken.returncode == 1
    assert "BROKEN at record seq 6" in broken.stderr
    assert "prev_hash" in broken.stderr


def test_a_deleted_record_is_named(filled: tuple[Path, Path]) -> None:
    config, db = filled
    conn = sqlite3.connect(db)
    conn.execute("DELETE FROM audit WHERE seq = 8")
    conn.commit()
    conn.close()
    broken = run(config, "verify")
    assert broken.returncode == 1
    assert "BROKEN at record seq 9" in broken.stderr
    assert "missing" in broken.stderr


def test_records_deleted_from_the_end_are_named(filled: tuple[Path, Path]) -> None:
    config, db = filled
    conn = sqlite3.connect(db)
    conn.execute("DELETE FROM audit WHERE seq >= 19")
    conn.commit()
    conn.close()
    broken = run(config, "verify")
    assert broken.returncode == 1
    assert "BROKEN at record seq 19: records 19..20 are missing" in broken.stderr


def test_export_writes_the_chain_and_the_file_verifies(
    filled: tuple[Path, Path], tmp_path: Path
) -> None:
    config, _ = filled
    out = tmp_path / "out" / "audit.jsonl"
    done = run(config, "export", "--from", "2000-01-01", "--to", "2100-01-01", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert "exported 20 records (seq 1..20)" in done.stdout
    assert "up to seq 20" in done.stdout
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["seq"] for line in lines] == list(range(1, 21))
    assert {"prev_hash", "hash", "payload_sha256", "subject_digests"} <= set(lines[0])
    assert "079012345600" not in out.read_text()  # digests only, never the ID

    assert run(config, "verify", "--file", str(out)).returncode == 0
    lines[3]["status"] = 500
    out.write_text("".join(json.dumps(line) + "\n" for line in lines))
    broken = run(config, "verify", "--file", str(out))
    assert broken.returncode == 1
    assert "seq 4" in broken.stderr

    # an existing file is never overwritten; a bad time is a usage error
    assert run(config, "export", "--out", str(out)).returncode == 2
    bad = run(config, "export", "--from", "yesterday", "--out", str(tmp_path / "x.jsonl"))
    assert bad.returncode == 2
    assert "--from: not a time" in bad.stderr
    # the default file name lands in audit.export_dir
    default = run(config, "export")
    assert default.returncode == 0, default.stderr
    assert len(list((tmp_path / "exports").glob("audit-start-now-*.jsonl"))) == 1
