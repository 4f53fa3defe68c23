"""The identity capability's contract, run against every implementation.

An implementation is an adapter serving ``identity``, reached the way the API reaches it
(``runtime.registry.capability("identity")``) and talking to its own simulator over real HTTP.
Each implementation supplies an oracle: citizens its national system knows (read from the
system's side, never through the adapter), a well-formed ID nobody has, and a purpose the
system refuses for each reason. The same tests then hold every implementation to the same
behaviour, so the provincial system sees no difference when a province swaps one for another.
Add an implementation by adding a provider to ``IMPLEMENTATIONS``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from support.population_db_rig import population_db_rig

from gateway.capabilities.identity import (
    CITIZEN_FIELDS,
    IdentityCapability,
    LookupCitizen,
    VerifyCitizen,
    VerifyReason,
)
from gateway.errors import NotFound, OfficerNotPermitted, ProcedureNotLicensed

pytestmark = pytest.mark.asyncio(loop_scope="module")


@dataclass(frozen=True)
class KnownCitizen:
    """What the national system holds, in canonical terms, read on the system's side."""

    id_number: str
    legacy_id_number: str | None
    full_name: str
    given_name: str
    birth_date: str  # YYYY-MM-DD or YYYY
    gender: str


@dataclass
class Subject:
    name: str
    capability: Any
    citizens: list[KnownCitizen]
    unknown_id: str
    purpose: dict[str, Any]
    unlicensed_procedure: str
    unpermitted_officer: str

    def verify(self, citizen: KnownCitizen, **overrides: Any) -> VerifyCitizen:
        data: dict[str, Any] = {
            "id_number": citizen.id_number,
            "full_name": citizen.full_name,
            "birth_date": citizen.birth_date,
            "purpose": self.purpose,
        }
        data.update(overrides)
        return VerifyCitizen.model_validate({k: v for k, v in data.items() if v is not ...})

    def lookup(self, id_number: str, fields: list[str], **overrides: Any) -> LookupCitizen:
        data = {"id_number": id_number, "purpose": self.purpose, "fields": fields, **overrides}
        return LookupCitizen.model_validate(data)


# ---------------------------------------------------------------- implementations


@asynccontextmanager
async def _population_db(tmp_path: Path) -> AsyncIterator[Subject]:
    from adapters.population_db.models import CongDan
    from adapters.population_db.population import LICENSED_PROCEDURES, PERMITTED_OFFICERS

    def known(p: CongDan) -> KnownCitizen:
        raw = p.NgayThangNamSinh
        birth = raw if len(raw) == 4 else f"{raw[:4]}-{raw[4:6]}-{raw[6:]}"
        parts = [p.HoVaTen.Ho, p.HoVaTen.ChuDem, p.HoVaTen.Ten]
        return KnownCitizen(
            id_number=p.SoDinhDanh,
            legacy_id_number=p.SoCMND,
            full_name=" ".join(x for x in parts if x),
            given_name=p.HoVaTen.Ten,
            birth_date=birth,
            gender={"1": "male", "2": "female"}[p.GioiTinh],
        )

    async with population_db_rig(tmp_path) as rig:
        people = rig.population
        citizens = [
            known(people.pick(0)),
            known(people.pick(0, "legacy")),
            known(people.pick(0, "year_only")),
            known(people.pick(0, "female")),
        ]
        yield Subject(
            name="population_db",
            capability=rig.runtime.registry.capability("identity"),
            citizens=citizens,
            unknown_id=people.unknown_id(),
            purpose={
                "procedure_code": LICENSED_PROCEDURES[0],
                "officer_id": PERMITTED_OFFICERS[0],
                "dossier_code": "000.00.19.H47-260105-0001",
            },
            unlicensed_procedure="9.999999",
            unpermitted_officer="CB999999",
        )


IMPLEMENTATIONS: dict[str, Callable[[Path], AbstractAsyncContextManager[Subject]]] = {
    "population_db": _population_db,
}


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=sorted(IMPLEMENTATIONS))
async def subject(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Subject]:
    provider = IMPLEMENTATIONS[request.param]
    async with provider(tmp_path_factory.mktemp(request.param)) as s:
        yield s


def _call(subject: Subject, method: str) -> Callable[..., Awaitable[Any]]:
    fn: Callable[..., Awaitable[Any]] = getattr(subject.capability, method)
    return fn


# ---------------------------------------------------------------- the contract


async def test_implements_the_protocol(subject: Subject) -> None:
    assert isinstance(subject.capability, IdentityCapability)


async def test_a_match(subject: Subject) -> None:
    for citizen in subject.citizens:
        result = await subject.capability.verify(subject.verify(citizen), caller="contract")
        assert result.match is True, citizen
        assert result.checked == ["id_number", "full_name", "birth_date"]
        assert result.mismatches == []
        assert result.reason is None


async def test_names_compare_case_insensitively(subject: Subject) -> None:
    citizen = subject.citizens[0]
    request = subject.verify(citizen, full_name=citizen.full_name.upper())
    assert (await subject.capability.verify(request, caller="contract")).match is True


async def test_a_year_agrees_with_the_full_date(subject: Subject) -> None:
    citizen = subject.citizens[0]
    request = subject.verify(citizen, birth_date=citizen.birth_date[:4])
    assert (await subject.capability.verify(request, caller="contract")).match is True


async def test_mismatches_are_named(subject: Subject) -> None:
    citizen, other = subject.citizens[0], subject.citizens[3]
    result = await subject.capability.verify(
        subject.verify(citizen, full_name=other.full_name), caller="contract"
    )
    assert (result.match, result.mismatches, result.reason) == (
        False,
        ["full_name"],
        VerifyReason.MISMATCH,
    )
    # another day of the same year (another year would contradict the ID's digits: a 422)
    assert len(citizen.birth_date) == 10
    month = int(citizen.birth_date[5:7]) % 12 + 1
    result = await subject.capability.verify(
        subject.verify(citizen, birth_date=f"{citizen.birth_date[:4]}-{month:02d}-01"),
        caller="contract",
    )
    assert result.mismatches == ["birth_date"]


async def test_the_legacy_number_alone(subject: Subject) -> None:
    citizen = subject.citizens[1]
    assert citizen.legacy_id_number is not None
    request = subject.verify(citizen, id_number=..., legacy_id_number=citizen.legacy_id_number)
    result = await subject.capability.verify(request, caller="contract")
    assert result.match is True
    assert result.checked == ["legacy_id_number", "full_name", "birth_date"]


async def test_nobody_is_not_found(subject: Subject) -> None:
    request = subject.verify(subject.citizens[0], id_number=subject.unknown_id, birth_date="1985")
    result = await subject.capability.verify(request, caller="contract")
    assert (result.match, result.checked, result.mismatches, result.reason) == (
        False,
        ["id_number"],
        [],
        VerifyReason.NOT_FOUND,
    )
    with pytest.raises(NotFound):
        await subject.capability.lookup(
            subject.lookup(subject.unknown_id, ["gender"]), caller="contract"
        )


async def test_lookup_returns_exactly_the_requested_fields(subject: Subject) -> None:
    citizen = subject.citizens[3]
    result = await subject.capability.lookup(
        subject.lookup(citizen.id_number, ["gender", "given_name", "birth_date"]),
        caller="contract",
    )
    assert result.citizen == {
        "gender": citizen.gender,
        "given_name": citizen.given_name,
        "birth_date": citizen.birth_date,
    }


async def test_every_field_can_be_asked_for(subject: Subject) -> None:
    citizen = subject.citizens[1]
    result = await subject.capability.lookup(
        subject.lookup(citizen.id_number, list(CITIZEN_FIELDS)), caller="contract"
    )
    assert list(result.citizen) == list(CITIZEN_FIELDS)
    assert result.citizen["id_number"] == citizen.id_number
    assert result.citizen["legacy_id_number"] == citizen.legacy_id_number
    assert result.citizen["full_name"] == citizen.full_name


@pytest.mark.parametrize("method", ["verify", "lookup"])
async def test_the_registry_refuses_unlicensed_procedures(subject: Subject, method: str) -> None:
    purpose = {**subject.purpose, "procedure_code": subject.unlicensed_procedure}
    citizen = subject.citizens[0]
    request: Any = (
        subject.verify(citizen, purpose=purpose)
        if method == "verify"
        else subject.lookup(citizen.id_number, ["gender"], purpose=purpose)
    )
    with pytest.raises(ProcedureNotLicensed):
        await _call(subject, method)(request, caller="contract")


@pytest.mark.parametrize("method", ["verify", "lookup"])
async def test_the_registry_refuses_unpermitted_officers(subject: Subject, method: str) -> None:
    purpose = {**subject.purpose, "officer_id": subject.unpermitted_officer}
    citizen = subject.citizens[0]
    request: Any = (
        subject.verify(citizen, purpose=purpose)
        if method == "verify"
        else subject.lookup(citizen.id_number, ["gender"], purpose=purpose)
    )
    with pytest.raises(OfficerNotPermitted):
        await _call(subject, method)(request, caller="contract")
