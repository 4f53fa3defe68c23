"""The population database's wire: WSDL/XSD, zeep's messages, the simulator's rules.

zeep (the gateway's side) and the simulator's lxml code (the registry's side) are held to the
same schema: what zeep sends validates against the shipped XSD and reads back identically on
the simulator's side; what the simulator answers validates too. The simulator's HTTP rules
(OAuth2, bearer tokens, signatures, schema, result codes) are exercised in process through
``httpx.ASGITransport`` (the over-the-wire behaviour is in tests/integration).
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import lru_cache

import httpx
import pytest
import zeep
from lxml import etree

from adapters.population_db.client import BINDING
from adapters.population_db.models import (
    NS,
    OPERATION,
    SOAP_ENV_NS,
    WSDL_PATH,
    XSD_PATH,
    KetQuaTraCuu,
    MaLoi,
    YeuCauTraCuu,
    request_from_xml,
    request_to_xml,
    response_from_xml,
    response_to_xml,
)
from adapters.population_db.population import (
    LICENSED_PROCEDURES,
    PERMITTED_OFFICERS,
    population,
)
from adapters.population_db.simulator import PopulationSimulator, _envelope, operation_of
from adapters.population_db.soapsig import EnvelopeSigning, EnvelopeVerification
from signing.keys import DevPki, ensure_dev_pki
from signing.sign import XmlSigner
from signing.trust import TrustStore
from signing.verify import VerificationPolicy, XmlVerifier
from signing.xml import zeep_settings

SEED = 20260101
SCHEMA = etree.XMLSchema(etree.parse(str(XSD_PATH)))


def wire_request(**overrides: str | None) -> YeuCauTraCuu:
    person = population(SEED).pick(0)
    data: dict[str, str | None] = {
        "MaYeuCau": "01JREQUEST",
        "MaDVC": LICENSED_PROCEDURES[0],
        "MaTichHop": "000000",
        "MaDonVi": "000.00.00.H47",
        "MaCanBo": PERMITTED_OFFICERS[0],
        "SoDinhDanh": person.SoDinhDanh,
        "HoVaTen": person.HoVaTen.day_du(),
        "NgayThangNamSinh": person.NgayThangNamSinh,
    }
    data.update(overrides)
    return YeuCauTraCuu.model_validate(data)


@lru_cache(maxsize=1)
def zeep_client() -> zeep.Client:
    return zeep.Client(str(WSDL_PATH), settings=zeep_settings())


def zeep_body(request: YeuCauTraCuu) -> etree._Element:
    client = zeep_client()
    service = client.create_service(BINDING, "http://127.0.0.1:9/soap")
    envelope = client.create_message(service, OPERATION, **request.zeep_arguments())
    body = envelope.find(f"{{{SOAP_ENV_NS}}}Body")
    assert body is not None
    return body[0]


def valid(element: etree._Element) -> bool:
    return bool(SCHEMA.validate(etree.ElementTree(etree.fromstring(etree.tostring(element)))))


# ---------------------------------------------------------------- the schema


def test_the_wsdl_names_the_published_operation_and_namespace() -> None:
    binding = zeep_client().wsdl.bindings[BINDING]
    assert list(binding._operations) == [OPERATION]
    assert zeep_client().wsdl.types.get_element(f"{{{NS}}}{OPERATION}") is not None


def test_zeeps_request_follows_the_schema_and_field_order() -> None:
    request = wire_request()
    body = zeep_body(request)
    assert valid(body)
    assert [etree.QName(c).localname for c in body] == [
        "MaYeuCau",
        "MaDVC",
        "MaTichHop",
        "MaDonVi",
        "MaCanBo",
        "SoDinhDanh",
        "HoVaTen",
        "NgayThangNamSinh",
    ]
    assert request_from_xml(body) == request


def test_legacy_number_instead_of_the_id() -> None:
    request = wire_request(SoDinhDanh=None, SoCMND="201234567", HoVaTen=None)
    body = zeep_body(request)
    assert valid(body)
    assert request_from_xml(body) == request


def test_the_schema_refuses_what_the_registry_would() -> None:
    both = request_to_xml(wire_request(SoCMND="201234567"))
    assert not valid(both)  # SoDinhDanh or SoCMND, not both
    neither = request_to_xml(wire_request(SoDinhDanh=None))
    assert not valid(neither)
    long_id = request_to_xml(wire_request())
    long_id.find(f"{{{NS}}}MaYeuCau").text = "x" * 41  # type: ignore[union-attr]
    assert not valid(long_id)


def test_a_full_answer_follows_the_schema_and_reads_back() -> None:
    people = population(SEED)
    for person in (people.pick(0), people.pick(0, "legacy"), people.pick(0, "married")):
        answer = KetQuaTraCuu(MaYeuCau="r", MaLoi=MaLoi.THANH_CONG, CongdanCollection=[person])
        element = response_to_xml(answer)
        assert valid(element)
        assert response_from_xml(element) == answer
    refusal = KetQuaTraCuu(MaYeuCau="r", MaLoi="004", MoTaLoi="Thủ tục chưa được cấp phép")
    assert valid(response_to_xml(refusal))


def test_operations_as_the_sandbox_names_them() -> None:
    assert operation_of("/soap", b"<soap:Envelope/>") == OPERATION
    assert operation_of("/token", b"grant_type=client_credentials") == "token"
    assert operation_of("/soap", b"") == "wsdl"
    assert operation_of("/dancuquocgia.xsd", b"") == "wsdl"


# ---------------------------------------------------------------- the simulator's rules


@dataclass
class Sim:
    app: PopulationSimulator
    http: httpx.AsyncClient
    #: signs requests as the gateway does (the simulator checks them against the dev CA)
    gateway: EnvelopeSigning
    pki: DevPki

    def signed(self, request: YeuCauTraCuu) -> bytes:
        return self.gateway.sign(_envelope(request_to_xml(request)))

    async def token(self) -> str:
        r = await self.http.post(
            "/token", data={"grant_type": "client_credentials"}, auth=("key", "secret")
        )
        assert r.status_code == 200, r.text
        value: str = r.json()["access_token"]
        return value

    async def call(self, body: bytes, bearer: str | None) -> tuple[int, etree._Element | None]:
        headers = {"Content-Type": "text/xml"}
        if bearer:
            headers["Authorization"] = f"Bearer {bearer}"
        r = await self.http.post("/soap", content=body, headers=headers)
        return r.status_code, etree.fromstring(r.content) if r.content.startswith(b"<") else None


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> DevPki:
    return ensure_dev_pki(tmp_path_factory.mktemp("pki"), ["population_db"])


@pytest.fixture
async def sim(pki: DevPki) -> AsyncIterator[Sim]:
    checker = EnvelopeVerification(
        XmlVerifier(VerificationPolicy(trust=TrustStore.from_paths([pki.ca.cert_path])))
    )

    def verify_request(data: bytes) -> etree._Element:
        return checker.verify(data)

    app = PopulationSimulator(
        seed=SEED,
        base_url="http://sim.test",
        consumer_key="key",
        consumer_secret="secret",
        integration_code="000000",
        signer=EnvelopeSigning(XmlSigner(pki.simulator("population_db").load())).sign,
        request_verifier=verify_request,
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://sim.test") as http:
        yield Sim(app, http, EnvelopeSigning(XmlSigner(pki.gateway.load())), pki)


def fault_code(envelope: etree._Element | None) -> str | None:
    assert envelope is not None
    return envelope.findtext(f".//{{{SOAP_ENV_NS}}}Fault/faultcode")


def answer_of(envelope: etree._Element | None) -> KetQuaTraCuu:
    assert envelope is not None
    body = envelope.find(f"{{{SOAP_ENV_NS}}}Body")
    assert body is not None
    return response_from_xml(body[0])


async def test_token_endpoint_follows_client_credentials(sim: Sim) -> None:
    http = sim.http
    assert (await http.post("/token", data={"grant_type": "client_credentials"})).status_code == 401
    wrong = await http.post(
        "/token", data={"grant_type": "client_credentials"}, auth=("key", "nope")
    )
    assert wrong.status_code == 401 and wrong.json() == {"error": "invalid_client"}
    grant = await http.post("/token", data={"grant_type": "password"}, auth=("key", "secret"))
    assert grant.status_code == 400 and grant.json() == {"error": "unsupported_grant_type"}
    ok = await http.post(
        "/token",
        content="grant_type=client_credentials",
        headers={
            "Authorization": "Basic " + base64.b64encode(b"key:secret").decode(),
            "Content-Type": "application/x-www-form-urlencoded",
        },
    )
    assert ok.status_code == 200
    assert set(ok.json()) == {"access_token", "token_type", "expires_in", "scope"}
    assert ok.json()["token_type"] == "Bearer"
    assert sim.app.controls.tokens_issued == 1


async def test_soap_needs_a_live_bearer_token(sim: Sim) -> None:
    body = sim.signed(wire_request())
    assert (await sim.call(body, None))[0] == 401
    assert (await sim.call(body, "made-up"))[0] == 401
    bearer = await sim.token()
    assert (await sim.call(body, bearer))[0] == 200
    sim.app.controls.revoke_tokens()
    assert (await sim.call(body, bearer))[0] == 401


async def test_answers_are_signed_with_the_simulators_certificate(sim: Sim) -> None:
    bearer = await sim.token()
    r = await sim.http.post(
        "/soap", content=sim.signed(wire_request()), headers={"Authorization": f"Bearer {bearer}"}
    )
    pinned = sim.pki.simulator("population_db").load().certificate
    verifier = EnvelopeVerification(XmlVerifier(VerificationPolicy(pinned=(pinned,))))
    body = verifier.verify(r.content)
    answer = response_from_xml(body[0])
    assert answer.MaLoi == MaLoi.THANH_CONG
    assert answer.CongdanCollection == [population(SEED).pick(0)]


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"MaTichHop": "999"}, MaLoi.MA_TICH_HOP_SAI),
        ({"MaDonVi": "H47"}, MaLoi.DON_VI_CHUA_DANG_KY),
        ({"MaDVC": "9.999999"}, MaLoi.THU_TUC_CHUA_DUOC_CAP_PHEP),
        ({"MaCanBo": "CB999999"}, MaLoi.CAN_BO_KHONG_DUOC_PHEP),
    ],
)
async def test_the_platforms_result_codes(sim: Sim, overrides: dict[str, str], code: str) -> None:
    status, envelope = await sim.call(sim.signed(wire_request(**overrides)), await sim.token())
    assert status == 200
    answer = answer_of(envelope)
    assert (answer.MaLoi, answer.CongdanCollection) == (code, [])


async def test_nobody_is_an_empty_collection(sim: Sim) -> None:
    unknown = population(SEED).unknown_id()
    status, envelope = await sim.call(
        sim.signed(wire_request(SoDinhDanh=unknown)), await sim.token()
    )
    assert status == 200
    answer = answer_of(envelope)
    assert (answer.MaLoi, answer.CongdanCollection) == (MaLoi.THANH_CONG, [])


async def test_unsigned_or_invalid_requests_are_faults(sim: Sim) -> None:
    bearer = await sim.token()
    unsigned = etree.tostring(_envelope(request_to_xml(wire_request())))
    status, envelope = await sim.call(unsigned, bearer)
    assert (status, fault_code(envelope)) == (500, "soap:Client")
    both = sim.signed(wire_request(SoCMND="201234567"))  # both numbers: breaks the schema
    status, envelope = await sim.call(both, bearer)
    assert (status, fault_code(envelope)) == (500, "soap:Client")
    assert envelope is not None
    assert "schema" in (envelope.findtext(f".//{{{SOAP_ENV_NS}}}Fault/faultstring") or "")
    xxe = b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><x>&e;</x>'
    status, envelope = await sim.call(xxe, bearer)
    assert (status, fault_code(envelope)) == (500, "soap:Client")
    assert sim.app.controls.signed_requests_verified == 1  # only the schema-breaking one
