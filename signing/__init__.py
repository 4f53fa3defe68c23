"""XML signatures, hardened XML parsing, keys, certificates, trust and peer checksums.

Depends only on ``gateway.errors`` and ``gateway.settings`` of the core
(tests/unit/signing/test_public_api.py holds it to that). Modules:

* ``signing.xml``: the one hardened parser (``parse_xml``, ``hardened_parser``, ``zeep_settings``)
* ``signing.keys``: PEM/PKCS#12 loading and the development PKI (``ensure_dev_pki``)
* ``signing.sign`` / ``signing.verify``: XML-DSig signing and strict verification
* ``signing.trust``: trust store, chain validation, CRLs, certificate expiry metric
* ``signing.checksums``: the peers' SHA-256 / HMAC-SHA256 checksums over pipe-joined fields
* ``signing.service``: the process's configured signing service, off the event loop

See docs/signing.md.
"""

from __future__ import annotations

import logging

from signing.checksums import (
    PAYMENT_INIT,
    PAYMENT_NOTIFICATION,
    PAYMENT_QUERY,
    ChecksumScheme,
    hmac_sha256_scheme,
)
from signing.keys import (
    DevPki,
    IssuedFiles,
    KeyMaterial,
    ensure_dev_pki,
    load_certificates,
    load_signing_material,
)
from signing.service import SigningService
from signing.sign import DETACHED_REFERENCE_URI, SignedXml, XmlSigner
from signing.trust import CertificateInfo, TrustStore, observe_certificates
from signing.verify import VerificationPolicy, VerifiedDocument, XmlVerifier
from signing.xml import hardened_parser, parse_xml, zeep_settings

# signxml logs every canonicalised string at DEBUG: whole signed documents, with the citizens'
# ID numbers and names in them. Personal data never reaches a log, at any level, so its logger
# stops at INFO whatever the root logger's level is. Here because a package's __init__ runs
# before any of its modules: whoever imports any part of signing gets the cap.
logging.getLogger("signxml").setLevel(max(logging.INFO, logging.getLogger("signxml").level))

__all__ = [
    "DETACHED_REFERENCE_URI",
    "PAYMENT_INIT",
    "PAYMENT_NOTIFICATION",
    "PAYMENT_QUERY",
    "CertificateInfo",
    "ChecksumScheme",
    "DevPki",
    "IssuedFiles",
    "KeyMaterial",
    "SignedXml",
    "SigningService",
    "TrustStore",
    "VerificationPolicy",
    "VerifiedDocument",
    "XmlSigner",
    "XmlVerifier",
    "ensure_dev_pki",
    "hardened_parser",
    "hmac_sha256_scheme",
    "load_certificates",
    "load_signing_material",
    "observe_certificates",
    "parse_xml",
    "zeep_settings",
]
