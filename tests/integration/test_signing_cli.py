"""``gateway keys dev-pki | inspect``, ``gateway sign`` and ``gateway verify`` on real files."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12
from lxml import etree

from gateway.cli import main
from signing.keys import ensure_dev_pki, issue_certificate

DOC = '<?xml version="1.0" encoding="UTF-8"?><HoSo><Ma Id="m">000.00.19.H47-260105-0001</Ma></HoSo>'


@pytest.fixture
def config(tmp_path: Path) -> Path:
    pki = tmp_path / "pki"
    path = tmp_path / "gateway.toml"
    path.write_text(
        f"""
[signing]
key_path = "{pki}/gateway.key.pem"
cert_path = "{pki}/gateway.cert.pem"
trust_paths = ["{pki}/ca.cert.pem"]
dev_pki_dir = "{pki}"
sha1_allowed_peers = ["field"]
"""
    )
    return path


def run(config: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["--config", str(config), *args], env=env)
    return result.exit_code, result.stdout, result.stderr


def test_dev_pki_is_idempotent_and_inspect_lists_days_left(config: Path, tmp_path: Path) -> None:
    code, out, _ = run(config, "keys", "dev-pki", "--simulator", "postal")
    assert code == 0
    assert "ca.cert.pem" in out and "simulators/postal.cert.pem" in out
    code, out, _ = run(config, "keys", "dev-pki", "--simulator", "postal")
    assert code == 0 and "up to date" in out
    code, out, _ = run(config, "keys", "inspect")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["ROLE", "SUBJECT", "SERIAL"]
    roles = [line.split()[0] for line in lines[1:]]
    assert roles == ["signing", "trust-anchor", "simulator:postal"]
    code, out, _ = run(config, "keys", "inspect", "--json")
    entries = json.loads(out)
    assert {e["state"] for e in entries} == {"ok"}
    assert 729 <= entries[0]["days_left"] <= 730


def test_inspect_fails_on_an_expired_certificate(config: Path, tmp_path: Path) -> None:
    now = dt.datetime.now(dt.UTC)
    old = issue_certificate(
        None, "lapsed", not_before=now - dt.timedelta(days=90), not_after=now - dt.timedelta(days=1)
    )
    soon = issue_certificate(None, "soon", days=10)
    for name, material in (("old.pem", old), ("soon.pem", soon)):
        (tmp_path / name).write_bytes(material.certificate.public_bytes(serialization.Encoding.PEM))
    code, out, _ = run(config, "keys", "inspect", str(tmp_path / "soon.pem"))
    assert code == 0 and "expiring" in out
    code, out, _ = run(config, "keys", "inspect", str(tmp_path / "old.pem"))
    assert code == 1 and "EXPIRED" in out


def test_sign_and_verify_files(config: Path, tmp_path: Path) -> None:
    run(config, "keys", "dev-pki", "--simulator", "postal")
    source = tmp_path / "doc.xml"
    source.write_text(DOC, encoding="utf-8")
    signed = tmp_path / "signed.xml"
    code, _, err = run(config, "sign", str(source), "--out", str(signed))
    assert code == 0, err
    code, out, err = run(config, "verify", str(signed))
    assert code == 0, err
    assert out.startswith("valid: trusted")
    assert "signer: CN=dvc-gateway signing (development)" in out
    assert "algorithms: rsa-sha256, digests sha256, exc-c14n" in out
    code, out, _ = run(config, "verify", "--content", str(signed))
    assert out == '<HoSo><Ma Id="m">000.00.19.H47-260105-0001</Ma></HoSo>'

    tampered = tmp_path / "tampered.xml"
    tampered.write_bytes(signed.read_bytes().replace(b"0001", b"0009"))
    code, _, err = run(config, "verify", str(tampered))
    assert code == 1
    assert "refused (signature-invalid)" in err
    code, out, _ = run(config, "verify", "--json", str(tampered))
    assert code == 1
    assert json.loads(out)["type"] == "urn:dvc-gateway:problem:signature-invalid"


def test_detached_from_stdin(config: Path, tmp_path: Path) -> None:
    run(config, "keys", "dev-pki")
    source = tmp_path / "doc.xml"
    source.write_text(DOC, encoding="utf-8")
    result = CliRunner().invoke(
        main, ["--config", str(config), "sign", "--detached", "-"], input=DOC
    )
    assert result.exit_code == 0, result.stderr
    signature = tmp_path / "doc.sig.xml"
    signature.write_bytes(result.stdout_bytes)
    code, out, err = run(config, "verify", str(signature), "--detached-content", str(source))
    assert code == 0, err
    assert out.startswith("valid: trusted")


def test_sign_with_a_pkcs12_bundle_and_password_from_env(config: Path, tmp_path: Path) -> None:
    pki = ensure_dev_pki(tmp_path / "pki", ["postal"])
    postal = pki.simulator("postal").load()
    bundle = tmp_path / "postal.p12"
    bundle.write_bytes(
        pkcs12.serialize_key_and_certificates(
            b"postal",
            postal.key,
            postal.certificate,
            None,
            serialization.BestAvailableEncryption(b"p12-password"),
        )
    )
    source = tmp_path / "doc.xml"
    source.write_text(DOC, encoding="utf-8")
    signed = tmp_path / "signed.xml"
    code, _, err = run(
        config,
        "sign",
        str(source),
        "--pkcs12",
        str(bundle),
        "--password-env",
        "TEST_P12_PASSWORD",
        "--out",
        str(signed),
        env={"TEST_P12_PASSWORD": "p12-password"},
    )
    assert code == 0, err
    code, out, _ = run(config, "verify", str(signed))
    assert code == 0 and "postal simulator" in out
    code, _, err = run(config, "sign", str(source), "--pkcs12", str(bundle))
    assert code == 2 and "PKCS#12" in err


def test_sign_without_a_key_says_how_to_get_one(config: Path, tmp_path: Path) -> None:
    source = tmp_path / "doc.xml"
    source.write_text(DOC, encoding="utf-8")
    code, _, err = run(config, "sign", str(source))
    assert code == 2
    assert "gateway keys dev-pki" in err


def _chained_config(tmp_path: Path, include_chain: bool | None = None) -> Path:
    """A signing key whose certificate file holds the leaf and an issuing CA."""
    root = issue_certificate(None, "root CA", ca=True, path_length=1)
    issuing = issue_certificate(root, "issuing CA", ca=True, path_length=0)
    leaf = issue_certificate(issuing, "gateway signer")
    (tmp_path / "chain.key.pem").write_bytes(
        leaf.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    (tmp_path / "chain.cert.pem").write_bytes(
        b"".join(c.public_bytes(serialization.Encoding.PEM) for c in leaf.certificates())
    )
    (tmp_path / "root.pem").write_bytes(root.certificate.public_bytes(serialization.Encoding.PEM))
    setting = "" if include_chain is None else f"include_chain = {str(include_chain).lower()}"
    path = tmp_path / "chained.toml"
    path.write_text(
        f"""
[signing]
key_path = "{tmp_path}/chain.key.pem"
cert_path = "{tmp_path}/chain.cert.pem"
trust_paths = ["{tmp_path}/root.pem"]
{setting}
"""
    )
    return path


def _keyinfo_certificates(signed: bytes) -> int:
    ns = "{http://www.w3.org/2000/09/xmldsig#}"
    return len(etree.fromstring(signed).findall(f".//{ns}KeyInfo/{ns}X509Data/{ns}X509Certificate"))


@pytest.mark.parametrize(
    ("include_chain", "flags", "certificates"),
    [
        (None, [], 2),  # default: leaf and issuing CA
        (None, ["--no-chain"], 1),
        (False, [], 1),  # [signing] include_chain = false
        (True, ["--no-chain"], 1),  # the flag wins over the configuration
    ],
)
def test_sign_chain_in_keyinfo_is_optional(
    tmp_path: Path, include_chain: bool | None, flags: list[str], certificates: int
) -> None:
    config = _chained_config(tmp_path, include_chain)
    source = tmp_path / "doc.xml"
    source.write_text(DOC, encoding="utf-8")
    signed = tmp_path / "signed.xml"
    code, _, err = run(config, "sign", str(source), "--out", str(signed), *flags)
    assert code == 0, err
    assert _keyinfo_certificates(signed.read_bytes()) == certificates
    code, out, err = run(config, "verify", str(signed))
    if certificates == 2:
        assert code == 0 and out.startswith("valid: trusted"), err
    else:  # the leaf alone cannot be chained to the root: the peer must hold the intermediate
        assert code == 1 and "signature-untrusted" in err


def test_sign_with_explicit_key_honours_no_chain(tmp_path: Path) -> None:
    config = _chained_config(tmp_path)
    source = tmp_path / "doc.xml"
    source.write_text(DOC, encoding="utf-8")
    key = ["--key", str(tmp_path / "chain.key.pem"), "--cert", str(tmp_path / "chain.cert.pem")]
    for flags, certificates in (([], 2), (["--no-chain"], 1)):
        result = CliRunner().invoke(
            main, ["--config", str(config), "sign", *key, *flags, str(source)]
        )
        assert result.exit_code == 0, result.stderr
        assert _keyinfo_certificates(result.stdout_bytes) == certificates


def test_inspect_uses_the_configured_warning_days(config: Path, tmp_path: Path) -> None:
    run(config, "keys", "dev-pki", "--simulator", "postal")
    # a fresh development leaf has 730 days: inside a 1000-day window, outside the default 30
    code, out, _ = run(config, "keys", "inspect", "--json")
    assert code == 0 and {e["state"] for e in json.loads(out)} == {"ok"}
    wide = tmp_path / "wide.toml"
    wide.write_text(config.read_text() + "expiry_warning_days = 1000\n")
    code, out, _ = run(wide, "keys", "inspect", "--json")
    assert code == 0
    states = {e["role"]: e["state"] for e in json.loads(out)}
    assert states["signing"] == "expiring" and states["simulator:postal"] == "expiring"
    assert states["trust-anchor"] == "ok"  # the CA has ten years
    code, out, _ = run(wide, "keys", "inspect")
    signing_row = next(line for line in out.splitlines() if line.startswith("signing"))
    assert signing_row.split()[-1] == "expiring"
    code, out, _ = run(wide, "keys", "inspect", str(tmp_path / "pki" / "gateway.cert.pem"))
    assert code == 0 and out.splitlines()[1].split()[-1] == "expiring"
