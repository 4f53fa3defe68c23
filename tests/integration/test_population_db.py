"""The identity API over real HTTP: gateway -> uvicorn -> sandbox -> population DB simulator.

Every call crosses real sockets, with the real zeep client, real XML signatures both ways, the
real OAuth2 token endpoint and a real SQLite store. Expectations come from the simulator's
synthetic population and its own counters, never from the code under test. The tests here
share one gateway and one sandbox (reset between tests: no faults, zero counters); those that
need their own deployment or break the circuit are in ``test_population_db_resilience.py``.

Logs are captured raw (before any masking) at DEBUG for the whole module; the last test proves
none of the ID numbers or names used anywhere in the module reached a log line.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from lxml import etree
from support.population_db_rig import (
    FULL,
    LOOKUP_ONLY,
    NO_SCOPES,
    VERIFY_ONLY,
    LogCapture,
    Rig,
    birth_text,
    population_db_rig,
    purpose,
)

from adapters.population_db.adapter import PopulationDbAdapter
from adapters.population_db.config import SANDBOX_CONSUMER_SECRET
from adapters.population_db.models import SOAP_ENV_NS, YeuCauTraCuu, request_to_xml
from adapters.population_db.soapsig import EnvelopeSigning
from gateway.audit import Auditor
from gateway.idempotency import record_key
from gateway.store.base import AuditQuery
from signing.keys import ensure_dev_pki
from signing.sign import XmlSigner
from signing.xml import resolver_calls

pytestmark = pytest.mark.asyncio(loop_scope="module")

_CAPTURE = LogCapture()
#: every ID number and name sent to the gateway by any test of this module
_USED: set[str] = set()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def shared(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Rig]:
    tmp_path = tmp_path_factory.mktemp("population_db")
    async with population_db_rig(tmp_path, logging_level="DEBUG", log_handler=_CAPTURE) as r:
        yield r
        _USED.update(r.used)
    logging.getLogger().removeHandler(_CAPTURE)


@pytest_asyncio.fixture(loop_scope="module")
async def rig(shared: Rig) -> AsyncIterator[Rig]:
    await shared.reset()
    yield shared
    _USED.update(shared.used)


def problem(response: Any) -> dict[str, Any]:
    assert response.headers["content-type"].startswith("application/problem+json"), response.text
    body: dict[str, Any] = response.json()
    return body


# ---------------------------------------------------------------- verification


async def test_a_match(rig: Rig) -> None:
    citizen = rig.population.pick(0)
    r = await rig.verify(rig.verify_body(citizen))
    assert r.status_code == 200, r.text
    assert r.json() == {
        "match": True,
        "checked": ["id_number", "full_name", "birth_date"],
        "mismatches": [],
        "reason": None,
    }
    # the gateway signed the request and the registry checked that signature
    assert rig.simulator.controls.signed_requests_verified == 1


async def test_input_forms_are_normalised_before_comparison(rig: Rig) -> None:
    citizen = rig.population.pick(1)
    name = citizen.HoVaTen.day_du()
    sloppy = "  " + "  ".join(name.upper().split()) + " "
    for birth in (birth_text(citizen, "vn"), birth_text(citizen, "year")):
        r = await rig.verify(rig.verify_body(citizen, full_name=sloppy, birth_date=birth))
        assert r.status_code == 200, r.text
        assert r.json()["match"] is True


@pytest.mark.parametrize("field", ["full_name", "birth_date", "legacy_id_number"])
async def test_each_field_mismatch(rig: Rig, field: str) -> None:
    citizen = rig.population.pick(0, "legacy")
    assert citizen.SoCMND is not None
    body = rig.verify_body(citizen, legacy_id_number=citizen.SoCMND)
    if field == "full_name":
        other = rig.population.pick(0, "female" if citizen.GioiTinh == "1" else "male")
        body["full_name"] = rig.remember(other).HoVaTen.day_du()
    elif field == "birth_date":
        year, rest = int(body["birth_date"][:4]), body["birth_date"][4:]
        month = int(rest[1:3]) % 12 + 1 if rest else 1
        body["birth_date"] = f"{year}-{month:02d}-01"
    else:
        body["legacy_id_number"] = rig.population.pick(1, "legacy").SoCMND
    r = await rig.verify(body)
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["match"] is False
    assert answer["mismatches"] == [field]
    assert answer["reason"] == "mismatch"
    assert answer["checked"] == ["id_number", "legacy_id_number", "full_name", "birth_date"]


async def test_diacritics_are_significant_by_default(rig: Rig) -> None:
    citizen = next(p for p in rig.population.people if p.HoVaTen.day_du().isascii() is False)
    unaccented = _unaccent(citizen.HoVaTen.day_du()).upper()
    r = await rig.verify(rig.verify_body(citizen, full_name=unaccented))
    assert r.json()["mismatches"] == ["full_name"]


async def test_legacy_number_alone(rig: Rig) -> None:
    citizen = rig.population.pick(2, "legacy")
    body = rig.verify_body(citizen, id_number=..., legacy_id_number=citizen.SoCMND)
    r = await rig.verify(body)
    assert r.status_code == 200, r.text
    assert r.json()["match"] is True
    assert r.json()["checked"] == ["legacy_id_number", "full_name", "birth_date"]


async def test_not_found(rig: Rig) -> None:
    unknown = rig.population.unknown_id()
    citizen = rig.population.pick(3)
    body = rig.verify_body(citizen, id_number=unknown, birth_date="1985")
    r = await rig.verify(body)
    assert r.status_code == 200, r.text
    assert r.json() == {
        "match": False,
        "checked": ["id_number"],
        "mismatches": [],
        "reason": "not_found",
    }


# ---------------------------------------------------------------- lookup


async def test_lookup_returns_only_the_requested_fields(rig: Rig) -> None:
    citizen = rig.population.pick(4)
    rig.remember(citizen)
    r = await rig.lookup(
        {
            "id_number": citizen.SoDinhDanh,
            "purpose": purpose(),
            "fields": ["given_name", "permanent_address"],
        }
    )
    assert r.status_code == 200, r.text
    home = citizen.ThuongTru
    assert home is not None
    assert r.json() == {
        "citizen": {
            "given_name": citizen.HoVaTen.Ten,
            "permanent_address": {
                "province_code": home.MaTinhThanh,
                "district_code": home.MaQuanHuyen,
                "ward_code": home.MaPhuongXa,
                "detail": home.ChiTiet,
            },
        }
    }


async def test_lookup_of_nobody_is_404(rig: Rig) -> None:
    r = await rig.lookup(
        {"id_number": rig.population.unknown_id(1), "purpose": purpose(), "fields": ["gender"]}
    )
    assert r.status_code == 404
    assert problem(r)["type"].endswith(":not-found")


# ---------------------------------------------------------------- the registry's refusals


async def test_unlicensed_procedure_is_403_code_004(rig: Rig) -> None:
    citizen = rig.population.pick(5)
    r = await rig.verify(rig.verify_body(citizen, purpose=purpose(procedure="9.999999")))
    assert r.status_code == 403
    body = problem(r)
    assert body["type"].endswith(":procedure-not-licensed")
    assert body["upstream_code"] == "004"


async def test_unpermitted_officer_is_403_code_005(rig: Rig) -> None:
    citizen = rig.population.pick(5)
    r = await rig.lookup(
        {
            "id_number": rig.remember(citizen).SoDinhDanh,
            "purpose": purpose(officer="CB999999"),
            "fields": ["gender"],
        }
    )
    assert r.status_code == 403
    body = problem(r)
    assert body["type"].endswith(":officer-not-permitted")
    assert body["upstream_code"] == "005"


# ---------------------------------------------------------------- the answer's integrity


@pytest.mark.parametrize(
    ("mode", "slug"),
    [
        ("malformed", "upstream-protocol-error"),
        ("wrong_shape", "upstream-protocol-error"),
        ("xxe", "upstream-protocol-error"),
        ("unsigned", "upstream-protocol-error"),
        ("bad_signature", "upstream-protocol-error"),
        ("fault", "upstream-fault"),
    ],
)
async def test_answers_the_gateway_must_refuse(rig: Rig, mode: str, slug: str) -> None:
    resolver_before = resolver_calls()
    rig.simulator.controls.misbehave(mode, count=1)  # type: ignore[arg-type]
    citizen = rig.population.pick(6)
    r = await rig.verify(rig.verify_body(citizen))
    assert r.status_code == 502, r.text
    body = problem(r)
    assert body["type"].endswith(":" + slug)
    assert body["system"] == "population_db"
    # a refused answer is not retried (the registry answered; retrying would not help)
    assert rig.attempts() == 1
    if mode == "xxe":
        assert "hardened XML parser" in body["detail"]
        assert resolver_calls() == resolver_before  # no entity was ever resolved
    if mode in ("unsigned", "bad_signature"):
        assert body["signature_problem"] in ("signature-invalid", "unsupported-xml-feature")
    # and the registry is fine again afterwards
    r = await rig.verify(rig.verify_body(citizen))
    assert r.status_code == 200 and r.json()["match"] is True


@pytest.mark.parametrize("mode", ["other_citizen", "other_request"])
@pytest.mark.parametrize("query", ["verify", "lookup", "lookup_legacy", "verify_unknown"])
async def test_an_answer_about_someone_else_is_refused(rig: Rig, mode: str, query: str) -> None:
    """A well-signed answer for another MaYeuCau or about another citizen never reaches the
    caller: 502, with no personal data (neither the one asked for nor the stray one)."""
    citizen = rig.remember(rig.population.pick(10, "legacy"))
    assert citizen.SoCMND is not None
    rig.simulator.controls.misbehave(mode, count=1)  # type: ignore[arg-type]
    if query == "verify":
        r = await rig.verify(rig.verify_body(citizen))
    elif query == "verify_unknown":
        unknown = rig.population.unknown_id()
        r = await rig.verify(rig.verify_body(citizen, id_number=unknown, birth_date="1985"))
    else:
        key = "id_number" if query == "lookup" else "legacy_id_number"
        number = citizen.SoDinhDanh if query == "lookup" else citizen.SoCMND
        r = await rig.lookup({key: number, "purpose": purpose(), "fields": ["full_name"]})
    assert r.status_code == 502, r.text
    body = problem(r)
    assert body["type"].endswith(":upstream-protocol-error")
    stray = rig.population.people[0] if mode == "other_citizen" else citizen
    for secret in (citizen.SoDinhDanh, citizen.SoCMND, stray.SoDinhDanh, stray.HoVaTen.Ten):
        assert secret not in r.text
    rig.remember(stray)
    assert rig.attempts() == 1
    # the same query answered properly goes through
    r = await rig.verify(rig.verify_body(citizen))
    assert r.status_code == 200 and r.json()["match"] is True


@pytest.mark.parametrize("signer", ["gateway", "national_portal"])
async def test_the_sandbox_accepts_only_the_registry_simulators_signature(
    rig: Rig, signer: str
) -> None:
    """No [signing.peers.population_db] here: the sandbox pins the simulator's certificate, so
    an answer signed by another key of the same development CA (the gateway's own, another
    simulator's) is refused although it chains to the trust store."""
    pki = ensure_dev_pki(rig.pki.directory, [signer] if signer != "gateway" else [])
    files = pki.gateway if signer == "gateway" else pki.simulator(signer)
    assert "population_db" not in rig.settings.signing.peers
    genuine = rig.simulator.signer
    rig.simulator.signer = EnvelopeSigning(XmlSigner(files.load())).sign
    try:
        r = await rig.verify(rig.verify_body(rig.population.pick(11)))
    finally:
        rig.simulator.signer = genuine
    assert r.status_code == 502, r.text
    assert problem(r)["signature_problem"] == "signature-untrusted"
    assert (await rig.verify(rig.verify_body(rig.population.pick(11)))).status_code == 200


async def test_a_wrapped_request_is_answered_for_the_signed_body_only(rig: Rig) -> None:
    """Signature wrapping against the registry: the gateway-signed Body (asking for one
    citizen) moved into a Header wrapper, a forged unsigned Body asking for another put in its
    place. The simulator must read only what the signature covers."""
    asked = rig.remember(rig.population.pick(12))
    forged = rig.remember(rig.population.pick(13))
    base = f"{rig.sandbox_url}/population_db"
    grant = await rig.http.post(
        f"{base}/token",
        data={"grant_type": "client_credentials"},
        auth=("dvc-gateway", SANDBOX_CONSUMER_SECRET),
    )
    token = grant.json()["access_token"]

    def query(citizen: Any) -> etree._Element:
        return request_to_xml(
            YeuCauTraCuu(
                MaYeuCau="wrapping-test",
                MaDVC=purpose()["procedure_code"],
                MaTichHop="000000",
                MaDonVi="000.00.00.H47",
                MaCanBo=purpose()["officer_id"],
                SoDinhDanh=citizen.SoDinhDanh,
            )
        )

    envelope = etree.Element(f"{{{SOAP_ENV_NS}}}Envelope", nsmap={"soap": SOAP_ENV_NS})
    etree.SubElement(envelope, f"{{{SOAP_ENV_NS}}}Body").append(query(asked))
    signed = etree.fromstring(EnvelopeSigning(XmlSigner(rig.pki.gateway.load())).sign(envelope))
    header, body = signed.find(f"{{{SOAP_ENV_NS}}}Header"), signed.find(f"{{{SOAP_ENV_NS}}}Body")
    assert header is not None and body is not None
    etree.SubElement(header, "{urn:attacker}Wrapper").append(body)  # moves the signed Body
    etree.SubElement(signed, f"{{{SOAP_ENV_NS}}}Body").append(query(forged))
    r = await rig.http.post(
        f"{base}/soap",
        content=etree.tostring(signed),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "text/xml; charset=utf-8"},
    )
    assert forged.SoDinhDanh not in r.text
    assert forged.HoVaTen.Ten not in r.text or forged.HoVaTen.Ten == asked.HoVaTen.Ten
    if r.status_code == 200:  # answered: for the signed request, nothing else
        assert asked.SoDinhDanh in r.text
    else:
        assert r.status_code == 500 and "Fault" in r.text


async def test_sandbox_garbled_answer_is_refused(rig: Rig) -> None:
    rig.fault(malformed_rate=1.0, count=1)
    r = await rig.verify(rig.verify_body(rig.population.pick(7)))
    assert r.status_code == 502
    assert problem(r)["type"].endswith(":upstream-protocol-error")


# ---------------------------------------------------------------- the caller's side


@pytest.mark.parametrize("path", ["verify", "lookup"])
async def test_an_idempotency_key_keeps_no_answer(rig: Rig, path: str) -> None:
    """Queries are outside Idempotency-Key handling: nothing of the citizen's answer is kept
    in the store, and each call is answered fresh by the registry."""
    citizen = rig.population.pick(25)
    body: dict[str, Any] = rig.verify_body(citizen)
    if path == "lookup":
        body = {"id_number": citizen.SoDinhDanh, "purpose": purpose(), "fields": ["full_name"]}
    key = f"identity-{path}-0001"
    headers = {**FULL.headers, "Idempotency-Key": key}
    for _ in range(2):
        r = await rig.http.post(f"{rig.gateway}/v1/citizens/{path}", json=body, headers=headers)
        assert r.status_code == 200, r.text
        assert "idempotent-replayed" not in r.headers
    assert rig.simulator.controls.soap_requests == 2
    assert await rig.runtime.store.get(record_key(FULL.id, key)) is None


async def test_purpose_is_mandatory(rig: Rig) -> None:
    citizen = rig.population.pick(17)
    r = await rig.verify(rig.verify_body(citizen, purpose=...))
    assert r.status_code == 422
    assert [e["pointer"] for e in problem(r)["errors"]] == ["/purpose"]
    r = await rig.lookup({"id_number": citizen.SoDinhDanh, "fields": ["gender"]})
    assert r.status_code == 422
    assert [e["pointer"] for e in problem(r)["errors"]] == ["/purpose"]
    r = await rig.lookup({"id_number": citizen.SoDinhDanh, "purpose": purpose()})
    assert r.status_code == 422
    assert [e["pointer"] for e in problem(r)["errors"]] == ["/fields"]
    assert rig.simulator.controls.soap_requests == 0  # nothing left the gateway


async def test_structurally_invalid_ids_never_leave_the_gateway(rig: Rig) -> None:
    citizen = rig.population.pick(18)
    wrong_century = citizen.SoDinhDanh[:3] + str((int(citizen.SoDinhDanh[3]) + 2) % 10)
    body = rig.verify_body(citizen, id_number=wrong_century + citizen.SoDinhDanh[4:])
    r = await rig.verify(body)
    assert r.status_code == 422
    errors = problem(r)["errors"]
    assert [e["pointer"] for e in errors] == ["/id_number"]
    assert body["id_number"] not in r.text  # the problem never echoes the number
    assert rig.simulator.controls.soap_requests == 0


@pytest.mark.parametrize(
    ("path", "client", "status"),
    [
        ("verify", None, 401),
        ("verify", NO_SCOPES, 403),
        ("verify", LOOKUP_ONLY, 403),
        ("lookup", VERIFY_ONLY, 403),
        ("verify", VERIFY_ONLY, 200),
        ("lookup", LOOKUP_ONLY, 200),
    ],
)
async def test_scopes_are_enforced(rig: Rig, path: str, client: Any, status: int) -> None:
    citizen = rig.population.pick(19)
    body: dict[str, Any] = rig.verify_body(citizen)
    if path == "lookup":
        body = {"id_number": citizen.SoDinhDanh, "purpose": purpose(), "fields": ["gender"]}
    headers = client.headers if client is not None else {}
    r = await rig.http.post(f"{rig.gateway}/v1/citizens/{path}", json=body, headers=headers)
    assert r.status_code == status, r.text
    if status == 403:
        assert problem(r)["type"].endswith(":missing-scope")
    if status != 200:
        assert rig.simulator.controls.soap_requests == 0


# ---------------------------------------------------------------- audit and cache


async def test_each_query_is_audited_with_its_purpose_and_no_personal_data(rig: Rig) -> None:
    citizen = rig.population.pick(20, "legacy")
    await rig.verify(rig.verify_body(citizen, legacy_id_number=citizen.SoCMND))
    await rig.verify(rig.verify_body(citizen, purpose=purpose(procedure="9.999999")))
    auditor = Auditor(rig.runtime.store, rig.settings.digest_key())
    digest = auditor.digest(citizen.SoDinhDanh)
    records = await rig.runtime.store.audit.query(AuditQuery(subject_digest=digest))
    assert [(r.operation, r.outcome, r.status) for r in reversed(records)] == [
        ("identity.verify", "ok", None),
        ("identity.verify", "rejected", 403),
    ]
    for record in records:
        assert record.actor == FULL.id
        assert record.officer_id == purpose()["officer_id"]
        assert record.dossier_code == purpose()["dossier_code"]
        assert record.adapter == "population_db"
        assert record.subject_digests[0] == digest
        text = json.dumps(record.body_dict(), ensure_ascii=False)
        for secret in (citizen.SoDinhDanh, citizen.SoCMND, citizen.HoVaTen.day_du()):
            assert secret is not None and secret not in text
    assert records[1].procedure_code == purpose()["procedure_code"]
    assert records[0].procedure_code == "9.999999"
    assert records[0].detail == "procedure-not-licensed"
    assert records[1].extra["match"] is True
    # the legacy number is digested too: a search by it finds the same queries
    legacy = await rig.runtime.store.audit.query(
        AuditQuery(subject_digest=auditor.digest(citizen.SoCMND or ""))
    )
    assert [r.seq for r in legacy] == [records[1].seq]


async def test_each_soap_call_has_its_own_request_id(rig: Rig) -> None:
    """MaYeuCau is fresh per call (never the caller's X-Request-ID, which may repeat); the
    audit record ties the two together."""
    citizen = rig.population.pick(23)
    headers = {**FULL.headers, "X-Request-ID": "caller-chosen-0001"}
    for _ in range(2):
        r = await rig.http.post(
            f"{rig.gateway}/v1/citizens/verify", json=rig.verify_body(citizen), headers=headers
        )
        assert r.status_code == 200, r.text
        assert r.headers["x-request-id"] == "caller-chosen-0001"
    seen = list(rig.simulator.controls.request_ids)
    assert len(seen) == 2 and seen[0] != seen[1]
    for value in seen:
        assert re.fullmatch(r"[0-9a-f]{32}", value), value  # within DOMAIN's 40 characters
    auditor = Auditor(rig.runtime.store, rig.settings.digest_key())
    records = await rig.runtime.store.audit.query(
        AuditQuery(subject_digest=auditor.digest(citizen.SoDinhDanh))
    )
    assert sorted((r.request_id, r.extra["upstream_request_id"]) for r in records) == sorted(
        ("caller-chosen-0001", value) for value in seen
    )


async def test_the_audit_keeps_a_keyed_digest_of_the_soap_request(rig: Rig) -> None:
    citizen = rig.population.pick(24)
    for body in (
        rig.verify_body(citizen),
        {"id_number": citizen.SoDinhDanh, "purpose": purpose(), "fields": ["gender"]},
    ):
        send = rig.verify if "full_name" in body else rig.lookup
        assert (await send(body)).status_code == 200
        sent = rig.simulator.controls.last_request
        assert sent is not None
        auditor = Auditor(rig.runtime.store, rig.settings.digest_key())
        [record, *_] = await rig.runtime.store.audit.query(
            AuditQuery(subject_digest=auditor.digest(citizen.SoDinhDanh))
        )
        keyed = hmac.new(rig.settings.digest_key(), sent, hashlib.sha256).digest()
        assert record.payload_sha256 == hashlib.sha256(keyed).hexdigest()
        # not the plain hash: that one could be matched by hashing guessed requests
        assert record.payload_sha256 != hashlib.sha256(sent).hexdigest()


async def test_the_verification_cache_is_off_by_default(rig: Rig) -> None:
    citizen = rig.population.pick(21)
    for _ in range(2):
        assert (await rig.verify(rig.verify_body(citizen))).status_code == 200
    assert rig.simulator.controls.soap_requests == 2


async def test_signing_runs_on_the_process_signing_service(rig: Rig) -> None:
    """One key load and one thread pool per process: the adapter signs and verifies through
    the runtime's service (the runtime closes it), never a second one of its own."""
    adapter = rig.runtime.registry.instances["population_db"]
    assert isinstance(adapter, PopulationDbAdapter)
    assert adapter.context.signing is rig.runtime.signing
    assert (await rig.verify(rig.verify_body(rig.population.pick(22)))).status_code == 200
    assert adapter.client.transport.crypto.service is rig.runtime.signing


async def test_the_probe_reports_the_registry_up(rig: Rig) -> None:
    adapter = rig.runtime.registry.instances["population_db"]
    started = time.perf_counter()
    result = await adapter.probe()
    assert result.ok, result.detail
    assert (
        result.latency_ms is not None
        and result.latency_ms < (time.perf_counter() - started) * 1000 + 1
    )
    rig.fault("wsdl", error_rate=1.0, status=503)
    result = await adapter.probe()
    assert not result.ok


# ---------------------------------------------------------------- privacy of the whole run


async def test_zz_no_log_line_holds_an_id_number_or_a_name() -> None:
    assert _USED, "the module's tests ran no query"
    assert _CAPTURE.lines, "nothing was logged at all: the capture is broken"
    assert _CAPTURE.leaks(_USED) == []


def _unaccent(text: str) -> str:
    import unicodedata

    bare = "".join(c for c in unicodedata.normalize("NFD", text) if unicodedata.category(c) != "Mn")
    return bare.replace("đ", "d").replace("Đ", "D")
