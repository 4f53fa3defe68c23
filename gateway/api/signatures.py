"""``/v1/signatures/xml``: sign with the gateway's key, verify anyone's XML signature.

Both are computations, not commands: signing with RSA PKCS#1 v1.5 or verifying gives the same
answer every time, so they opt out of Idempotency-Key replay storage (a signed 10 MB document
has no business in the store). The work runs off the event loop (``signing.service``).
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any, Literal

from litestar import post
from litestar.status_codes import HTTP_200_OK
from pydantic import BaseModel, ConfigDict, Field, model_validator

from gateway.api.openapi import AUTHENTICATED, WITH_BODY, problem_responses, secured
from gateway.errors import (
    CertificateExpired,
    CertificateRevoked,
    KeyUsageInvalid,
    SignatureInvalid,
    SignatureUntrusted,
    UnsupportedXmlFeature,
    ValidationFailed,
    XmlRejected,
)
from gateway.runtime import Runtime

__all__ = ["SignRequest", "VerifyRequest", "routes", "sign_xml", "verify_xml"]

_ERRORS = (
    "Errors are RFC 9457 problems: 400 `xml-rejected` (the hardened parser refused the "
    "document: DOCTYPE, too large, too deep, not well-formed), 422 `validation-failed`"
)
_VERIFY_ERRORS = (
    _ERRORS + ", and 422 with a type saying exactly why the signature is refused: "
    "`signature-invalid` (content modified, signature value wrong, Id duplicated), "
    "`signature-untrusted` (signer outside the trust store or not the peer's pinned "
    "certificate), `certificate-expired`, `certificate-revoked` (local CRL), "
    "`key-usage-invalid`, `unsupported-xml-feature` (XSLT/XPath/XPointer, remote references, "
    "weak or disabled algorithms, truncated HMAC; the `features` member lists them)."
)

_DECLARED_ENCODING = re.compile(
    r"""\A\s*<\?xml[^>]*?encoding\s*=\s*["']([A-Za-z0-9._-]+)["']""", re.IGNORECASE
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _document_bytes(text: str | None, b64: str | None, name: str) -> bytes | None:
    if text is not None:
        declared = _DECLARED_ENCODING.match(text)
        if declared and declared.group(1).lower().replace("_", "-") not in ("utf-8", "utf8"):
            raise ValidationFailed.field(
                f"/{name}",
                f"the text declares encoding {declared.group(1)}; send the original bytes "
                f"as {name}_base64 instead",
            )
        return text.encode("utf-8")
    if b64 is not None:
        try:
            return base64.b64decode(b64, validate=True)
        except (binascii.Error, ValueError):
            raise ValidationFailed.field(f"/{name}_base64", "not valid base64") from None
    return None


class SignRequest(_Strict):
    """The document to sign, as XML text or as base64 of its bytes."""

    document: str | None = Field(None, description="the XML document (UTF-8 text)")
    document_base64: str | None = Field(None, description="or the document's bytes, base64")
    mode: Literal["enveloped", "detached"] = Field(
        "enveloped",
        description="enveloped: the signature goes inside the document; detached: the "
        "ds:Signature is returned alone and references the content as "
        "urn:dvc-gateway:detached-content",
    )
    reference_id: str | None = Field(
        None,
        max_length=200,
        description="enveloped only: sign just the element with this Id attribute",
    )

    @model_validator(mode="after")
    def _one_document(self) -> SignRequest:
        if (self.document is None) == (self.document_base64 is None):
            raise ValueError("give exactly one of document and document_base64")
        return self

    def data(self) -> bytes:
        data = _document_bytes(self.document, self.document_base64, "document")
        assert data is not None
        return data


class VerifyRequest(_Strict):
    """A signed document (or a detached ds:Signature with its content) and whose it is."""

    document: str | None = Field(None, description="the signed XML document (UTF-8 text)")
    document_base64: str | None = Field(None, description="or its bytes, base64")
    detached_content: str | None = Field(
        None, description="for a detached signature: the content it signs (XML text)"
    )
    detached_content_base64: str | None = Field(None, description="or its bytes, base64")
    peer: str | None = Field(
        None,
        max_length=64,
        description="the configured peer (signing.peers / sha1_allowed_peers) whose policy "
        "applies: its pinned certificates, HMAC key, SHA-1 allowance",
    )
    include_content: bool = Field(
        False, description="also return the signed content (canonical form) as text"
    )

    @model_validator(mode="after")
    def _one_document(self) -> VerifyRequest:
        if (self.document is None) == (self.document_base64 is None):
            raise ValueError("give exactly one of document and document_base64")
        if self.detached_content is not None and self.detached_content_base64 is not None:
            raise ValueError("give at most one of detached_content and detached_content_base64")
        return self

    def data(self) -> bytes:
        data = _document_bytes(self.document, self.document_base64, "document")
        assert data is not None
        return data

    def content(self) -> bytes | None:
        return _document_bytes(
            self.detached_content, self.detached_content_base64, "detached_content"
        )


@post(
    "/v1/signatures/xml",
    tags=["signatures"],
    summary="Sign an XML document with the gateway's key",
    description=(
        "RSA-SHA256 (ECDSA-SHA256 for an EC key), SHA-256 digests, exclusive C14N, the "
        "gateway's certificate and intermediates in KeyInfo. Returns `signed_document` "
        "(enveloped) or `signature` (detached), the algorithms and the signer. " + _ERRORS + "."
    ),
    status_code=HTTP_200_OK,
    responses=problem_responses(AUTHENTICATED, WITH_BODY, XmlRejected),
    security=secured("signing:use"),
    opt={"scopes": ["signing:use"], "no_idempotency": True},
)
async def sign_xml(runtime: Runtime, data: SignRequest) -> dict[str, Any]:
    signed = await runtime.signing.sign(data.data(), mode=data.mode, reference_id=data.reference_id)
    key = "signed_document" if signed.mode == "enveloped" else "signature"
    return {
        key: signed.xml.decode("utf-8"),
        "mode": signed.mode,
        "reference_uri": signed.reference_uri,
        "algorithms": {
            "signature": signed.signature_method,
            "digest": signed.digest_method,
            "canonicalization": signed.canonicalization,
        },
        "signer": signed.signer.as_dict(),
        "sha256": signed.sha256,
    }


@post(
    "/v1/signatures/xml/verify",
    tags=["signatures"],
    summary="Verify an XML signature strictly",
    description=(
        "200 with the signer's subject, serial and issuer, the chain, the algorithms, the "
        "`chain_status` (`trusted`, `pinned`, `shared-key`) and the SHA-256 of the signed "
        "content: only that content was verified, never the rest of the document. " + _VERIFY_ERRORS
    ),
    status_code=HTTP_200_OK,
    responses=problem_responses(
        AUTHENTICATED,
        WITH_BODY,
        XmlRejected,
        SignatureInvalid,
        SignatureUntrusted,
        CertificateExpired,
        CertificateRevoked,
        KeyUsageInvalid,
        UnsupportedXmlFeature,
    ),
    security=secured("signing:use"),
    opt={"scopes": ["signing:use"], "no_idempotency": True},
)
async def verify_xml(runtime: Runtime, data: VerifyRequest) -> dict[str, Any]:
    result = await runtime.signing.verify(
        data.data(), peer=data.peer, detached_content=data.content()
    )
    return result.as_dict(include_content=data.include_content)


routes = [sign_xml, verify_xml]
