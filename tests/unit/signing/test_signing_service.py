"""SigningService: peer policies from settings, work on the pool, lazy key loading."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import threading
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from lxml import etree
from prometheus_client import REGISTRY
from structlog.testing import capture_logs

from gateway.errors import ConfigurationError, ValidationFailed
from gateway.settings import SigningSettings
from signing.keys import DevPki, issue_certificate, load_certificates
from signing.service import SigningService
from signing.sign import XmlSigner
from signing.trust import CERTIFICATE_EXPIRY

DSIG = "http://www.w3.org/2000/09/xmldsig#"


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


def _chained_pki(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A root, an issuing CA and a leaf on disk: the cert file holds leaf + intermediate."""
    root = issue_certificate(None, "root CA", ca=True, path_length=1)
    issuing = issue_certificate(root, "issuing CA", ca=True, path_length=0)
    leaf = issue_certificate(issuing, "gateway signer")
    key_path, cert_path, root_path = (tmp_path / n for n in ("k.pem", "c.pem", "root.pem"))
    key_path.write_bytes(
        leaf.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    cert_path.write_bytes(
        b"".join(c.public_bytes(serialization.Encoding.PEM) for c in leaf.certificates())
    )
    root_path.write_bytes(root.certificate.public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path, root_path


@pytest.mark.parametrize(("include_chain", "certificates"), [(True, 2), (False, 1)])
async def test_include_chain_setting_decides_what_keyinfo_carries(
    tmp_path: Path, document: bytes, include_chain: bool, certificates: int
) -> None:
    key_path, cert_path, root_path = _chained_pki(tmp_path)
    service = SigningService(
        SigningSettings(
            key_path=key_path,
            cert_path=cert_path,
            trust_paths=[root_path],
            include_chain=include_chain,
        ),
        max_bytes=1_000_000,
    )
    try:
        signed = await service.sign(document)
    finally:
        service.close()
    x509_data = etree.fromstring(signed.xml).findall(
        f".//{{{DSIG}}}X509Data/{{{DSIG}}}X509Certificate"
    )
    assert len(x509_data) == certificates
    leaf = load_certificates(cert_path)[0]
    first = x509.load_der_x509_certificate(base64.b64decode(x509_data[0].text or ""))
    assert first == leaf  # the signing certificate always comes first


async def test_certificate_check_reruns_on_its_interval(pki: DevPki) -> None:
    service = SigningService(_settings(pki, expiry_warning_days=10_000), max_bytes=1000)
    cert = pki.gateway.load().certificate
    labels = {
        "role": "signing",
        "subject": cert.subject.rfc4514_string(),
        "serial": format(cert.serial_number, "X"),
    }
    if _sample(labels) is not None:  # an earlier test's check: start from no sample
        CERTIFICATE_EXPIRY.remove(*labels.values())
    with capture_logs() as logs:
        watch = asyncio.create_task(service.watch_certificates(0.02))
        try:
            for _ in range(500):
                if len(_signing_warnings(logs)) >= 2:
                    break
                await asyncio.sleep(0.01)
        finally:
            watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watch
            service.close()
    assert len(_signing_warnings(logs)) >= 2  # checked again and again, not only once
    assert _sample(labels) == cert.not_valid_after_utc.timestamp()


def _sample(labels: dict[str, str]) -> float | None:
    return REGISTRY.get_sample_value("gateway_certificate_expiry_timestamp_seconds", labels)


def _signing_warnings(logs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        e for e in logs if e["event"] == "signing.certificate_expiring" and e["role"] == "signing"
    ]
