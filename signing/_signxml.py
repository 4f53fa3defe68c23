# signxml leaves these private helpers unannotated; this module is the one typed seam over them
# mypy: disable-error-code="no-untyped-call"
"""signxml's signer and verifier on trees we parsed, without their defensive re-parsing.

signxml serialises and re-parses the whole document several times per operation, because it
must assume the caller's tree is shared or untrusted. Ours are private trees that
``parse_xml`` produced under the hardened policy, so:

* ``TreeVerifier.get_root`` takes that tree as it is;
* ``TreeSigner.get_root`` and ``TreeVerifier._verify_reference`` copy it with lxml's C-level
  deep copy (the signer needs the document that receives the signature apart from the content
  it digests; the enveloped-signature transform edits the verifier's copy);
* ``_apply_transforms`` skips signxml's serialise-and-re-parse of a payload that is already
  the root of that private copy (a whole-document reference);
* ``_verify_reference`` returns the canonical bytes only; ``signing.verify`` parses them
  lazily when a caller asks for the signed XML;
* ``TreeVerifier._c14n`` drops libxml2 2.14's spurious ``xmlns=""`` from SignedInfo only.

The digest, transform and canonicalisation logic is signxml's own (``_resolve_reference``,
``_apply_transforms``, ``_get_digest`` are called unchanged). This overrides private methods
of signxml 5.2, hence the version pin in pyproject.toml; the interop-vector and xmlsec1
cross-implementation tests guard it.
"""

from __future__ import annotations

import copy
import hmac
from base64 import b64decode
from typing import Any

from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from lxml import etree
from signxml.algorithms import DigestAlgorithm
from signxml.exceptions import InvalidDigest
from signxml.signer import XMLSigner
from signxml.verifier import VerifyResult, XMLVerifier

__all__ = ["TreeSigner", "TreeVerifier"]


_SIGNED_INFO = "{http://www.w3.org/2000/09/xmldsig#}SignedInfo"


class TreeVerifier(XMLVerifier):
    #: set while transforming a payload that is already the root of our private copy
    _passthrough = False

    def _tostring(self, xml_node: Any, **kwargs: Any) -> Any:
        if self._passthrough:
            return xml_node
        return super()._tostring(xml_node, **kwargs)

    def _fromstring(self, xml_string: Any, **kwargs: Any) -> Any:
        if self._passthrough and isinstance(xml_string, etree._Element):
            return xml_string
        return super()._fromstring(xml_string, **kwargs)

    def _apply_transforms(self, payload: Any, *, transforms_node: Any, signature: Any) -> Any:
        # signxml serialises and re-parses the payload before canonicalising it, to cut it
        # loose from its ancestors' namespaces. The root of our deep copy has no ancestors and
        # no one else holds it, so for it (a whole-document reference) that round trip changes
        # nothing and is skipped. A referenced subtree still takes signxml's path unchanged.
        root = isinstance(payload, etree._Element) and payload.getparent() is None
        self._passthrough = root
        try:
            return super()._apply_transforms(
                payload, transforms_node=transforms_node, signature=signature
            )
        finally:
            self._passthrough = False

    def _c14n(self, nodes: Any, algorithm: Any, inclusive_ns_prefixes: Any = None) -> bytes:
        out: bytes = super()._c14n(nodes, algorithm, inclusive_ns_prefixes=inclusive_ns_prefixes)
        if isinstance(nodes, etree._Element) and nodes.tag == _SIGNED_INFO:
            # libxml2 2.14 renders xmlns="" on grandchildren of a canonicalised subtree whose
            # default namespace is declared above it (ds:Signature xmlns="...xmldsig#", as
            # .NET and most field systems write it). Every element of a schema-valid SignedInfo
            # is namespace-qualified (ds, or prefixed ec/dsig11), so an empty default namespace
            # declaration there is always spurious; in signed content it may be meaningful,
            # which is why this is not applied to references.
            out = out.replace(b' xmlns=""', b"")
        return out

    def get_root(self, data: Any) -> Any:
        if isinstance(data, etree._Element):
            return data
        return super().get_root(data)

    def _verify_reference(
        self,
        reference: Any,
        index: int,
        root: Any,
        uri_resolver: Any,
        c14n_algorithm: Any,
        signature: Any,
        signature_key_used: Any,
    ) -> VerifyResult:
        copied_root = copy.deepcopy(root)
        copied_signature_ref = self._get_signature(copied_root)
        transforms = self._find(reference, "Transforms", require=False)
        digest_alg = DigestAlgorithm(self._find(reference, "DigestMethod").get("Algorithm"))
        digest_value = self._find(reference, "DigestValue")
        self.check_digest_alg_expected(digest_alg)
        payload = self._resolve_reference(copied_root, reference, uri_resolver=uri_resolver)
        payload_c14n = self._apply_transforms(
            payload, transforms_node=transforms, signature=copied_signature_ref
        )
        if isinstance(payload_c14n, str):
            payload_c14n = payload_c14n.encode()
        expected = b64decode(digest_value.text or "")
        if not hmac.compare_digest(expected, self._get_digest(payload_c14n, digest_alg)):
            raise InvalidDigest(f"Digest mismatch for reference {index} ({reference.get('URI')})")
        if isinstance(signature_key_used, bytes):
            key = signature_key_used
        else:
            key = signature_key_used.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
        return VerifyResult(payload_c14n, None, signature, signature_key=key)


class TreeSigner(XMLSigner):
    def get_root(self, data: Any) -> Any:
        if isinstance(data, etree._Element):
            return copy.deepcopy(data)
        return super().get_root(data)
