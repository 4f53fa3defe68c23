"""Signing and strict verification with a real development PKI, and signature wrapping."""

from __future__ import annotations

import base64
import copy
from concurrent.futures import ThreadPoolExecutor

import pytest
from cryptography.hazmat.primitives.serialization import Encoding
from lxml import etree

from gateway.errors import (
    ConfigurationError,
    GatewayError,
    InvalidRequest,
    SignatureInvalid,
    UnsupportedXmlFeature,
    XmlRejected,
)
from signing.keys import DevPki, KeyMaterial, generate_key, issue_certificate
from signing.sign import DETACHED_REFERENCE_URI, XmlSigner
from signing.trust import TrustStore
from signing.verify import VerificationPolicy, XmlVerifier

DS = "http://www.w3.org/2000/09/xmldsig#"
EDXML = "http://www.mic.gov.vn/TBT/QCVN_102_2016"
NS = {"ds": DS, "e": EDXML}


def _tree(data: bytes) -> etree._Element:
    return etree.fromstring(data)


def _bytes(root: etree._Element) -> bytes:
    return etree.tostring(root)


# ---------------------------------------------------------------- signing defaults


def test_enveloped_defaults_rsa_sha256_exclusive_c14n_cert_in_keyinfo(
    signer: XmlSigner, verifier: XmlVerifier, document: bytes, gateway_key: KeyMaterial
) -> None:
    signed = signer.sign(document)
    root = _tree(signed.xml)
    sig = root.find("ds:Signature", NS)
    assert sig is not None and sig.getparent() is root
    algorithms = {
        "c14n": sig.find("ds:SignedInfo/ds:CanonicalizationMethod", NS).get("Algorithm"),  # type: ignore[union-attr]
        "method": sig.find("ds:SignedInfo/ds:SignatureMethod", NS).get("Algorithm"),  # type: ignore[union-attr]
        "digest": sig.find("ds:SignedInfo/ds:Reference/ds:DigestMethod", NS).get("Algorithm"),  # type: ignore[union-attr]
    }
    assert algorithms == {
        "c14n": "http://www.w3.org/2001/10/xml-exc-c14n#",
        "method": "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
        "digest": "http://www.w3.org/2001/04/xmlenc#sha256",
    }
    transforms = [t.get("Algorithm") for t in sig.iterfind(".//ds:Transform", NS)]
    assert transforms == [
        "http://www.w3.org/2000/09/xmldsig#enveloped-signature",
        "http://www.w3.org/2001/10/xml-exc-c14n#",
    ]
    cert_text = sig.findtext("ds:KeyInfo/ds:X509Data/ds:X509Certificate", namespaces=NS)
    assert cert_text is not None
    assert base64.b64decode(cert_text) == gateway_key.certificate.public_bytes(Encoding.DER)

    result = verifier.verify(signed.xml)
    assert result.chain_status == "trusted"
    assert result.signer is not None and "dvc-gateway signing" in result.signer.subject
    assert (
        result.as_dict()["algorithms"]
        == {
            "signature": "rsa-sha256",
            "canonicalization": "xml-exc-c14n#",
            "digests": ["sha256"],
        }
        or result.as_dict()["algorithms"]["signature"] == "rsa-sha256"
    )
    # the signed content is the document without the signature, canonicalised
    assert b"Signature" not in result.signed_content
    assert "Quyết định số 12".encode() in result.signed_content
    assert result.signed_xml is not None
    assert result.signed_xml.findtext("e:Body/e:Content", namespaces=NS) == "Quyết định số 12"


def test_ecdsa_p256_signing(ca: KeyMaterial, trust: TrustStore, document: bytes) -> None:
    leaf = issue_certificate(ca, "ecdsa signer", key=generate_key("ec"))
    signed = XmlSigner(leaf).sign(document)
    assert b"ecdsa-sha256" in signed.xml
    result = XmlVerifier(VerificationPolicy(trust=trust)).verify(signed.xml)
    assert result.chain_status == "trusted"
    assert result.as_dict()["algorithms"]["signature"] == "ecdsa-sha256"


def test_signature_method_must_fit_the_key(gateway_key: KeyMaterial) -> None:
    with pytest.raises(ConfigurationError, match="does not fit"):
        XmlSigner(gateway_key, signature_method="ecdsa-sha256")
    assert (
        b"rsa-sha512" in XmlSigner(gateway_key, signature_method="rsa-sha512").sign(b"<a>x</a>").xml
    )


def test_intermediate_chain_travels_in_keyinfo(document: bytes) -> None:
    root = issue_certificate(None, "root CA", ca=True, path_length=1)
    intermediate = issue_certificate(root, "issuing CA", ca=True, path_length=0)
    leaf = issue_certificate(intermediate, "officer signer")
    assert leaf.chain == (intermediate.certificate,)
    signed = XmlSigner(leaf).sign(document)
    assert signed.xml.count(b"<ds:X509Certificate>") == 2
    result = XmlVerifier(VerificationPolicy(trust=TrustStore([root.certificate]))).verify(
        signed.xml
    )
    assert [c.subject.split(",")[-1] for c in result.chain] == ["C=VN"] * 3
    assert "officer signer" in result.chain[0].subject
    assert "root CA" in result.chain[-1].subject
    # without the intermediate in KeyInfo the chain cannot be built
    bare = XmlSigner(leaf, include_chain=False).sign(document)
    with pytest.raises(GatewayError) as info:
        XmlVerifier(VerificationPolicy(trust=TrustStore([root.certificate]))).verify(bare.xml)
    assert info.value.slug == "signature-untrusted"


def test_documents_the_parser_refuses_are_not_signed(signer: XmlSigner) -> None:
    with pytest.raises(XmlRejected, match="DOCTYPE"):
        signer.sign(b'<!DOCTYPE a [<!ENTITY e "x">]><a>&e;</a>')


def test_sign_only_one_element_by_id(
    signer: XmlSigner, verifier: XmlVerifier, document: bytes
) -> None:
    signed = signer.sign(document, reference_id="body")
    assert signed.reference_uri == "#body"
    result = verifier.verify(signed.xml)
    assert result.references[0].uri == "#body"
    assert result.signed_xml is not None and etree.QName(result.signed_xml).localname == "Body"
    assert b"<From>" not in result.signed_content
    with pytest.raises(InvalidRequest, match="exactly one"):
        signer.sign(document, reference_id="nope")


# ---------------------------------------------------------------- detached


def test_detached_signature_round_trip(
    signer: XmlSigner, verifier: XmlVerifier, document: bytes
) -> None:
    signed = signer.sign(document, mode="detached")
    sig = _tree(signed.xml)
    assert sig.tag == f"{{{DS}}}Signature"
    assert signed.reference_uri == DETACHED_REFERENCE_URI
    result = verifier.verify(signed.xml, detached_content=document)
    assert result.references[0].uri == DETACHED_REFERENCE_URI
    assert b"Quy" in result.signed_content
    with pytest.raises(SignatureInvalid, match="modified"):
        verifier.verify(signed.xml, detached_content=document.replace(b"150000", b"1"))
    with pytest.raises(UnsupportedXmlFeature, match="remote reference URI"):
        verifier.verify(signed.xml)


# ---------------------------------------------------------------- tampering


def test_modified_content_is_refused(
    signer: XmlSigner, verifier: XmlVerifier, document: bytes
) -> None:
    signed = signer.sign(document)
    with pytest.raises(SignatureInvalid, match="modified") as info:
        verifier.verify(signed.xml.replace(b"150000", b"950000"))
    assert info.value.slug == "signature-invalid"


def test_modified_signature_value_is_refused(
    signer: XmlSigner, verifier: XmlVerifier, document: bytes
) -> None:
    root = _tree(signer.sign(document).xml)
    value = root.find(".//ds:SignatureValue", NS)
    assert value is not None and value.text
    value.text = ("A" if value.text[0] != "A" else "B") + value.text[1:]
    with pytest.raises(SignatureInvalid, match="does not verify"):
        verifier.verify(_bytes(root))


def test_two_signatures_are_refused(
    signer: XmlSigner, verifier: XmlVerifier, document: bytes
) -> None:
    twice = signer.sign(signer.sign(document).xml).xml
    with pytest.raises(UnsupportedXmlFeature, match="2 ds:Signature"):
        verifier.verify(twice)


def test_unsigned_document_is_refused(verifier: XmlVerifier, document: bytes) -> None:
    with pytest.raises(SignatureInvalid, match="no ds:Signature"):
        verifier.verify(document)


@pytest.mark.parametrize(
    ("algorithm", "named"),
    [
        ("http://www.w3.org/TR/1999/REC-xslt-19991116", "XSLT transform"),
        ("http://www.w3.org/TR/1999/REC-xpath-19991116", "XPath transform"),
        ("http://www.w3.org/2002/06/xmldsig-filter2", "XPath Filter 2.0 transform"),
        ("http://www.w3.org/2001/04/xmldsig-more/xptr", "XPointer transform"),
    ],
)
def test_forbidden_transforms_are_refused_even_inside_a_manifest(
    signer: XmlSigner, verifier: XmlVerifier, document: bytes, algorithm: str, named: str
) -> None:
    root = _tree(signer.sign(document).xml)
    sig = root.find("ds:Signature", NS)
    assert sig is not None
    obj = etree.SubElement(sig, f"{{{DS}}}Object")
    manifest = etree.SubElement(obj, f"{{{DS}}}Manifest")
    ref = etree.SubElement(manifest, f"{{{DS}}}Reference", URI="#body")
    transforms = etree.SubElement(ref, f"{{{DS}}}Transforms")
    etree.SubElement(transforms, f"{{{DS}}}Transform", Algorithm=algorithm)
    etree.SubElement(
        ref, f"{{{DS}}}DigestMethod", Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"
    )
    etree.SubElement(ref, f"{{{DS}}}DigestValue").text = "AAAA"
    with pytest.raises(UnsupportedXmlFeature) as info:
        verifier.verify(_bytes(root))
    assert named in info.value.detail
    assert named in info.value.problem()["features"]


def test_xpointer_and_remote_references_are_refused(
    signer: XmlSigner, verifier: XmlVerifier, document: bytes
) -> None:
    for uri, named in [
        ("#xpointer(/)", "XPointer reference URI"),
        ("http://attacker.invalid/x", "remote reference URI"),
        ("file:///etc/passwd", "remote reference URI"),
    ]:
        root = _tree(signer.sign(document).xml)
        ref = root.find(".//ds:Reference", NS)
        assert ref is not None
        ref.set("URI", uri)
        with pytest.raises(UnsupportedXmlFeature, match=named):
            verifier.verify(_bytes(root))


def test_weak_digest_is_refused(signer: XmlSigner, verifier: XmlVerifier, document: bytes) -> None:
    root = _tree(signer.sign(document).xml)
    method = root.find(".//ds:DigestMethod", NS)
    assert method is not None
    method.set("Algorithm", "http://www.w3.org/2001/04/xmldsig-more#md5")
    with pytest.raises(UnsupportedXmlFeature, match="MD5"):
        verifier.verify(_bytes(root))


# ---------------------------------------------------------------- signature wrapping


def test_wrapping_moved_signed_element_returns_only_signed_data(
    signer: XmlSigner, verifier: XmlVerifier, document: bytes
) -> None:
    # classic XSW: the signed Body is hidden in a wrapper, a forged Body takes its place
    root = _tree(signer.sign(document, reference_id="body").xml)
    body = root.find("e:Body", NS)
    assert body is not None
    forged = copy.deepcopy(body)
    del forged.attrib["Id"]
    forged.find("e:Amount", NS).text = "1"  # type: ignore[union-attr]
    forged.find("e:Content", NS).text = "forged"  # type: ignore[union-attr]
    wrapper = etree.SubElement(root.find("e:Header", NS), f"{{{EDXML}}}Extensions")  # type: ignore[arg-type]
    root.replace(body, forged)
    wrapper.append(body)
    result = verifier.verify(_bytes(root))
    # what the caller gets is exactly the signed element, never the forged one
    assert result.signed_xml is not None
    assert result.signed_xml.findtext("e:Amount", namespaces=NS) == "150000"
    assert b"forged" not in result.signed_content
    assert b">1<" not in result.signed_content


def test_wrapping_moved_element_under_whole_document_signature_is_refused(
    signer: XmlSigner, verifier: XmlVerifier, document: bytes
) -> None:
    root = _tree(signer.sign(document).xml)
    body = root.find("e:Body", NS)
    header = root.find("e:Header", NS)
    assert body is not None and header is not None
    header.append(body)
    with pytest.raises(SignatureInvalid, match="modified"):
        verifier.verify(_bytes(root))


def test_wrapping_duplicated_id_is_refused(
    signer: XmlSigner, verifier: XmlVerifier, document: bytes
) -> None:
    root = _tree(signer.sign(document, reference_id="body").xml)
    body = root.find("e:Body", NS)
    assert body is not None
    forged = copy.deepcopy(body)
    forged.find("e:Amount", NS).text = "1"  # type: ignore[union-attr]
    root.insert(0, forged)  # same Id="body", earlier in document order
    with pytest.raises(SignatureInvalid, match="Id occurs more than once"):
        verifier.verify(_bytes(root))


def test_wrapping_second_unsigned_element_of_the_same_name(
    signer: XmlSigner, verifier: XmlVerifier, document: bytes
) -> None:
    # signed by Id: the extra Body is accepted in the document but never returned
    root = _tree(signer.sign(document, reference_id="body").xml)
    extra = etree.SubElement(root, f"{{{EDXML}}}Body")
    etree.SubElement(extra, f"{{{EDXML}}}Amount").text = "1"
    result = verifier.verify(_bytes(root))
    assert result.signed_xml is not None
    assert result.signed_xml.findtext("e:Amount", namespaces=NS) == "150000"
    assert result.signed_content.count(b"<Amount") == 1
    # signed as a whole document: the extra element breaks the digest
    whole = _tree(signer.sign(document).xml)
    extra = etree.SubElement(whole, f"{{{EDXML}}}Body")
    etree.SubElement(extra, f"{{{EDXML}}}Amount").text = "1"
    with pytest.raises(SignatureInvalid, match="modified"):
        verifier.verify(_bytes(whole))


def test_signed_document_nested_in_attacker_root_is_refused(
    signer: XmlSigner, verifier: XmlVerifier, document: bytes
) -> None:
    signed = _tree(signer.sign(document).xml)
    outer = etree.Element("Envelope")
    etree.SubElement(outer, "Forged").text = "pay 1 000 000 000"
    outer.append(signed)
    with pytest.raises(SignatureInvalid):
        verifier.verify(_bytes(outer))


# ---------------------------------------------------------------- pinning


def test_pinned_peer_certificate(
    pki_peer: KeyMaterial, gateway_key: KeyMaterial, document: bytes
) -> None:
    signed = XmlSigner(pki_peer).sign(document)
    pinned = VerificationPolicy(pinned=(pki_peer.certificate,), peer="payments")
    assert XmlVerifier(pinned).verify(signed.xml).chain_status == "pinned"
    other = VerificationPolicy(pinned=(gateway_key.certificate,), peer="payments")
    with pytest.raises(GatewayError) as info:
        XmlVerifier(other).verify(signed.xml)
    assert info.value.slug == "signature-untrusted"
    assert "payments" in info.value.detail


@pytest.fixture
def pki_peer(pki: DevPki) -> KeyMaterial:
    return pki.simulator("payments").load()


def test_pinned_certificate_used_when_the_document_carries_none(
    pki_peer: KeyMaterial, document: bytes
) -> None:
    signed = XmlSigner(pki_peer).sign(document)
    root = _tree(signed.xml)
    key_info = root.find(".//ds:KeyInfo", NS)
    assert key_info is not None
    key_info.getparent().remove(key_info)  # type: ignore[union-attr]
    policy = VerificationPolicy(pinned=(pki_peer.certificate,))
    result = XmlVerifier(policy).verify(_bytes(root))
    assert result.chain_status == "pinned"
    assert result.signer is not None and "payments" in result.signer.subject


def test_concurrent_verification_is_safe(
    signer: XmlSigner, verifier: XmlVerifier, document: bytes
) -> None:
    signed = [signer.sign(document.replace(b"150000", str(i).encode())).xml for i in range(16)]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(verifier.verify, signed))
    assert [r.signed_xml.findtext("e:Body/e:Amount", namespaces=NS) for r in results] == [  # type: ignore[union-attr]
        str(i) for i in range(16)
    ]


def test_reference_count_is_bounded_before_any_digest(
    signer: XmlSigner, verifier: XmlVerifier, document: bytes
) -> None:
    root = _tree(signer.sign(document).xml)
    signed_info = root.find(".//ds:SignedInfo", NS)
    reference = root.find(".//ds:Reference", NS)
    assert signed_info is not None and reference is not None
    for _ in range(50):
        signed_info.append(copy.deepcopy(reference))
    with pytest.raises(SignatureInvalid, match="51 references; 1 to 1 are accepted"):
        verifier.verify(_bytes(root))
