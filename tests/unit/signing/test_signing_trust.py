"""Trust decisions: each way of failing has its own problem type; expiry metric and warning."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from prometheus_client import REGISTRY
from structlog.testing import capture_logs

from gateway.errors import (
    CertificateExpired,
    CertificateRevoked,
    GatewayError,
    KeyUsageInvalid,
    SignatureUntrusted,
)
from signing.keys import DevPki, KeyMaterial, issue_certificate, issue_crl
from signing.sign import XmlSigner
from signing.trust import TrustStore, observe_certificates
from signing.verify import VerificationPolicy, XmlVerifier

NOW = dt.datetime.now(dt.UTC)
ENCIPHER_ONLY = x509.KeyUsage(
    digital_signature=False,
    content_commitment=False,
    key_encipherment=True,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=False,
    crl_sign=False,
    encipher_only=False,
    decipher_only=False,
)


@pytest.fixture(scope="module")
def old_ca() -> KeyMaterial:
    """A CA issued long ago, so its leaves can have expired while it is still valid."""
    return issue_certificate(
        None, "long-standing CA", ca=True, not_before=NOW - dt.timedelta(days=2000), days=4000
    )


def _refusal(signer: KeyMaterial, trust: TrustStore, document: bytes) -> GatewayError:
    signed = XmlSigner(signer).sign(document)
    with pytest.raises(GatewayError) as info:
        XmlVerifier(VerificationPolicy(trust=trust)).verify(signed.xml)
    return info.value


def test_each_failure_has_a_distinct_problem_type(
    ca: KeyMaterial, old_ca: KeyMaterial, document: bytes
) -> None:
    trust = TrustStore([ca.certificate, old_ca.certificate])
    stranger_ca = issue_certificate(None, "someone else's CA", ca=True)
    cases = {
        "untrusted": issue_certificate(stranger_ca, "stranger"),
        "expired": issue_certificate(
            old_ca,
            "expired signer",
            not_before=NOW - dt.timedelta(days=400),
            not_after=NOW - dt.timedelta(days=35),
        ),
        "not-yet-valid": issue_certificate(
            ca, "future signer", not_before=NOW + dt.timedelta(days=2), days=30
        ),
        "key-usage": issue_certificate(ca, "encryption only", key_usage=ENCIPHER_ONLY),
        "no-key-usage": issue_certificate(ca, "no key usage", key_usage="omit"),
        "ca-as-signer": issue_certificate(ca, "sub CA signing", ca=True),
    }
    revoked = issue_certificate(ca, "revoked signer")
    revoking = TrustStore(trust.anchors, [issue_crl(ca, [revoked.certificate.serial_number])])

    errors = {name: _refusal(material, trust, document) for name, material in cases.items()}
    errors["revoked"] = _refusal(revoked, revoking, document)

    assert isinstance(errors["untrusted"], SignatureUntrusted)
    assert isinstance(errors["expired"], CertificateExpired)
    assert "expired on" in errors["expired"].detail
    assert isinstance(errors["not-yet-valid"], CertificateExpired)
    assert "not valid before" in errors["not-yet-valid"].detail
    assert isinstance(errors["revoked"], CertificateRevoked)
    assert format(revoked.certificate.serial_number, "X") in errors["revoked"].detail
    for name in ("key-usage", "no-key-usage", "ca-as-signer"):
        assert isinstance(errors[name], KeyUsageInvalid), name
    types = {errors[n].type_uri for n in ("untrusted", "expired", "revoked", "key-usage")}
    assert len(types) == 4
    assert all(e.status == 422 for e in errors.values())


def test_revocation_after_the_validation_time_does_not_count(old_ca: KeyMaterial) -> None:
    leaf = issue_certificate(old_ca, "archived signer", not_before=NOW - dt.timedelta(days=100))
    crl = issue_crl(old_ca, [leaf.certificate.serial_number])  # revoked "now"
    store = TrustStore([old_ca.certificate], [crl])
    with pytest.raises(CertificateRevoked):
        store.validate(leaf.certificate)
    earlier = store.validate(leaf.certificate, at=NOW - dt.timedelta(days=10))
    assert earlier.status == "trusted"


def test_crl_signed_by_another_key_is_ignored(ca: KeyMaterial, trust: TrustStore) -> None:
    leaf = issue_certificate(ca, "signer")
    impostor = issue_certificate(None, ca.certificate.subject.rfc4514_string(), ca=True)
    forged = issue_crl(KeyMaterial(impostor.key, ca.certificate), [leaf.certificate.serial_number])
    store = TrustStore(trust.anchors, [forged])
    assert store.validate(leaf.certificate).status == "trusted"


def test_store_from_folders_with_pem_and_der_crl(
    tmp_path: Path, pki: DevPki, ca: KeyMaterial
) -> None:
    anchors = tmp_path / "anchors"
    anchors.mkdir()
    (anchors / "ca.crt").write_bytes(pki.ca.cert_path.read_bytes())
    (anchors / "README.txt").write_text("not a certificate")
    crls = tmp_path / "crls"
    crls.mkdir()
    leaf = issue_certificate(ca, "revoked via folder")
    (crls / "ca.crl").write_bytes(
        issue_crl(ca, [leaf.certificate.serial_number]).public_bytes(serialization.Encoding.DER)
    )
    store = TrustStore.from_paths([anchors], [crls])
    assert len(store.anchors) == 1
    with pytest.raises(CertificateRevoked):
        store.validate(leaf.certificate)


def test_no_anchors_means_untrusted(ca: KeyMaterial) -> None:
    with pytest.raises(SignatureUntrusted, match="no trust anchors"):
        TrustStore().validate(issue_certificate(ca, "x").certificate)


def test_cached_chain_still_honours_time(ca: KeyMaterial, trust: TrustStore) -> None:
    leaf = issue_certificate(ca, "short lived", days=10)
    assert trust.validate(leaf.certificate).status == "trusted"
    assert trust.validate(leaf.certificate).status == "trusted"  # served from the cache
    with pytest.raises(CertificateExpired, match="expired on"):
        trust.validate(leaf.certificate, at=NOW + dt.timedelta(days=20))
    backdated = issue_certificate(ca, "backdated", not_before=NOW - dt.timedelta(days=100))
    with pytest.raises(CertificateExpired, match="dvc-gateway development CA"):
        # the leaf was valid then but the anchor was not yet: a time problem, named as such
        trust.validate(backdated.certificate, at=NOW - dt.timedelta(days=20))


def test_pinned_v1_style_certificate_without_key_usage_is_accepted(ca: KeyMaterial) -> None:
    peer = issue_certificate(None, "old field system", key_usage="omit")
    store = TrustStore()
    assert store.validate_pinned(peer.certificate, [peer.certificate]).status == "pinned"
    other = issue_certificate(None, "other", key_usage="omit")
    with pytest.raises(SignatureUntrusted, match="not a certificate pinned"):
        store.validate_pinned(other.certificate, [peer.certificate], peer="legacy")


def test_expiry_metric_and_warning_under_30_days(ca: KeyMaterial) -> None:
    soon = issue_certificate(ca, "expiring soon", days=12)
    later = issue_certificate(ca, "fine for long", days=400)
    with capture_logs() as logs:
        statuses = observe_certificates(
            [soon.certificate, later.certificate], role="test-signing", warning_days=30
        )
    assert [round(s.days_left) for s in statuses] == [12, 400]
    value = REGISTRY.get_sample_value(
        "gateway_certificate_expiry_timestamp_seconds",
        {
            "role": "test-signing",
            "subject": soon.certificate.subject.rfc4514_string(),
            "serial": format(soon.certificate.serial_number, "X"),
        },
    )
    assert value == soon.certificate.not_valid_after_utc.timestamp()
    warnings = [e for e in logs if e["event"] == "signing.certificate_expiring"]
    assert len(warnings) == 1
    assert warnings[0]["log_level"] == "warning"
    assert "expiring soon" in warnings[0]["subject"]
    assert 11 < warnings[0]["days_left"] < 13
