"""SigningService: peer policies from settings, work on the pool, lazy key loading."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from gateway.errors import ConfigurationError, ValidationFailed
from gateway.settings import SigningSettings
from signing.keys import DevPki
from signing.service import SigningService
from signing.sign import XmlSigner


def _settings(pki: DevPki, **extra: object) -> SigningSettings:
    return SigningSettings(
        key_path=pki.gateway.key_path,
        cert_path=pki.gateway.cert_path,
        trust_paths=[pki.ca.cert_path],
        **extra,  # type: ignore[arg-type]
    )


def test_peer_policies_come_from_settings(pki: DevPki) -> None:
    service = SigningService(
        _settings(
            pki,
            sha1_allowed_peers=["field"],
            peers={
                "payments": {"pinned_certificates": [pki.simulator("payments").cert_path]},
                "keypay": {"hmac_key": "xml-hmac-secret", "legacy_c14n_xmlns": True},
            },
        ),
        max_bytes=1_000_000,
    )
    assert service.peers() == {"field", "payments", "keypay"}
    field = service.verifier("field").policy
    assert field.allow_sha1 and not field.pinned and field.peer == "field"
    payments = service.verifier("payments").policy
    assert not payments.allow_sha1
    assert payments.pinned == (pki.simulator("payments").load().certificate,)
    keypay = service.verifier("keypay").policy
    assert keypay.hmac_key == b"xml-hmac-secret" and keypay.legacy_c14n_xmlns
    anonymous = service.verifier(None).policy
    assert not anonymous.allow_sha1 and anonymous.max_bytes == 1_000_000
    assert service.verifier("field") is service.verifier("field")
    with pytest.raises(ValidationFailed) as info:
        service.verifier("nobody")
    assert info.value.errors[0].pointer == "/peer"


async def test_sign_and_verify_run_on_the_signing_threads(pki: DevPki, document: bytes) -> None:
    service = SigningService(_settings(pki), max_bytes=1_000_000)
    seen: list[str] = []
    signer = service.signer()
    original = signer.sign

    def spy(data: bytes, **kw: object) -> object:
        seen.append(threading.current_thread().name)
        return original(data, **kw)  # type: ignore[arg-type]

    signer.sign = spy  # type: ignore[method-assign]
    try:
        signed = await service.sign(document)
        results = await asyncio.gather(*(service.verify(signed.xml) for _ in range(4)))
    finally:
        service.close()
    assert seen and all(name.startswith("signing") for name in seen)
    assert {r.chain_status for r in results} == {"trusted"}


def test_missing_key_is_a_configuration_error_with_a_hint(tmp_path: Path) -> None:
    service = SigningService(
        SigningSettings(
            key_path=tmp_path / "k.pem",
            cert_path=tmp_path / "c.pem",
            trust_paths=[tmp_path / "absent-ca.pem"],
            dev_pki_dir=tmp_path,
        ),
        max_bytes=1000,
    )
    with capture_logs() as logs:
        assert service.start() == []  # a gateway that never signs starts without a key
    assert [e["event"] for e in logs] == ["signing.trust_path_missing"]
    with pytest.raises(ConfigurationError, match="gateway keys dev-pki"):
        service.signer()


def test_start_reports_every_certificate_relied_on(pki: DevPki) -> None:
    service = SigningService(
        _settings(
            pki, peers={"payments": {"pinned_certificates": [pki.simulator("payments").cert_path]}}
        ),
        max_bytes=1000,
    )
    roles = [s.role for s in service.start()]
    assert roles == ["signing", "trust-anchor", "peer:payments"]
    assert isinstance(service.signer(), XmlSigner)
