"""Strict XML-DSig verification.

``XmlVerifier(policy).verify(data)`` returns a :class:`VerifiedDocument` holding **only the
signed content** (each reference's canonical bytes, and that content parsed again), never the
original tree: what the caller reads is exactly what was signed, which defeats signature
wrapping. Before any cryptography, the whole ds:Signature (ds:Manifest included) is scanned and
refused, naming every offending feature, when it uses a refused transform, an XPointer or
remote reference, a weak or disabled algorithm, a truncated HMAC or a KeyInfo form that cannot
be resolved locally. Then trust is established by exactly one of:

* an HMAC key configured for the peer (the signature method must be an HMAC),
* the certificates pinned for the peer (the document's certificate must be one of them),
* a chain from the document's X.509 certificate to the trust store,
* the document's own KeyValue, only when the policy says so (integrity, not identity).

signxml does the canonicalisation and the cryptography, on a tree parsed by our hardened parser.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from typing import Any, Literal

from cryptography import x509
from lxml import etree
from signxml.algorithms import DigestAlgorithm, SignatureMethod
from signxml.verifier import SignatureConfiguration

from gateway.errors import (
    SignatureInvalid,
    SignatureUntrusted,
    UnsupportedXmlFeature,
    XmlRejected,
)
from signing._signxml import TreeVerifier
from signing.algorithms import (
    ALLOWED_CANONICALIZATIONS,
    c14n_label,
    digest_algorithms,
    label,
    refused_algorithm,
    signature_methods,
    transform_label,
)
from signing.errors import translated
from signing.trust import CertificateInfo, ChainResult, TrustStore, describe
from signing.xml import DEFAULT_MAX_BYTES, DEFAULT_MAX_DEPTH, parse_xml

__all__ = [
    "ChainStatus",
    "SignedReference",
    "VerificationPolicy",
    "VerifiedDocument",
    "XmlVerifier",
]

DS = "http://www.w3.org/2000/09/xmldsig#"
DSIG11 = "http://www.w3.org/2009/xmldsig11#"
_NS = {"ds": DS, "dsig11": DSIG11}

ChainStatus = Literal["trusted", "pinned", "shared-key", "integrity-only"]

_HMAC_BITS = {"sha1": 160, "sha224": 224, "sha256": 256, "sha384": 384, "sha512": 512}


@dataclass(frozen=True, slots=True)
class VerificationPolicy:
    """What a verifier accepts; build one per peer (see ``signing.service``)."""

    trust: TrustStore = field(default_factory=TrustStore)
    #: certificates the peer signs with; when given, nothing else is accepted
    pinned: tuple[x509.Certificate, ...] = ()
    #: shared secret for HMAC signatures
    hmac_key: bytes | None = None
    #: accept SHA-1 (and DSA): only for a named peer that still sends it
    allow_sha1: bool = False
    #: accept a key carried only in the document's KeyValue: proves integrity, not identity.
    #: Never for peers; interop tests and self-checks only.
    trust_embedded_key: bool = False
    #: drop spurious xmlns="" from inclusive C14N (lxml/libxml2 2.14 and old signers)
    legacy_c14n_xmlns: bool = False
    #: validate certificates at this time instead of now (tests and archives only)
    verification_time: dt.datetime | None = None
    max_references: int = 1
    max_bytes: int = DEFAULT_MAX_BYTES
    max_depth: int = DEFAULT_MAX_DEPTH
    #: the peer's name, for messages
    peer: str | None = None


@dataclass(frozen=True)
class SignedReference:
    uri: str
    #: the referenced data after its transforms: exactly the bytes that were digested
    content: bytes
    digest_method: str

    @cached_property
    def xml(self) -> etree._Element | None:
        """``content`` parsed (on first use), or None when it is not XML (base64 transform)."""
        try:
            return parse_xml(self.content, max_bytes=max(len(self.content), 1))
        except XmlRejected:
            return None

    @cached_property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()


@dataclass(frozen=True, slots=True)
class VerifiedDocument:
    references: tuple[SignedReference, ...]
    chain_status: ChainStatus
    signer: CertificateInfo | None
    chain: tuple[CertificateInfo, ...]
    signature_method: str
    canonicalization: str

    @property
    def signed_content(self) -> bytes:
        return self.references[0].content

    @property
    def signed_xml(self) -> etree._Element | None:
        return self.references[0].xml

    @property
    def content_sha256(self) -> str:
        return self.references[0].sha256

    def as_dict(self, *, include_content: bool = False) -> dict[str, Any]:
        body: dict[str, Any] = {
            "valid": True,
            "chain_status": self.chain_status,
            "signer": self.signer.as_dict() if self.signer else None,
            "chain": [c.as_dict() for c in self.chain],
            "algorithms": {
                "signature": label(self.signature_method),
                "canonicalization": self.canonicalization,
                "digests": sorted({label(r.digest_method) for r in self.references}),
            },
            "references": [
                {"uri": r.uri, "sha256": r.sha256, "bytes": len(r.content)} for r in self.references
            ],
            "signed_content_sha256": self.content_sha256,
        }
        if include_content:
            body["signed_content"] = self.signed_content.decode("utf-8", "replace")
        return body


@dataclass(frozen=True, slots=True)
class _KeyPlan:
    kind: Literal["hmac", "pinned", "chain", "embedded"]
    certs: tuple[x509.Certificate, ...] = ()


class XmlVerifier:
    """Verifies documents under one policy. Thread-safe: each call uses its own signxml object."""

    def __init__(self, policy: VerificationPolicy) -> None:
        self.policy = policy
        self._hmac_methods = signature_methods(allow_sha1=policy.allow_sha1, hmac=True)
        self._key_methods = signature_methods(allow_sha1=policy.allow_sha1, hmac=False)
        self._digests = digest_algorithms(allow_sha1=policy.allow_sha1)

    def verify(self, data: bytes, *, detached_content: bytes | None = None) -> VerifiedDocument:
        """Verify ``data`` (a signed document, or a detached ds:Signature with its content)."""
        policy = self.policy
        with translated():
            root = parse_xml(data, max_bytes=policy.max_bytes, max_depth=policy.max_depth)
            signature = _the_signature(root)
            method = _algorithm(signature, "ds:SignedInfo/ds:SignatureMethod")
            refusals = self._refusals(signature, method, detached=detached_content is not None)
            if refusals:
                raise UnsupportedXmlFeature(
                    "refused: " + "; ".join(refusals), extra={"features": refusals}
                )
            count = len(signature.findall("ds:SignedInfo/ds:Reference", _NS))
            if not 1 <= count <= policy.max_references:
                # checked before any digest: each reference costs a copy of the document
                raise SignatureInvalid(
                    f"the signature has {count} references; 1 to {policy.max_references} "
                    "are accepted"
                )
            plan = self._key_plan(signature, method)
            content_root = None
            if detached_content is not None:
                content_root = parse_xml(
                    detached_content, max_bytes=policy.max_bytes, max_depth=policy.max_depth
                )
            return self._verify(root, signature, method, plan, content_root)

    # ------------------------------------------------------------ the scan

    def _refusals(self, signature: etree._Element, method: str, *, detached: bool) -> list[str]:
        """Every refused feature in the signature, in document order, without duplicates."""
        found: list[str] = []

        def add(what: str) -> None:
            if what not in found:
                found.append(what)

        c14n = _algorithm(signature, "ds:SignedInfo/ds:CanonicalizationMethod")
        if c14n not in ALLOWED_CANONICALIZATIONS:
            add(f"unsupported canonicalization ({c14n})")
        self._check_method(method, signature, add)
        for transform in signature.iterfind(".//ds:Transform", _NS):
            what = transform_label(transform.get("Algorithm", ""))
            if what:
                add(what)
        external = []
        for ref in signature.iterfind(".//ds:Reference", _NS):
            uri = ref.get("URI")
            parent = ref.getparent()
            in_signed_info = parent is not None and _is(parent, "SignedInfo")
            if uri is None:
                add("reference without URI")
            elif uri.startswith("#xpointer(") or uri.startswith("#element("):
                add(f"XPointer reference URI ({uri})")
            elif uri != "" and not uri.startswith("#"):
                if in_signed_info:
                    external.append(uri)
                if not (detached and in_signed_info):
                    add(f"remote reference URI ({uri}): the gateway never fetches")
            digest = _algorithm(ref, "ds:DigestMethod")
            weak = refused_algorithm(digest)
            if weak:
                add(weak)
            elif digest and not self._digest_allowed(digest):
                add(self._disabled(digest))
        if detached and len(external) != 1:
            add("a detached signature must have exactly one external reference")
        for what in self._keyinfo_refusals(signature, method):
            add(what)
        return found

    def _check_method(self, method: str, signature: etree._Element, add: Any) -> None:
        weak = refused_algorithm(method)
        if weak:
            add(weak)
            return
        try:
            parsed = SignatureMethod(method)
        except Exception:
            add(f"unsupported signature method ({method})")
            return
        allowed = self._hmac_methods | self._key_methods
        if parsed not in allowed:
            add(self._disabled(method))
        if parsed.name.startswith("HMAC_"):
            node = signature.find("ds:SignedInfo/ds:SignatureMethod/ds:HMACOutputLength", _NS)
            if node is not None:
                full = _HMAC_BITS.get(parsed.name.removeprefix("HMAC_").lower())
                if (node.text or "").strip() != str(full):
                    add(
                        f"truncated HMAC (HMACOutputLength={(node.text or '').strip()}, "
                        f"full length {full}): truncation is refused (CVE-2009-0217)"
                    )

    def _digest_allowed(self, uri: str) -> bool:
        try:
            return DigestAlgorithm(uri) in self._digests
        except Exception:
            return False

    def _disabled(self, uri: str) -> str:
        if "sha1" in uri.lower():
            who = f"peer {self.policy.peer!r}" if self.policy.peer else "this peer"
            return f"SHA-1 algorithm {label(uri)} is not enabled for {who}"
        if "dsa-" in uri.lower() and "ecdsa" not in uri.lower():
            return f"DSA algorithm {label(uri)} is only accepted with SHA-1 legacy mode"
        return f"algorithm {label(uri)} is not allowed"

    def _keyinfo_refusals(self, signature: etree._Element, method: str) -> list[str]:
        # HMAC and pinned certificates need nothing from KeyInfo, so its forms do not matter
        if "hmac" in method.lower() or self.policy.pinned:
            return []
        key_info = signature.find("ds:KeyInfo", _NS)
        if key_info is None:
            return []
        if _certificates(key_info) or _embedded_key(key_info) is not None:
            return []
        found = []
        for child in key_info:
            if not isinstance(child.tag, str):
                continue
            name = etree.QName(child).localname
            if name == "X509Data":
                for item in child:
                    if isinstance(item.tag, str):
                        sub = etree.QName(item).localname
                        found.append(f"KeyInfo form not resolved (X509Data/{sub})")
            else:
                found.append(f"KeyInfo form not resolved ({name})")
        return found

    # ------------------------------------------------------------ the key

    def _key_plan(self, signature: etree._Element, method: str) -> _KeyPlan:
        policy = self.policy
        if "hmac" in method.lower():
            if policy.hmac_key is None:
                raise SignatureUntrusted(
                    "the document is HMAC-signed but no shared key is configured"
                )
            return _KeyPlan("hmac")
        key_info = signature.find("ds:KeyInfo", _NS)
        certs = _certificates(key_info) if key_info is not None else []
        if policy.pinned:
            return _KeyPlan("pinned", tuple(certs))
        if certs:
            return _KeyPlan("chain", tuple(certs))
        if key_info is not None and _embedded_key(key_info) is not None:
            if policy.trust_embedded_key:
                return _KeyPlan("embedded")
            raise SignatureUntrusted(
                "the only key is the document's own KeyValue: that proves integrity, not who "
                "signed; the signer needs a certificate chaining to the trust store or a pin"
            )
        raise SignatureUntrusted("the signature carries no certificate the gateway can check")

    def _signer(self, plan: _KeyPlan) -> list[ChainResult | None]:
        """Candidate validated signers, in the order to try them."""
        policy = self.policy
        at = policy.verification_time
        if plan.kind == "chain":
            leaf, rest = _leaf_first(plan.certs)
            return [policy.trust.validate(leaf, rest, at=at)]
        if plan.kind == "pinned":
            if plan.certs:
                leaf, _ = _leaf_first(plan.certs)
                return [policy.trust.validate_pinned(leaf, policy.pinned, at=at, peer=policy.peer)]
            return [
                policy.trust.validate_pinned(pin, policy.pinned, at=at, peer=policy.peer)
                for pin in policy.pinned
            ]
        return [None]

    # ------------------------------------------------------------ signxml

    def _verify(
        self,
        root: etree._Element,
        signature: etree._Element,
        method: str,
        plan: _KeyPlan,
        content_root: etree._Element | None,
    ) -> VerifiedDocument:
        policy = self.policy
        hmac = plan.kind == "hmac"
        config = SignatureConfiguration(
            require_x509=plan.kind in ("chain", "pinned"),
            location=".//",
            expect_references=True,
            signature_methods=self._hmac_methods if hmac else self._key_methods,
            digest_algorithms=self._digests,
            verification_time=policy.verification_time,
        )

        def resolve(uri: str) -> etree._Element | None:
            # only the content the caller handed us; nothing is ever fetched
            return content_root

        last_error: Exception | None = None
        for signer in self._signer(plan):
            verifier = TreeVerifier()
            verifier.excise_empty_xmlns_declarations = policy.legacy_c14n_xmlns
            try:
                results = verifier.verify(
                    root,
                    x509_cert=signer.leaf if signer else None,
                    hmac_key=policy.hmac_key if hmac else None,
                    uri_resolver=resolve if content_root is not None else None,
                    expect_config=config,
                    validate_schema=True,
                )
            except Exception as exc:  # a wrong pin among several: try the next one
                last_error = exc
                continue
            return self._result(results, signature, method, plan, signer)
        assert last_error is not None
        raise last_error

    def _result(
        self,
        results: Any,
        signature: etree._Element,
        method: str,
        plan: _KeyPlan,
        signer: ChainResult | None,
    ) -> VerifiedDocument:
        results = list(results) if isinstance(results, list) else [results]
        if not 1 <= len(results) <= self.policy.max_references:
            raise SignatureInvalid(
                f"the signature has {len(results)} references, at most "
                f"{self.policy.max_references} are accepted"
            )
        refs = signature.findall("ds:SignedInfo/ds:Reference", _NS)
        references = tuple(
            SignedReference(
                uri=ref.get("URI", ""),
                content=result.signed_data,
                digest_method=_algorithm(ref, "ds:DigestMethod"),
            )
            for ref, result in zip(refs, results, strict=True)
        )
        status: ChainStatus
        if plan.kind == "hmac":
            status = "shared-key"
        elif plan.kind == "embedded":
            status = "integrity-only"
        else:
            assert signer is not None
            status = signer.status
        chain = tuple(describe(c) for c in signer.chain) if signer else ()
        return VerifiedDocument(
            references=references,
            chain_status=status,
            signer=chain[0] if chain else None,
            chain=chain,
            signature_method=method,
            canonicalization=c14n_label(
                _algorithm(signature, "ds:SignedInfo/ds:CanonicalizationMethod")
            ),
        )


# ---------------------------------------------------------------- helpers


def _is(element: etree._Element, localname: str) -> bool:
    return isinstance(element.tag, str) and element.tag == f"{{{DS}}}{localname}"


def _the_signature(root: etree._Element) -> etree._Element:
    if _is(root, "Signature"):
        nested = root.findall(".//ds:Signature", _NS)
        if nested:
            raise UnsupportedXmlFeature("the document carries more than one ds:Signature")
        return root
    found = root.findall(".//ds:Signature", _NS)
    if not found:
        raise SignatureInvalid("the document carries no ds:Signature")
    if len(found) > 1:
        raise UnsupportedXmlFeature(
            f"the document carries {len(found)} ds:Signature elements; one is verified at a time"
        )
    return found[0]


def _algorithm(element: etree._Element, path: str) -> str:
    node = element.find(path, _NS)
    if node is None:
        raise SignatureInvalid(f"ds:Signature lacks {path.rsplit('/', 1)[-1]}")
    return node.get("Algorithm", "")


def _certificates(key_info: etree._Element) -> list[x509.Certificate]:
    return [
        _certificate("".join((node.text or "").split()))
        for node in key_info.iterfind("ds:X509Data/ds:X509Certificate", _NS)
    ]


@lru_cache(maxsize=1024)
def _certificate(b64: str) -> x509.Certificate:
    """Peers send the same few certificates over and over: parse each once."""
    try:
        return x509.load_der_x509_certificate(base64.b64decode(b64, validate=True))
    except ValueError as exc:
        raise SignatureInvalid(f"an X509Certificate in KeyInfo is malformed: {exc}") from None


def _embedded_key(key_info: etree._Element) -> etree._Element | None:
    node = key_info.find("ds:KeyValue", _NS)
    if node is None:
        node = key_info.find("dsig11:DEREncodedKeyValue", _NS)
    return node


def _leaf_first(
    certs: Sequence[x509.Certificate],
) -> tuple[x509.Certificate, tuple[x509.Certificate, ...]]:
    """X509Data carries certificates in no required order: the leaf issues none of the others."""
    leaves = [c for c in certs if not any(o is not c and o.issuer == c.subject for o in certs)]
    leaf = leaves[0] if leaves else certs[0]
    return leaf, tuple(c for c in certs if c is not leaf)
