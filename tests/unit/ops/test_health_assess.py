"""How probes and live-traffic figures become up / degraded / down with a reason."""

from __future__ import annotations

from gateway.health import PassiveFigures, ProbeRecord, assess, merge_figures

NOW = 1_800_000_000.0


def _assess(
    probe: ProbeRecord | None,
    passive: PassiveFigures | None = None,
    circuit: str = "closed",
    cert: float | None = None,
) -> tuple[str, str | None]:
    return assess(probe, passive or PassiveFigures(), circuit, cert, now=NOW, probe_interval=15)


def test_healthy_probe_is_up() -> None:
    assert _assess(ProbeRecord(ok=True, at=NOW - 5, latency_ms=40)) == ("up", None)


def test_open_circuit_is_down_even_with_a_good_probe() -> None:
    state, reason = _assess(ProbeRecord(ok=True, at=NOW), circuit="open")
    assert state == "down" and reason and "circuit" in reason


def test_failed_probe_is_down_with_its_reason() -> None:
    state, reason = _assess(ProbeRecord(ok=False, at=NOW, detail="HTTP 503"))
    assert state == "down" and reason == "probe failed: HTTP 503"


def test_error_rate_degrades_then_downs() -> None:
    probe = ProbeRecord(ok=True, at=NOW, latency_ms=10)
    some = PassiveFigures(calls_5m=100, errors_5m=10)
    most = PassiveFigures(calls_5m=100, errors_5m=80)
    assert _assess(probe, some)[0] == "degraded"
    assert _assess(probe, most)[0] == "down"


def test_slow_and_expiring_certificates_degrade() -> None:
    probe = ProbeRecord(ok=True, at=NOW, latency_ms=10)
    assert _assess(probe, PassiveFigures(calls_5m=10, p95_ms=5000))[0] == "degraded"
    state, reason = _assess(probe, cert=12)
    assert state == "degraded" and reason and "12 days" in reason
    assert _assess(probe, cert=-1)[0] == "down"


def test_no_information_is_unknown_and_stale_probe_degrades() -> None:
    assert _assess(None)[0] == "unknown"
    assert _assess(ProbeRecord(ok=True, at=NOW - 3600))[0] == "degraded"


def test_merge_adds_counts_and_keeps_the_worst_latency_and_latest_failure() -> None:
    a = PassiveFigures(
        calls_5m=10, errors_5m=1, p95_ms=100, last_failure=NOW - 60, last_failure_reason="old"
    )
    b = PassiveFigures(
        calls_5m=30,
        errors_5m=3,
        p95_ms=900,
        last_failure=NOW - 5,
        last_failure_reason="new",
        last_success=NOW - 1,
    )
    merged = merge_figures([a, b])
    assert (merged.calls_5m, merged.errors_5m, merged.p95_ms) == (40, 4, 900)
    assert merged.last_failure_reason == "new" and merged.last_success == NOW - 1
    assert merged.error_rate_5m == 0.1
