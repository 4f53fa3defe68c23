"""POST /v1/signatures/xml and /verify through the real app (auth, problems, PKI on disk).

The app is ``create_app(settings)`` with a SQLite store and a development PKI in tmp_path;
clients authenticate with real API keys. Nothing of ours is mocked.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from litestar import Litestar
from litestar.testing import TestClient
from lxml import etree
from prometheus_client import REGISTRY

from gateway.app import create_app
from gateway.security import generate_api_key, hash_api_key
from gateway.settings import ClientSettings, Settings
from signing.keys import DevPki, KeyMaterial, ensure_dev_pki, issue_certificate, issue_crl
from signing.sign import XmlSigner

DOC = (
    '<?xml version="1.0" encoding="UTF-8"?>'
    '<KetQua xmlns="urn:dvc:result"><MaHoSo>000.00.19.H47-260105-0001</MaHoSo>'
    '<NoiDung Id="nd">Cấp giấy phép</NoiDung></KetQua>'
)
PROBLEM = "urn:dvc-gateway:problem:"


class Keys:
    def __init__(self) -> None:
        self.signer = generate_api_key()
        self.other = generate_api_key()


@pytest.fixture
def keys() -> Keys:
    return Keys()


@pytest.fixture
def pki(tmp_path: Path) -> DevPki:
    return ensure_dev_pki(tmp_path / "pki", ["postal"])


@pytest.fixture
def revoked(pki: DevPki) -> KeyMaterial:
    return issue_certificate(pki.ca.load(), "revoked officer")


@pytest.fixture
def settings(tmp_path: Path, keys: Keys, pki: DevPki, revoked: KeyMaterial) -> Settings:
    crl = tmp_path / "revoked.crl.pem"
    crl.write_bytes(
        issue_crl(pki.ca.load(), [revoked.certificate.serial_number]).public_bytes(
            serialization.Encoding.PEM
        )
    )
    return Settings(
        store={"backend": "sqlite", "sqlite_path": tmp_path / "gateway.db"},
        security={"clients_file": tmp_path / "clients.toml"},
        clients=[
            ClientSettings(
                id="dossiers", key_sha256=hash_api_key(keys.signer), scopes=["signing:use"]
            ),
            ClientSettings(id="other", key_sha256=hash_api_key(keys.other), scopes=["ops:read"]),
        ],
        signing={
            "key_path": pki.gateway.key_path,
            "cert_path": pki.gateway.cert_path,
            "trust_paths": [pki.ca.cert_path],
            "crl_paths": [crl, pki.crl_path],
            "sha1_allowed_peers": ["field-system"],
            "peers": {"postal": {"pinned_certificates": [pki.simulator("postal").cert_path]}},
        },
        jobs={"workers": 0, "scheduler_enabled": False},
    )


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient[Litestar]]:
    with TestClient(create_app(settings)) as c:
        yield c


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _sign(client: TestClient[Litestar], keys: Keys, **body: Any) -> dict[str, Any]:
    response = client.post(
        "/v1/signatures/xml", json={"document": DOC, **body}, headers=_auth(keys.signer)
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


def _verify(client: TestClient[Litestar], keys: Keys, **body: Any) -> Any:
    return client.post("/v1/signatures/xml/verify", json=body, headers=_auth(keys.signer))


def test_sign_then_verify(client: TestClient[Litestar], keys: Keys) -> None:
    signed = _sign(client, keys)
    assert signed["mode"] == "enveloped"
    assert signed["algorithms"] == {
        "signature": "rsa-sha256",
        "digest": "sha256",
        "canonicalization": "exc-c14n",
    }
    assert "dvc-gateway signing" in signed["signer"]["subject"]
    document = signed["signed_document"]
    assert hashlib.sha256(document.encode()).hexdigest() == signed["sha256"]

    response = _verify(client, keys, document=document, include_content=True)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["valid"] is True
    assert body["chain_status"] == "trusted"
    assert body["signer"]["serial"] == signed["signer"]["serial"]
    assert "development CA" in body["signer"]["issuer"]
    assert [c["subject"] for c in body["chain"]][-1] == body["signer"]["issuer"]
    assert body["algorithms"] == {
        "signature": "rsa-sha256",
        "canonicalization": "exc-c14n",
        "digests": ["sha256"],
    }
    content = body["signed_content"]
    assert "Cấp giấy phép" in content and "Signature" not in content
    expected = etree.tostring(etree.fromstring(DOC.encode()), method="c14n", exclusive=True)
    assert body["signed_content_sha256"] == hashlib.sha256(expected).hexdigest()


def test_routes_need_the_signing_scope(client: TestClient[Litestar], keys: Keys) -> None:
    for path in ("/v1/signatures/xml", "/v1/signatures/xml/verify"):
        anonymous = client.post(path, json={"document": DOC})
        assert anonymous.status_code == 401
        assert anonymous.json()["type"] == PROBLEM + "unauthenticated"
        wrong = client.post(path, json={"document": DOC}, headers=_auth(keys.other))
        assert wrong.status_code == 403
        assert wrong.json()["type"] == PROBLEM + "missing-scope"


def test_detached_and_base64(client: TestClient[Litestar], keys: Keys) -> None:
    raw = DOC.encode()
    signed = _sign(
        client, keys, mode="detached", document=None, document_base64=base64.b64encode(raw).decode()
    )
    assert signed["signature"].lstrip().startswith("<?xml")
    assert signed["reference_uri"] == "urn:dvc-gateway:detached-content"
    ok = _verify(client, keys, document=signed["signature"], detached_content=DOC)
    assert ok.status_code == 200, ok.text
    changed = _verify(
        client, keys, document=signed["signature"], detached_content=DOC.replace("0001", "0002")
    )
    assert changed.status_code == 422
    assert changed.json()["type"] == PROBLEM + "signature-invalid"


def test_sign_only_one_element(client: TestClient[Litestar], keys: Keys) -> None:
    signed = _sign(client, keys, reference_id="nd")
    body = _verify(client, keys, document=signed["signed_document"], include_content=True).json()
    assert body["references"][0]["uri"] == "#nd"
    assert "MaHoSo" not in body["signed_content"]


@pytest.mark.parametrize(
    ("tamper", "status", "slug"),
    [
        (lambda d: d.replace("Cấp giấy phép", "Thu hồi giấy phép"), 422, "signature-invalid"),
        (
            lambda d: d.replace(
                'http://www.w3.org/2001/10/xml-exc-c14n#"/></ds:Transforms>',
                'http://www.w3.org/TR/1999/REC-xslt-19991116"/></ds:Transforms>',
            ),
            422,
            "unsupported-xml-feature",
        ),
        (lambda d: '<!DOCTYPE x [<!ENTITY e "x">]>' + d.split("?>", 1)[1], 400, "xml-rejected"),
        (
            lambda d: d.replace("</KetQua>", "<a>" * 200 + "</a>" * 200 + "</KetQua>"),
            400,
            "xml-rejected",
        ),
    ],
)
def test_refusals_are_problems(
    client: TestClient[Litestar], keys: Keys, tamper: Any, status: int, slug: str
) -> None:
    signed = _sign(client, keys)["signed_document"]
    bad = tamper(signed)
    assert bad != signed
    response = _verify(client, keys, document=bad)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["type"] == PROBLEM + slug
    assert problem["detail"]
    if slug == "unsupported-xml-feature":
        assert problem["features"] == ["XSLT transform"]


def test_distinct_problem_types_for_trust_failures(
    client: TestClient[Litestar], keys: Keys, pki: DevPki, revoked: KeyMaterial
) -> None:
    import datetime as dt

    ca = pki.ca.load()
    now = dt.datetime.now(dt.UTC)
    signers = {
        "signature-untrusted": issue_certificate(
            issue_certificate(None, "rogue CA", ca=True), "rogue"
        ),
        "certificate-expired": issue_certificate(
            ca,
            "lapsed",
            not_before=now - dt.timedelta(hours=2),
            not_after=now - dt.timedelta(hours=1),
        ),
        "certificate-revoked": revoked,
        "key-usage-invalid": issue_certificate(ca, "no signing usage", key_usage="omit"),
    }
    seen = set()
    for slug, material in signers.items():
        document = XmlSigner(material).sign(DOC.encode()).xml.decode()
        response = _verify(client, keys, document=document)
        assert response.status_code == 422, response.text
        assert response.json()["type"] == PROBLEM + slug, response.json()
        seen.add(response.json()["type"])
    assert len(seen) == 4


def test_peer_policy_pins_and_sha1(client: TestClient[Litestar], keys: Keys, pki: DevPki) -> None:
    postal = pki.simulator("postal").load()
    document = XmlSigner(postal).sign(DOC.encode()).xml.decode()
    pinned = _verify(client, keys, document=document, peer="postal")
    assert pinned.status_code == 200, pinned.text
    assert pinned.json()["chain_status"] == "pinned"
    gateway_signed = _sign(client, keys)["signed_document"]
    refused = _verify(client, keys, document=gateway_signed, peer="postal")
    assert refused.json()["type"] == PROBLEM + "signature-untrusted"
    unknown = _verify(client, keys, document=document, peer="nobody-knows")
    assert unknown.status_code == 422
    assert unknown.json()["errors"][0]["pointer"] == "/peer"


def test_request_validation(client: TestClient[Litestar], keys: Keys) -> None:
    both = client.post(
        "/v1/signatures/xml",
        json={"document": DOC, "document_base64": "eA=="},
        headers=_auth(keys.signer),
    )
    assert both.status_code in (400, 422)
    latin = client.post(
        "/v1/signatures/xml",
        json={"document": '<?xml version="1.0" encoding="ISO-8859-1"?><a/>'},
        headers=_auth(keys.signer),
    )
    assert latin.status_code == 422
    assert latin.json()["errors"][0]["pointer"] == "/document"
    bad_b64 = client.post(
        "/v1/signatures/xml", json={"document_base64": "***"}, headers=_auth(keys.signer)
    )
    assert bad_b64.status_code == 422


def test_certificate_expiry_metric_after_start(client: TestClient[Litestar], pki: DevPki) -> None:
    cert = pki.gateway.load().certificate
    value = REGISTRY.get_sample_value(
        "gateway_certificate_expiry_timestamp_seconds",
        {
            "role": "signing",
            "subject": cert.subject.rfc4514_string(),
            "serial": format(cert.serial_number, "X"),
        },
    )
    assert value == cert.not_valid_after_utc.timestamp()


def test_signing_without_a_key_is_a_clear_configuration_problem(tmp_path: Path, keys: Keys) -> None:
    settings = Settings(
        store={"backend": "sqlite", "sqlite_path": tmp_path / "gateway.db"},
        security={"clients_file": tmp_path / "clients.toml"},
        clients=[
            ClientSettings(
                id="dossiers", key_sha256=hash_api_key(keys.signer), scopes=["signing:use"]
            )
        ],
        signing={
            "key_path": tmp_path / "none.key.pem",
            "cert_path": tmp_path / "none.cert.pem",
            "trust_paths": [],
        },
        jobs={"workers": 0, "scheduler_enabled": False},
    )
    with TestClient(create_app(settings)) as c:
        response = c.post("/v1/signatures/xml", json={"document": DOC}, headers=_auth(keys.signer))
    assert response.status_code == 500
    problem = response.json()
    assert problem["type"] == PROBLEM + "configuration-error"
    assert "gateway keys dev-pki" in problem["detail"]
