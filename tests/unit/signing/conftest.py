"""A real development PKI per test session (keys under pytest's tmp dir, never in the repo)."""

from __future__ import annotations

import pytest

from signing.keys import DevPki, KeyMaterial, ensure_dev_pki, load_certificates
from signing.sign import XmlSigner
from signing.trust import TrustStore
from signing.verify import VerificationPolicy, XmlVerifier


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> DevPki:
    return ensure_dev_pki(tmp_path_factory.mktemp("pki"), ["population_db", "payments"])


@pytest.fixture(scope="session")
def ca(pki: DevPki) -> KeyMaterial:
    return pki.ca.load()


@pytest.fixture(scope="session")
def gateway_key(pki: DevPki) -> KeyMaterial:
    return pki.gateway.load()


@pytest.fixture
def trust(pki: DevPki) -> TrustStore:
    return TrustStore(load_certificates(pki.ca.cert_path))


@pytest.fixture
def signer(gateway_key: KeyMaterial) -> XmlSigner:
    return XmlSigner(gateway_key)


@pytest.fixture
def verifier(trust: TrustStore) -> XmlVerifier:
    return XmlVerifier(VerificationPolicy(trust=trust))


@pytest.fixture
def document() -> bytes:
    return (
        b'<?xml version="1.0" encoding="UTF-8"?>\n'
        b'<edXML xmlns="http://www.mic.gov.vn/TBT/QCVN_102_2016">'
        b"<Header><From>000.00.00.H47</From><To>000.00.00.G22</To></Header>"
        + '<Body Id="body"><Content>Quyết định số 12</Content>'.encode()
        + b"<Amount>150000</Amount></Body>"
        + b"</edXML>"
    )
