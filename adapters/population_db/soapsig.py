"""XML-DSig over the SOAP Body, without WS-Security.

The signature is an ordinary enveloped ``ds:Signature`` placed in the SOAP Header whose one
Reference points at the Body by its ``Id``. The gateway signs its requests and verifies the
answers through the process's signing service (:class:`ServiceSigning`); the simulator does the
reverse with its own key, synchronously (:class:`EnvelopeSigning`, :class:`EnvelopeVerification`).

Verification hands back **only the signed Body** (re-parsed from the exact bytes that were
digested), and :func:`envelope_around` wraps it in a fresh envelope for zeep: whatever else the
answer carried, signed or not, never reaches the parser of the data (signature wrapping).
"""

from __future__ import annotations

from lxml import etree

from gateway.errors import SignatureInvalid
from signing.service import SigningService
from signing.sign import XmlSigner
from signing.verify import VerifiedDocument, XmlVerifier

from .models import SOAP_ENV_NS

__all__ = [
    "BODY_ID",
    "EnvelopeSigning",
    "EnvelopeVerification",
    "ServiceSigning",
    "envelope_around",
    "prepare_for_signing",
    "signed_body",
]

#: the Id the Reference names (unqualified, as SOAP 1.1 allows any attribute on Body)
BODY_ID = "soap-body"
_DS = "http://www.w3.org/2000/09/xmldsig#"
_BODY = f"{{{SOAP_ENV_NS}}}Body"
_HEADER = f"{{{SOAP_ENV_NS}}}Header"


def prepare_for_signing(envelope: etree._Element) -> bytes:
    """The envelope with the Body's ``Id`` and a signature placeholder in the Header (signxml
    puts the signature where the placeholder is), serialised; ``envelope`` changes in place."""
    body = envelope.find(_BODY)
    if body is None:
        raise ValueError("the envelope has no Body")
    body.set("Id", BODY_ID)
    header = envelope.find(_HEADER)
    if header is None:
        header = etree.Element(_HEADER)
        envelope.insert(0, header)
    etree.SubElement(header, f"{{{_DS}}}Signature", Id="placeholder", nsmap={"ds": _DS})
    return etree.tostring(envelope)


def signed_body(document: VerifiedDocument) -> etree._Element:
    """The SOAP Body a verified document signed; ``SignatureInvalid`` if it signed another."""
    body = document.signed_xml
    if body is None or body.tag != _BODY:
        raise SignatureInvalid("the signature does not cover the SOAP Body")
    return body


class EnvelopeSigning:
    """Signs envelopes with one key, in the caller's thread (the simulator, tests, the bench)."""

    def __init__(self, signer: XmlSigner) -> None:
        self.signer = signer

    def sign(self, envelope: etree._Element) -> bytes:
        return self.signer.sign(prepare_for_signing(envelope), reference_id=BODY_ID).xml


class EnvelopeVerification:
    """Verifies signed envelopes under one policy, in the caller's thread."""

    def __init__(self, verifier: XmlVerifier) -> None:
        self.verifier = verifier

    def verify(self, data: bytes) -> etree._Element:
        """The signed Body of ``data``; raises a ``SignatureInvalid`` class otherwise."""
        return signed_body(self.verifier.verify(data))


class ServiceSigning:
    """The gateway's side: the process's ``SigningService`` (its key, its trust store and the
    peer's ``[signing.peers.<peer>]`` policy), so the RSA and canonicalisation work runs on the
    service's thread pool, not on the event loop."""

    def __init__(
        self, service: SigningService, *, peer: str | None, verifier: XmlVerifier | None = None
    ) -> None:
        self.service = service
        self.peer = peer
        #: a verifier of the adapter's own (the sandbox's pin); else the peer's policy
        self.verifier = verifier

    async def sign(self, envelope: etree._Element) -> bytes:
        signed = await self.service.sign(prepare_for_signing(envelope), reference_id=BODY_ID)
        return signed.xml

    async def verify(self, data: bytes) -> etree._Element:
        if self.verifier is not None:
            return signed_body(await self.service.verify_with(self.verifier, data))
        return signed_body(await self.service.verify(data, peer=self.peer))


def envelope_around(body: etree._Element) -> bytes:
    """A fresh SOAP envelope holding ``body`` alone."""
    envelope = etree.Element(f"{{{SOAP_ENV_NS}}}Envelope", nsmap={"soap": SOAP_ENV_NS})
    envelope.append(body)
    return etree.tostring(envelope, xml_declaration=True, encoding="utf-8")
