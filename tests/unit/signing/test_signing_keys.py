"""Key loading and the development PKI (real files under tmp_path)."""

from __future__ import annotations

import datetime as dt
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from gateway.errors import ConfigurationError
from gateway.settings import SigningSettings
from signing.keys import (
    ensure_dev_pki,
    generate_key,
    issue_certificate,
    load_key_material,
    load_pkcs12,
    load_signing_material,
    read_password,
)


def _verify_chain(leaf: x509.Certificate, root: x509.Certificate) -> None:
    store = x509.verification.Store([root])
    policy = x509.verification.ExtensionPolicy.permit_all()
    verifier = (
        x509.verification.PolicyBuilder()
        .store(store)
        .extension_policies(
            ee_policy=policy, ca_policy=x509.verification.ExtensionPolicy.webpki_defaults_ca()
        )
        .build_client_verifier()
    )
    verifier.verify(leaf, [])


def test_dev_pki_creates_ca_gateway_and_simulators(tmp_path: Path) -> None:
    pki = ensure_dev_pki(tmp_path / "pki", ["population_db", "postal"])
    ca = pki.ca.load().certificate
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    for files in (pki.gateway, pki.simulator("population_db"), pki.simulator("postal")):
        material = files.load()
        _verify_chain(material.certificate, ca)
        usage = material.certificate.extensions.get_extension_for_class(x509.KeyUsage).value
        assert usage.digital_signature
        assert files.key_path.stat().st_mode & 0o077 == 0
    crl = x509.load_pem_x509_crl(pki.crl_path.read_bytes())
    assert crl.is_signature_valid(pki.ca.load().key.public_key())  # type: ignore[arg-type]
    assert set(pki.written) >= {"ca.cert.pem", "gateway.cert.pem", "ca.crl.pem"}


def test_dev_pki_is_idempotent_and_adds_new_simulators(tmp_path: Path) -> None:
    first = ensure_dev_pki(tmp_path, ["population_db"])
    before = {p: p.read_bytes() for p in tmp_path.rglob("*.pem")}
    again = ensure_dev_pki(tmp_path, ["population_db"])
    assert again.written == ()
    assert {p: p.read_bytes() for p in tmp_path.rglob("*.pem")} == before
    more = ensure_dev_pki(tmp_path, ["postal"])
    assert more.written == ("simulators/postal.cert.pem",)
    assert set(more.simulators) == {"population_db", "postal"}
    assert more.ca == first.ca
    assert before[first.gateway.cert_path] == first.gateway.cert_path.read_bytes()


def test_dev_pki_renews_a_leaf_close_to_expiry(tmp_path: Path) -> None:
    pki = ensure_dev_pki(tmp_path, ["postal"])
    ca = pki.ca.load()
    now = dt.datetime.now(dt.UTC)
    short = issue_certificate(ca, "postal simulator", not_after=now + dt.timedelta(days=3))
    pki.simulator("postal").cert_path.write_bytes(
        short.certificate.public_bytes(serialization.Encoding.PEM)
    )
    pki.simulator("postal").key_path.write_bytes(
        short.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    again = ensure_dev_pki(tmp_path, ["postal"])
    assert again.written == ("simulators/postal.cert.pem",)
    renewed = again.simulator("postal").load().certificate
    assert renewed.not_valid_after_utc - now > dt.timedelta(days=300)


def test_dev_pki_reissues_leaves_when_the_ca_is_replaced(tmp_path: Path) -> None:
    pki = ensure_dev_pki(tmp_path, ["postal"])
    pki.ca.key_path.unlink()
    again = ensure_dev_pki(tmp_path, ["postal"])
    assert "ca.cert.pem" in again.written
    assert "gateway.cert.pem" in again.written
    assert "simulators/postal.cert.pem" in again.written
    _verify_chain(again.simulator("postal").load().certificate, again.ca.load().certificate)


def test_dev_pki_concurrent_callers_agree(tmp_path: Path) -> None:
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: ensure_dev_pki(tmp_path, ["postal"]), range(4)))
    written = [r for r in results if r.written]
    assert len(written) == 1
    first = results[0]
    _verify_chain(first.simulator("postal").load().certificate, first.ca.load().certificate)


def test_dev_pki_refuses_bad_simulator_names(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="simulator name"):
        ensure_dev_pki(tmp_path, ["../escape"])


def test_pkcs12_with_password_from_env_and_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pki = ensure_dev_pki(tmp_path / "pki")
    material = pki.gateway.load()
    bundle = tmp_path / "gateway.p12"
    bundle.write_bytes(
        pkcs12.serialize_key_and_certificates(
            b"gateway",
            material.key,
            material.certificate,
            [pki.ca.load().certificate],
            serialization.BestAvailableEncryption(b"s3cret-pass"),
        )
    )
    monkeypatch.setenv("TEST_P12_PASSWORD", "s3cret-pass")
    loaded = load_pkcs12(bundle, read_password(env="TEST_P12_PASSWORD"))
    assert loaded.certificate == material.certificate
    assert loaded.chain == ()  # the self-signed root is not carried in KeyInfo
    secret_file = tmp_path / "password.txt"
    secret_file.write_text("s3cret-pass\n")
    assert load_pkcs12(bundle, read_password(file=secret_file)).certificate == material.certificate
    with pytest.raises(ConfigurationError, match="PKCS#12") as info:
        load_pkcs12(bundle, b"wrong")
    assert "s3cret" not in info.value.detail
    settings = SigningSettings(pkcs12_path=bundle, key_password="s3cret-pass")  # type: ignore[arg-type]
    assert load_signing_material(settings).certificate == material.certificate


def test_missing_password_variable_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="NOT_SET_ANYWHERE"):
        read_password(env="NOT_SET_ANYWHERE")


def test_encrypted_pem_key_and_mismatched_certificate(tmp_path: Path) -> None:
    pki = ensure_dev_pki(tmp_path / "pki", ["postal"])
    material = pki.gateway.load()
    key_file = tmp_path / "enc.key.pem"
    key_file.write_bytes(
        material.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"pw"),
        )
    )
    assert load_key_material(key_file, pki.gateway.cert_path, b"pw").key.key_size == 2048  # type: ignore[union-attr]
    with pytest.raises(ConfigurationError, match="private key"):
        load_key_material(key_file, pki.gateway.cert_path, None)
    with pytest.raises(ConfigurationError, match="does not belong"):
        load_key_material(key_file, pki.simulator("postal").cert_path, b"pw")


def test_ec_keys_are_supported(tmp_path: Path) -> None:
    ca = issue_certificate(None, "test CA", ca=True)
    leaf = issue_certificate(ca, "ec signer", key=generate_key("ec"))
    assert leaf.kind == "ec"
    assert leaf.certificates() == [leaf.certificate]
