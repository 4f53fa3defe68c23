"""Which signatures of the registry the population_db adapter accepts, per environment.

The sandbox pins the simulator's development certificate; outside the sandbox, with answers
verified and no ``[signing.peers.population_db]`` pin, start-up warns (and names no secret).
"""

from __future__ import annotations

from pathlib import Path

from structlog.testing import capture_logs

from adapters.population_db.client import response_verifier
from adapters.population_db.config import PopulationDbConfig
from gateway.settings import Settings
from signing.keys import ensure_dev_pki, load_certificates
from signing.service import SigningService

_DIGEST_KEY = "unit-test-identifier-digest-key-0123456789"


def _settings(tmp_path: Path, environment: str) -> Settings:
    pki = ensure_dev_pki(tmp_path / "pki", ["population_db"])
    return Settings(
        environment=environment,
        security={"identifier_digest_key": _DIGEST_KEY},
        signing={
            "key_path": pki.gateway.key_path,
            "cert_path": pki.gateway.cert_path,
            "trust_paths": [pki.ca.cert_path],
            "dev_pki_dir": pki.directory,
        },
    )


def test_the_sandbox_pins_the_simulators_certificate(tmp_path: Path) -> None:
    settings = _settings(tmp_path, "sandbox")
    service = SigningService(settings.signing, max_bytes=1 << 20)
    with capture_logs() as logs:
        verifier = response_verifier("population_db", PopulationDbConfig(), settings, service)
    assert verifier is not None
    expected = load_certificates(tmp_path / "pki" / "simulators" / "population_db.cert.pem")
    assert list(verifier.policy.pinned) == expected
    assert not [e for e in logs if e["log_level"] == "warning"]


def test_outside_the_sandbox_an_unpinned_registry_is_warned_about(tmp_path: Path) -> None:
    settings = _settings(tmp_path, "production")
    service = SigningService(settings.signing, max_bytes=1 << 20)
    with capture_logs() as logs:
        verifier = response_verifier("population_db", PopulationDbConfig(), settings, service)
    assert verifier is None  # the trust store's policy: what the operator configured
    warnings = [e for e in logs if e["log_level"] == "warning"]
    assert [e["event"] for e in warnings] == ["population_db.responses_not_pinned"]
    assert "[signing.peers.population_db]" in warnings[0]["detail"]
    assert _DIGEST_KEY not in repr(warnings)


def test_no_warning_when_answers_are_not_verified(tmp_path: Path) -> None:
    settings = _settings(tmp_path, "production")
    service = SigningService(settings.signing, max_bytes=1 << 20)
    config = PopulationDbConfig(verify_responses=False)
    with capture_logs() as logs:
        assert response_verifier("population_db", config, settings, service) is None
    assert logs == []
