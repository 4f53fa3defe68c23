"""One boundary where signxml, lxml and cryptography failures become gateway problems.

Everything raised inside ``translated()`` leaves as a :mod:`gateway.errors` class with a detail
that says what was wrong, never a stack trace and never key material. Unexpected exceptions
(a malformed base64 value deep inside signxml, a key of the wrong type) are still refusals,
``SignatureInvalid``, logged with their type so they can be classified later.
"""

from __future__ import annotations

import binascii
from collections.abc import Iterator
from contextlib import contextmanager

import cryptography.exceptions
import structlog
from lxml import etree
from signxml import exceptions as sx

from gateway.errors import (
    CertificateExpired,
    GatewayError,
    SignatureInvalid,
    SignatureUntrusted,
    UnsupportedXmlFeature,
    XmlRejected,
)

__all__ = ["translate", "translated"]

log = structlog.get_logger(__name__)


@contextmanager
def translated() -> Iterator[None]:
    try:
        yield
    except GatewayError:
        raise
    except Exception as exc:  # every failure of a signature is a refusal, never a crash
        raise translate(exc) from None


def translate(exc: BaseException) -> GatewayError:
    message = _text(exc)
    if isinstance(exc, sx.InvalidDigest):
        return SignatureInvalid(f"the signed content was modified: {message}")
    if isinstance(exc, sx.InvalidCertificate):
        if "valid at validation time" in message or "expired" in message:
            return CertificateExpired(message)
        return SignatureUntrusted(message)
    if isinstance(exc, sx.InvalidSignature):
        return SignatureInvalid(f"the signature value does not verify: {message}")
    if isinstance(exc, sx.InvalidInput):
        return _input_error(message)
    if isinstance(exc, etree.DocumentInvalid):
        return SignatureInvalid(f"ds:Signature does not follow the XML-DSig schema: {message}")
    if isinstance(exc, etree.XMLSyntaxError):
        return XmlRejected(f"not well-formed XML: {message}")
    if isinstance(exc, cryptography.exceptions.InvalidSignature):
        return SignatureInvalid("the signature value does not verify")
    if isinstance(exc, binascii.Error):
        return SignatureInvalid(f"a base64 value of the signature is malformed: {message}")
    if isinstance(exc, cryptography.exceptions.UnsupportedAlgorithm):
        return UnsupportedXmlFeature(f"unsupported key or algorithm: {message}")
    log.warning("signing.unclassified_failure", error_type=type(exc).__name__)
    return SignatureInvalid(
        f"the signature could not be processed ({type(exc).__name__}: {message})"
    )


def _input_error(message: str) -> GatewayError:
    if message.startswith("Ambiguous reference URI"):
        return SignatureInvalid(
            f"{message}: an Id occurs more than once (a signature-wrapping pattern)"
        )
    if "DTD" in message or "Entities" in message:
        return XmlRejected("document type declarations (DOCTYPE, DTD, entities) are refused")
    if message.startswith("Unrecognized") or "forbidden by configuration" in message:
        return UnsupportedXmlFeature(message)
    if "dereferencing is not configured" in message or "Unable to resolve reference" in message:
        return UnsupportedXmlFeature(f"unresolvable reference URI: {message}")
    return SignatureInvalid(message)


def _text(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= 400 else text[:397] + "..."
