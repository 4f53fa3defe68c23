"""The simulator's synthetic population: deterministic, large, and structurally real."""

from __future__ import annotations

import collections
import unicodedata

import pytest

from adapters.population_db.population import DEFAULT_SIZE, Population, population
from gateway.capabilities.identity import (
    BirthDate,
    VerifyCitizen,
    id_agrees_with_birth,
    known_province_codes,
)

SEED = 20260101


@pytest.fixture(scope="module")
def people() -> Population:
    return population(SEED)


def test_at_least_ten_thousand_people(people: Population) -> None:
    assert DEFAULT_SIZE >= 10_000
    assert len(people.people) == DEFAULT_SIZE
    assert len(people.by_id) == DEFAULT_SIZE  # IDs are unique


def test_same_seed_same_people_other_seed_others() -> None:
    a, b, c = Population(7, 300), Population(7, 300), Population(8, 300)
    assert a.people == b.people
    assert a.people != c.people


def test_ids_agree_with_province_gender_and_birth_year(people: Population) -> None:
    codes = known_province_codes()
    for p in people.people:
        number = p.SoDinhDanh
        assert len(number) == 12 and number.isdigit()
        assert number[:3] in codes
        assert id_agrees_with_birth(number, BirthDate(int(p.NgayThangNamSinh[:4])))
        # even G digit: male, odd: female (GioiTinh 1 male, 2 female)
        assert int(number[3]) % 2 == (0 if p.GioiTinh == "1" else 1)


def test_every_person_passes_the_gateways_own_validation(people: Population) -> None:
    for p in people.people[:3000]:
        raw = p.NgayThangNamSinh
        birth = raw if len(raw) == 4 else f"{raw[:4]}-{raw[4:6]}-{raw[6:]}"
        VerifyCitizen.model_validate(
            {
                "id_number": p.SoDinhDanh,
                "legacy_id_number": p.SoCMND,
                "full_name": p.HoVaTen.day_du(),
                "birth_date": birth,
                "purpose": {"procedure_code": "1.001612", "officer_id": "CB000001"},
            }
        )


def test_names_are_vietnamese_with_diacritics(people: Population) -> None:
    families = collections.Counter(p.HoVaTen.Ho for p in people.people)
    assert families.most_common(1)[0][0] == "Nguyễn"
    share = families["Nguyễn"] / len(people.people)
    assert 0.3 < share < 0.45  # about 38 % of Vietnamese carry it
    accented = sum(1 for p in people.people if not p.HoVaTen.day_du().isascii())
    assert accented / len(people.people) > 0.9
    for p in people.people[:500]:
        assert unicodedata.is_normalized("NFC", p.HoVaTen.day_du())
    women = [p for p in people.people if p.GioiTinh == "2"]
    assert sum(1 for p in women if p.HoVaTen.ChuDem and "Thị" in p.HoVaTen.ChuDem) > len(women) / 4


def test_some_have_legacy_numbers_and_year_only_birth_dates(people: Population) -> None:
    legacy = [p for p in people.people if p.SoCMND]
    assert 0.1 < len(legacy) / len(people.people) < 0.5
    assert all(len(p.SoCMND or "") == 9 for p in legacy)
    assert len(people.by_legacy) == len(legacy)  # unique
    assert all(int(p.NgayThangNamSinh[:4]) <= 2000 for p in legacy)
    assert any(len(p.NgayThangNamSinh) == 4 for p in people.people)


def test_addresses_use_real_administrative_codes(people: Population) -> None:
    from vietnam_provinces import Ward

    wards = {int(w.code): int(w.province_code) for w in Ward.iter_all()}
    for p in people.people[:2000]:
        for address in (p.ThuongTru, p.NoiOHienTai):
            assert address is not None and address.MaPhuongXa and address.MaTinhThanh
            assert wards[int(address.MaPhuongXa)] == int(address.MaTinhThanh)
            assert address.MaQuanHuyen is None  # the current set has no districts
    homes = collections.Counter(p.ThuongTru.MaTinhThanh for p in people.people if p.ThuongTru)
    assert homes.most_common(1)[0][0] == "48"  # Đà Nẵng, which absorbed Quảng Nam


def test_tests_pick_citizens_deterministically(people: Population) -> None:
    assert people.pick(0) is people.people[0]
    legacy = people.pick(3, "legacy")
    assert legacy.SoCMND and [p for p in people.people if p.SoCMND][3] is legacy
    assert len(people.pick(0, "year_only").NgayThangNamSinh) == 4
    assert people.find(id_number=legacy.SoDinhDanh) is legacy
    assert people.find(legacy_id_number=legacy.SoCMND) is legacy
    with pytest.raises(LookupError):
        Population(1, 5).pick(10)


def test_unknown_ids_are_well_formed_and_nobodys(people: Population) -> None:
    first, second = people.unknown_id(0), people.unknown_id(1)
    assert first != second
    for number in (first, second):
        assert people.find(id_number=number) is None
        VerifyCitizen.model_validate(
            {
                "id_number": number,
                "full_name": "Không Ai",
                "birth_date": "1985",
                "purpose": {"procedure_code": "1.001612", "officer_id": "CB000001"},
            }
        )


def test_every_record_is_a_valid_wire_record(people: Population) -> None:
    from adapters.population_db.models import CongDan

    # the generator skips validation for speed: prove here that it could have validated
    for p in people.people:
        assert CongDan.model_validate(p.model_dump()) == p
