"""The runtime re-checks certificate expiry on an interval, not only at start-up.

A real Runtime (SQLite store, development PKI in tmp_path) with the check interval shortened:
the expiry gauge is dropped after start and must come back, and the expiring warning must be
logged again, both without any restart.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from prometheus_client import REGISTRY
from structlog.testing import capture_logs

from gateway.runtime import Runtime
from gateway.settings import Settings
from signing.keys import ensure_dev_pki
from signing.trust import CERTIFICATE_EXPIRY


def _expiring(logs: list[dict[str, Any]]) -> int:
    return sum(
        1 for e in logs if e["event"] == "signing.certificate_expiring" and e["role"] == "signing"
    )


async def test_runtime_rechecks_certificates_periodically(tmp_path: Path) -> None:
    pki = ensure_dev_pki(tmp_path / "pki")
    settings = Settings(
        store={"backend": "sqlite", "sqlite_path": tmp_path / "gateway.db"},
        security={"clients_file": tmp_path / "clients.toml"},
        signing={
            "key_path": pki.gateway.key_path,
            "cert_path": pki.gateway.cert_path,
            "trust_paths": [pki.ca.cert_path],
            # a fresh development certificate (730 days) is inside this window
            "expiry_warning_days": 10_000,
        },
        jobs={"workers": 0, "scheduler_enabled": False},
    )
    cert = pki.gateway.load().certificate
    labels = {
        "role": "signing",
        "subject": cert.subject.rfc4514_string(),
        "serial": format(cert.serial_number, "X"),
    }
    runtime = Runtime.build(settings)
    runtime.certificate_check_seconds = 0.05
    with capture_logs() as logs:
        await runtime.start()
        try:
            assert _expiring(logs) == 1  # the start-up check
            CERTIFICATE_EXPIRY.remove(*labels.values())
            assert _sample(labels) is None
            for _ in range(400):
                if _expiring(logs) >= 3 and _sample(labels) is not None:
                    break
                await asyncio.sleep(0.01)
        finally:
            await runtime.stop()
    assert _expiring(logs) >= 3  # start-up, then at least twice more on the interval
    assert _sample(labels) == cert.not_valid_after_utc.timestamp()
    # stopped: no further checks
    with capture_logs() as after:
        await asyncio.sleep(0.15)
    assert _expiring(after) == 0


def _sample(labels: dict[str, str]) -> float | None:
    return REGISTRY.get_sample_value("gateway_certificate_expiry_timestamp_seconds", labels)
