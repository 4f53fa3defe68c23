"""Signing with the gateway's key: enveloped by default, detached on request.

RSA-SHA256 for RSA keys and ECDSA-SHA256 for EC (P-256) keys, SHA-256 digests, exclusive
C14N, and the signing certificate (plus intermediates unless told otherwise) in
KeyInfo/X509Data. The input is parsed by the hardened parser first, so a document the gateway
would refuse to read is never signed.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Literal

from cryptography.hazmat.primitives.asymmetric import ec
from lxml import etree
from signxml.algorithms import (
    CanonicalizationMethod,
    DigestAlgorithm,
    SignatureConstructionMethod,
    SignatureMethod,
)

from gateway.errors import ConfigurationError, InvalidRequest
from signing._signxml import TreeSigner
from signing.algorithms import c14n_label, label
from signing.errors import translated
from signing.keys import KeyMaterial
from signing.trust import CertificateInfo, describe
from signing.xml import DEFAULT_MAX_BYTES, DEFAULT_MAX_DEPTH, parse_xml

__all__ = ["DETACHED_REFERENCE_URI", "SignMode", "SignedXml", "XmlSigner"]

SignMode = Literal["enveloped", "detached"]

#: the Reference URI of a detached signature: a name for "the content handed over with it",
#: never something to fetch
DETACHED_REFERENCE_URI = "urn:dvc-gateway:detached-content"

_RSA_METHODS = {
    "rsa-sha256": SignatureMethod.RSA_SHA256,
    "rsa-sha384": SignatureMethod.RSA_SHA384,
    "rsa-sha512": SignatureMethod.RSA_SHA512,
}
_EC_METHODS = {
    "ecdsa-sha256": SignatureMethod.ECDSA_SHA256,
    "ecdsa-sha384": SignatureMethod.ECDSA_SHA384,
    "ecdsa-sha512": SignatureMethod.ECDSA_SHA512,
}


@dataclass(frozen=True, slots=True)
class SignedXml:
    #: the signed document (enveloped) or the ds:Signature element alone (detached)
    xml: bytes
    mode: SignMode
    reference_uri: str
    signature_method: str
    digest_method: str
    canonicalization: str
    signer: CertificateInfo

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.xml).hexdigest()


class XmlSigner:
    """Signs with one key. Thread-safe: every call builds its own signxml signer."""

    def __init__(
        self,
        material: KeyMaterial,
        *,
        signature_method: str | None = None,
        include_chain: bool = True,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_depth: int = DEFAULT_MAX_DEPTH,
    ) -> None:
        methods = (
            _EC_METHODS if isinstance(material.key, ec.EllipticCurvePrivateKey) else _RSA_METHODS
        )
        name = signature_method or next(iter(methods))
        if name not in methods:
            raise ConfigurationError(
                f"signature method {name!r} does not fit a {material.kind.upper()} key; "
                f"use one of {', '.join(methods)}"
            )
        self.material = material
        self.method = methods[name]
        self.digest = DigestAlgorithm.SHA256
        self.c14n = CanonicalizationMethod.EXCLUSIVE_XML_CANONICALIZATION_1_0
        self.certs = material.certificates() if include_chain else [material.certificate]
        self.signer_info = describe(material.certificate)
        self.max_bytes = max_bytes
        self.max_depth = max_depth

    def sign(
        self,
        data: bytes,
        *,
        mode: SignMode = "enveloped",
        reference_id: str | None = None,
    ) -> SignedXml:
        """Sign ``data``. ``reference_id`` signs only the element with that Id (enveloped)."""
        root = parse_xml(data, max_bytes=self.max_bytes, max_depth=self.max_depth)
        if mode == "detached":
            if reference_id is not None:
                raise InvalidRequest("reference_id applies to enveloped signatures only")
            construction = SignatureConstructionMethod.detached
            reference: str | None = DETACHED_REFERENCE_URI
            if _elements_with_id(root, DETACHED_REFERENCE_URI):
                raise InvalidRequest(f"the document already uses the Id {DETACHED_REFERENCE_URI}")
        else:
            construction = SignatureConstructionMethod.enveloped
            reference = None
            if reference_id is not None:
                hits = _elements_with_id(root, reference_id)
                if hits != 1:
                    raise InvalidRequest(
                        f"reference_id {reference_id!r} must name exactly one element "
                        f"(found {hits})"
                    )
                reference = "#" + reference_id
        signer = TreeSigner(
            method=construction,
            signature_algorithm=self.method,
            digest_algorithm=self.digest,
            c14n_algorithm=self.c14n,
        )
        with translated():
            signed = signer.sign(
                root, key=self.material.key, cert=self.certs, reference_uri=reference
            )
        return SignedXml(
            xml=etree.tostring(signed, encoding="UTF-8", xml_declaration=True),
            mode=mode,
            reference_uri=reference if reference is not None else "",
            signature_method=label(self.method.value),
            digest_method=label(self.digest.value),
            canonicalization=c14n_label(self.c14n.value),
            signer=self.signer_info,
        )


_ID_COUNT = etree.XPath("count(//*[@Id=$u or @ID=$u or @id=$u])")


def _elements_with_id(root: etree._Element, value: str) -> int:
    found = _ID_COUNT(root, u=value)
    assert isinstance(found, float)
    return int(found)
