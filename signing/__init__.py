"""XML signatures, hardened XML parsing, keys, certificates, trust and peer checksums.

Depends only on ``gateway.errors`` and ``gateway.settings``. Submodules:

* ``signing.xml``: the one hardened parser (``parse_xml``, ``hardened_parser``, ``zeep_settings``)
* ``signing.keys``: PEM/PKCS#12 loading and the development PKI (``ensure_dev_pki``)
"""

from __future__ import annotations

from signing.keys import DevPki, IssuedFiles, KeyMaterial, ensure_dev_pki, load_signing_material
from signing.xml import hardened_parser, parse_xml, zeep_settings

__all__ = [
    "DevPki",
    "IssuedFiles",
    "KeyMaterial",
    "ensure_dev_pki",
    "hardened_parser",
    "load_signing_material",
    "parse_xml",
    "zeep_settings",
]
