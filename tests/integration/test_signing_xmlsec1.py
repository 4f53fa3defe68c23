"""Cross-implementation: our signatures verify with ``xmlsec1 --verify`` and documents signed
by ``xmlsec1 --sign`` verify with us. xmlsec1 is the Debian package of the same name, which
``.ci/run`` installs (scripts/install-system-deps.sh); without it these tests skip saying so.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from gateway.errors import SignatureInvalid, UnsupportedXmlFeature
from signing.keys import DevPki, ensure_dev_pki, generate_key, issue_certificate, load_certificates
from signing.sign import XmlSigner
from signing.trust import TrustStore
from signing.verify import VerificationPolicy, XmlVerifier

XMLSEC1 = shutil.which("xmlsec1")
pytestmark = pytest.mark.skipif(
    XMLSEC1 is None, reason="xmlsec1 not installed (Debian package xmlsec1; .ci/run installs it)"
)

DOCUMENT = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    '<edXML xmlns="http://www.mic.gov.vn/TBT/QCVN_102_2016">'
    "<Header><From>000.00.00.H47</From><To>000.00.00.G22</To></Header>"
    '<Body Id="body"><Content>Quyết định số 12</Content></Body></edXML>'
).encode()

# a field-system style template: default-namespace ds:Signature, inclusive C14N, RSA-SHA1
FIELD_TEMPLATE = """<?xml version="1.0" encoding="UTF-8"?>
<edXML xmlns="http://www.mic.gov.vn/TBT/QCVN_102_2016"><Header><From>000.00.00.G22</From></Header>
<Body>Công văn số 7</Body>
<Signature xmlns="http://www.w3.org/2000/09/xmldsig#">
<SignedInfo>
<CanonicalizationMethod Algorithm="http://www.w3.org/TR/2001/REC-xml-c14n-20010315"/>
<SignatureMethod Algorithm="http://www.w3.org/2000/09/xmldsig#{method}"/>
<Reference URI="">
<Transforms><Transform Algorithm="http://www.w3.org/2000/09/xmldsig#enveloped-signature"/></Transforms>
<DigestMethod Algorithm="{digest}"/>
<DigestValue/>
</Reference>
</SignedInfo>
<SignatureValue/>
<KeyInfo><X509Data/></KeyInfo>
</Signature>
</edXML>
"""

# our default profile, written by xmlsec1: prefixed ds, exclusive C14N, RSA-SHA256
MODERN_TEMPLATE = """<?xml version="1.0" encoding="UTF-8"?>
<KetQua xmlns="urn:dvc:result"><MaHoSo>000.00.19.H47-260105-0001</MaHoSo>
<ds:Signature xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><ds:SignedInfo>
<ds:CanonicalizationMethod Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/>
<ds:SignatureMethod Algorithm="http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"/>
<ds:Reference URI=""><ds:Transforms>
<ds:Transform Algorithm="http://www.w3.org/2000/09/xmldsig#enveloped-signature"/>
<ds:Transform Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/></ds:Transforms>
<ds:DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/><ds:DigestValue/>
</ds:Reference></ds:SignedInfo><ds:SignatureValue/>
<ds:KeyInfo><ds:X509Data/></ds:KeyInfo></ds:Signature></KetQua>
"""


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> DevPki:
    return ensure_dev_pki(tmp_path_factory.mktemp("pki"), ["field"])


def _xmlsec1(*args: str) -> subprocess.CompletedProcess[str]:
    assert XMLSEC1 is not None
    return subprocess.run([XMLSEC1, *args], capture_output=True, text=True, timeout=30, check=False)


def _xmlsec1_verify(pki: DevPki, path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return _xmlsec1("--verify", "--trusted-pem", str(pki.ca.cert_path), *extra, str(path))


def _trust(pki: DevPki) -> TrustStore:
    return TrustStore(load_certificates(pki.ca.cert_path))


def test_our_rsa_signature_verifies_with_xmlsec1(pki: DevPki, tmp_path: Path) -> None:
    signed = tmp_path / "signed.xml"
    signed.write_bytes(XmlSigner(pki.gateway.load()).sign(DOCUMENT).xml)
    result = _xmlsec1_verify(pki, signed)
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout + result.stderr
    # and xmlsec1 is not just saying yes: a changed byte of content fails there too
    tampered = tmp_path / "tampered.xml"
    tampered.write_bytes(signed.read_bytes().replace("số 12".encode(), "số 13".encode()))
    assert _xmlsec1_verify(pki, tampered).returncode != 0


def test_our_ecdsa_and_id_reference_verify_with_xmlsec1(pki: DevPki, tmp_path: Path) -> None:
    leaf = issue_certificate(pki.ca.load(), "ecdsa signer", key=generate_key("ec"))
    signed = tmp_path / "ecdsa.xml"
    signed.write_bytes(XmlSigner(leaf).sign(DOCUMENT, reference_id="body").xml)
    result = _xmlsec1_verify(
        pki, signed, "--id-attr:Id", "http://www.mic.gov.vn/TBT/QCVN_102_2016:Body"
    )
    assert result.returncode == 0, result.stderr


def _xmlsec1_sign(pki: DevPki, template: str, tmp_path: Path, signer: str = "field") -> bytes:
    source = tmp_path / "template.xml"
    source.write_text(template, encoding="utf-8")
    out = tmp_path / "xmlsec1-signed.xml"
    files = pki.simulator(signer)
    result = _xmlsec1(
        "--sign",
        "--privkey-pem",
        f"{files.key_path},{files.cert_path}",
        "--output",
        str(out),
        str(source),
    )
    assert result.returncode == 0, result.stderr
    return out.read_bytes()


def test_xmlsec1_signature_in_our_profile_verifies_with_us(pki: DevPki, tmp_path: Path) -> None:
    signed = _xmlsec1_sign(pki, MODERN_TEMPLATE, tmp_path)
    result = XmlVerifier(VerificationPolicy(trust=_trust(pki))).verify(signed)
    assert result.chain_status == "trusted"
    assert result.signer is not None and "field simulator" in result.signer.subject
    assert b"000.00.19.H47-260105-0001" in result.signed_content
    with pytest.raises(SignatureInvalid):
        XmlVerifier(VerificationPolicy(trust=_trust(pki))).verify(
            signed.replace(b"260105-0001", b"260105-0002")
        )


def test_field_system_rsa_sha1_inclusive_c14n_verifies_only_when_enabled(
    pki: DevPki, tmp_path: Path
) -> None:
    template = FIELD_TEMPLATE.format(
        method="rsa-sha1", digest="http://www.w3.org/2000/09/xmldsig#sha1"
    )
    signed = _xmlsec1_sign(pki, template, tmp_path)
    field_peer = VerificationPolicy(trust=_trust(pki), allow_sha1=True, peer="field")
    result = XmlVerifier(field_peer).verify(signed)
    assert result.chain_status == "trusted"
    assert result.as_dict()["algorithms"]["signature"] == "rsa-sha1"
    assert "Công văn số 7".encode() in result.signed_content
    with pytest.raises(UnsupportedXmlFeature, match="SHA-1"):
        XmlVerifier(VerificationPolicy(trust=_trust(pki))).verify(signed)


def test_field_layout_with_sha256_verifies_without_any_legacy_switch(
    pki: DevPki, tmp_path: Path
) -> None:
    # default-namespace ds:Signature + inclusive C14N is where libxml2 2.14 emits a spurious
    # xmlns="" in SignedInfo; the verifier handles it without a per-peer switch
    template = FIELD_TEMPLATE.format(
        method="", digest="http://www.w3.org/2001/04/xmlenc#sha256"
    ).replace(
        'http://www.w3.org/2000/09/xmldsig#"/>\n<Reference',
        'http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"/>\n<Reference',
    )
    assert "rsa-sha256" in template
    signed = _xmlsec1_sign(pki, template, tmp_path)
    result = XmlVerifier(VerificationPolicy(trust=_trust(pki))).verify(signed)
    assert result.chain_status == "trusted"
