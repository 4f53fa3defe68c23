"""Which XML-DSig algorithms, transforms and canonicalisations the gateway accepts.

The allowed-algorithms policy: SHA-2/SHA-3 RSA, RSA-PSS and ECDSA by default; SHA-1 (and the
DSA that only ever came with it) only for a peer where it is explicitly enabled; MD5 and
RIPEMD-160 never. Transforms are limited to what a document exchange needs: enveloped
signature, base64 and the canonicalisations. XSLT, XPath, XPath Filter 2.0 and XPointer can
run arbitrary queries over (or outside) the document, so they are refused wherever they occur.
"""

from __future__ import annotations

from signxml.algorithms import CanonicalizationMethod, DigestAlgorithm, SignatureMethod

__all__ = [
    "ALLOWED_CANONICALIZATIONS",
    "ALLOWED_TRANSFORMS",
    "BASE64_TRANSFORM",
    "ENVELOPED_TRANSFORM",
    "EXCLUSIVE_C14N",
    "c14n_label",
    "digest_algorithms",
    "label",
    "refused_algorithm",
    "signature_methods",
    "transform_label",
]

EXCLUSIVE_C14N = CanonicalizationMethod.EXCLUSIVE_XML_CANONICALIZATION_1_0.value
ENVELOPED_TRANSFORM = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"
BASE64_TRANSFORM = "http://www.w3.org/2000/09/xmldsig#base64"

ALLOWED_CANONICALIZATIONS = frozenset(m.value for m in CanonicalizationMethod)
ALLOWED_TRANSFORMS = ALLOWED_CANONICALIZATIONS | {ENVELOPED_TRANSFORM, BASE64_TRANSFORM}

#: transforms refused by name, so the problem says exactly which feature was hit
_REFUSED_TRANSFORMS = {
    "http://www.w3.org/TR/1999/REC-xslt-19991116": "XSLT transform",
    "http://www.w3.org/TR/1999/REC-xpath-19991116": "XPath transform",
    "http://www.w3.org/2002/06/xmldsig-filter2": "XPath Filter 2.0 transform",
    "http://www.w3.org/2001/04/xmldsig-more/xptr": "XPointer transform",
    "http://www.w3.org/2002/07/decrypt#XML": "decryption transform",
    "http://www.w3.org/2002/07/decrypt#Binary": "decryption transform",
    "http://www.w3.org/2006/12/xml-c14n11#WithComments#xpath": "XPath transform",
}


def label(uri: str) -> str:
    """The short name of an algorithm URI: ``...#rsa-sha256`` -> ``rsa-sha256``."""
    return uri.rsplit("#", 1)[-1] if "#" in uri else uri.rsplit("/", 1)[-1]


_C14N_LABELS = {
    CanonicalizationMethod.CANONICAL_XML_1_0.value: "c14n",
    CanonicalizationMethod.CANONICAL_XML_1_0_WITH_COMMENTS.value: "c14n-with-comments",
    CanonicalizationMethod.CANONICAL_XML_1_1.value: "c14n11",
    CanonicalizationMethod.CANONICAL_XML_1_1_WITH_COMMENTS.value: "c14n11-with-comments",
    CanonicalizationMethod.EXCLUSIVE_XML_CANONICALIZATION_1_0.value: "exc-c14n",
    CanonicalizationMethod.EXCLUSIVE_XML_CANONICALIZATION_1_0_WITH_COMMENTS.value: (
        "exc-c14n-with-comments"
    ),
}


def c14n_label(uri: str) -> str:
    return _C14N_LABELS.get(uri, uri)


def transform_label(uri: str) -> str | None:
    """None for an allowed transform, else what to call the refused one."""
    if uri in ALLOWED_TRANSFORMS:
        return None
    return _REFUSED_TRANSFORMS.get(uri, f"unsupported transform ({uri})")


def refused_algorithm(uri: str) -> str | None:
    """MD5 and RIPEMD-160 are refused outright, whatever the peer's policy says."""
    lowered = uri.lower()
    if "md5" in lowered or "ripemd" in lowered:
        return f"weak algorithm {label(uri)} (MD5 and RIPEMD-160 are refused)"
    return None


def signature_methods(*, allow_sha1: bool, hmac: bool) -> frozenset[SignatureMethod]:
    """Signature methods a verifier accepts; HMAC ones only where a shared key is configured."""
    out = set()
    for method in SignatureMethod:
        name = method.name
        if name.startswith("HMAC_") != hmac:
            continue
        if "SHA1" in name and not allow_sha1:
            continue
        # DSA lives on only in legacy exchanges, so it rides on the same switch as SHA-1
        if name.startswith("DSA_") and not allow_sha1:
            continue
        out.add(method)
    return frozenset(out)


def digest_algorithms(*, allow_sha1: bool) -> frozenset[DigestAlgorithm]:
    return frozenset(d for d in DigestAlgorithm if allow_sha1 or d is not DigestAlgorithm.SHA1)
