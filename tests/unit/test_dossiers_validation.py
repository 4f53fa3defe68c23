"""Validation of the dossiers capability: codes, dates, transitions, each naming its field."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from gateway.capabilities.dossiers import (
    VN_TZ,
    Dossier,
    DossierInput,
    DossierStatus,
    ProgressRecord,
    check_progress_transitions,
    check_transition,
    dossier_unit,
    parse_dossier_code,
    parse_model,
    validate_dossier,
    validate_dossier_code,
    validate_procedure_code,
    validate_progress,
    validate_unit_code,
)
from gateway.errors import ValidationFailed

S = DossierStatus
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=VN_TZ)


def _dossier(**extra: Any) -> Dossier:
    data: dict[str, Any] = {
        "code": "000.00.19.H47-260105-0001",
        "procedure_code": "1.001612",
        "receipt_number": "BN-1",
        "applicant": {"kind": "citizen", "name": "Nguyễn Văn A", "id_number": "049090001234"},
        "summary": "Cấp phiếu lý lịch tư pháp",
        "received_at": "2026-01-05T08:30:00+07:00",
        "due_at": "2026-01-15T17:00:00+07:00",
        "status": "received",
    }
    data.update(extra)
    return Dossier.model_validate(data)


def _pointers(exc: pytest.ExceptionInfo[ValidationFailed]) -> list[str]:
    return [e.pointer for e in exc.value.errors]


@pytest.mark.parametrize(
    "code",
    [
        "000.00.19.H47-260105-0001",
        "000.00.00.H47-991231-9999",
        "123.45.67.G01-240229-0042",  # 2024 is a leap year
    ],
)
def test_well_formed_dossier_codes(code: str) -> None:
    assert validate_dossier_code(code) == []
    parsed = parse_dossier_code(code)
    assert parsed is not None and dossier_unit(code) == parsed[0] == code.split("-")[0]


@pytest.mark.parametrize(
    ("code", "why"),
    [
        ("000.00.19.H47-260105-001", "3-digit sequence"),
        ("000.00.19.H47-260105-0000", "sequence 0"),
        ("000.00.19.H47-261305-0001", "month 13"),
        ("000.00.19.H47-250229-0001", "not a leap year"),
        ("00.00.19.H47-260105-0001", "short V part"),
        ("000.00.19.h47-260105-0001", "lower-case letter"),
        ("000.00.19.H4-260105-0001", "one digit after the letter"),
        ("000.00.19.H47/260105/0001", "wrong separators"),
        ("H47-260105-0001", "no agency part"),
        ("", "empty"),
    ],
)
def test_malformed_dossier_codes_are_refused(code: str, why: str) -> None:
    errors = validate_dossier_code(code, pointer="/code")
    assert [e.pointer for e in errors] == ["/code"], why


def test_unit_codes_come_from_configuration_not_code() -> None:
    assert validate_unit_code("000.00.19.H47", pointer="/u") == []
    assert validate_unit_code("000.00.19.H47", pointer="/u", known_units={"000.00.19.H47"}) == []
    [err] = validate_unit_code("000.00.19.H48", pointer="/u", known_units={"000.00.19.H47"})
    assert "configured" in err.message
    [err] = validate_unit_code("0.0.19.H47", pointer="/u")
    assert err.pointer == "/u"
    [err] = validate_dossier_code("000.00.20.H47-260105-0001", known_units={"000.00.19.H47"})
    assert err.pointer == "/code"


@pytest.mark.parametrize("code", ["1.001612", "1.000948.H38", "2.002163.H47"])
def test_procedure_codes(code: str) -> None:
    assert validate_procedure_code(code) == []


@pytest.mark.parametrize("code", ["1.00161", "1001612", "1.001612.h38", "1.001612.H3", "A.001612"])
def test_malformed_procedure_codes(code: str) -> None:
    [err] = validate_procedure_code(code)
    assert err.pointer == "/procedure_code"


def test_a_good_dossier_passes() -> None:
    validate_dossier(_dossier(), now=NOW)


@pytest.mark.parametrize(
    ("extra", "pointer"),
    [
        ({"code": "000.00.19.H47-260105-01"}, "/code"),
        ({"procedure_code": "1.1612"}, "/procedure_code"),
        ({"received_at": "2026-01-06T08:30:00+07:00"}, "/received_at"),  # not the code's date
        ({"due_at": "2026-01-04T08:00:00+07:00"}, "/due_at"),
        ({"status": "returned"}, "/returned_at"),  # returned needs its time
        ({"returned_at": "2026-01-10T08:00:00+07:00"}, "/returned_at"),  # only when returned
        (
            {"status": "returned", "returned_at": "2026-01-04T08:00:00+07:00"},
            "/returned_at",
        ),
        ({"applicant": {"name": "A", "id_number": "12345"}}, "/applicant/id_number"),
        (
            {"code": "000.00.19.H47-260305-0001", "received_at": "2026-03-05T09:00:00+07:00"},
            "/received_at",
        ),  # future
    ],
)
def test_bad_fields_are_named(extra: dict[str, Any], pointer: str) -> None:
    with pytest.raises(ValidationFailed) as exc:
        validate_dossier(_dossier(**extra), now=NOW)
    assert pointer in _pointers(exc)
    assert exc.value.status == 422


def test_an_enterprise_may_carry_a_tax_code() -> None:
    validate_dossier(
        _dossier(applicant={"kind": "enterprise", "name": "Công ty A", "id_number": "4000123456"}),
        now=NOW,
    )


def test_a_time_without_offset_is_the_portals_clock() -> None:
    d = _dossier(received_at="2026-01-05T23:30:00")  # 23:30 in Hanoi, still the 5th there
    validate_dossier(d, now=NOW)


def test_parse_model_turns_pydantic_errors_into_pointers() -> None:
    body = {
        "procedure_code": "1.001612",
        "receipt_number": "",
        "applicant": {"name": "A", "email": "not-an-email", "phone": "12"},
        "summary": "x",
        "received_at": "yesterday",
        "status": "lost",
        "fees": [{"name": "phí", "amount": -1}],
        "surprise": 1,
    }
    with pytest.raises(ValidationFailed) as exc:
        parse_model(DossierInput, body)
    pointers = set(_pointers(exc))
    assert {
        "/receipt_number",
        "/applicant/email",
        "/applicant/phone",
        "/received_at",
        "/status",
        "/fees/0/amount",
        "/surprise",
    } <= pointers


# ---------------------------------------------------------------- transitions


@pytest.mark.parametrize(
    ("history", "new"),
    [
        ([], S.RECEIVED),
        ([], S.REGISTERED),
        ([S.REGISTERED], S.RECEIVED),
        ([S.RECEIVED], S.PROCESSING),
        ([S.PROCESSING], S.SUPPLEMENT_REQUESTED),
        ([S.SUPPLEMENT_REQUESTED], S.PROCESSING),
        ([S.PROCESSING], S.PROCESSED),
        ([S.PROCESSED], S.RETURNED),
        ([S.RETURNED], S.RETURNED),  # re-sent to update other fields
        ([S.WITHDRAWN], S.WITHDRAWN),
        ([S.PROCESSING], S.WITHDRAWN),
        ([S.PROCESSING], S.STOPPED),
        ([S.REGISTERED], S.NOT_RECEIVED),
        ([S.REGISTERED, S.SUPPLEMENT_REQUESTED], S.RECEIVED),  # completed at intake
    ],
)
def test_possible_transitions(history: list[DossierStatus], new: DossierStatus) -> None:
    check_transition(history, new)


@pytest.mark.parametrize(
    ("history", "new", "why"),
    [
        ([], S.RETURNED, "returned before processed"),
        ([S.RECEIVED, S.PROCESSING], S.RETURNED, "returned before processed"),
        ([S.WITHDRAWN], S.PROCESSING, "anything after withdrawn"),
        ([S.WITHDRAWN], S.PROCESSED, "anything after withdrawn"),
        ([S.RETURNED], S.PROCESSING, "after returned"),
        ([S.NOT_RECEIVED], S.PROCESSING, "after refusal at intake"),
        ([S.PROCESSING], S.REGISTERED, "back to registered"),
        ([S.RECEIVED, S.PROCESSED], S.RECEIVED, "back to received once processed"),
        ([S.PROCESSED, S.PROCESSING], S.RECEIVED, "back to received once processed"),
        ([S.PROCESSING], S.NOT_RECEIVED, "refused at intake after processing began"),
    ],
)
def test_impossible_transitions_are_422_on_the_status(
    history: list[DossierStatus], new: DossierStatus, why: str
) -> None:
    with pytest.raises(ValidationFailed) as exc:
        check_transition(history, new)
    assert _pointers(exc) == ["/status"], why


def _progress(status: DossierStatus, minute: int) -> ProgressRecord:
    return ProgressRecord(
        officer_name="Cán bộ",
        content="xử lý",
        processed_at=datetime(2026, 1, 5, 9, minute, tzinfo=VN_TZ),
        status=status,
    )


def test_progress_transitions_name_the_record() -> None:
    records = [_progress(S.PROCESSING, 1), _progress(S.WITHDRAWN, 2), _progress(S.PROCESSING, 3)]
    with pytest.raises(ValidationFailed) as exc:
        check_progress_transitions([S.RECEIVED], records, pointer="/records")
    assert _pointers(exc) == ["/records/2/status"]
    history = check_progress_transitions([S.RECEIVED], records[:2])
    assert history == [S.RECEIVED, S.PROCESSING, S.WITHDRAWN]


def test_progress_dates() -> None:
    received = datetime(2026, 1, 5, 9, 0, tzinfo=VN_TZ)
    validate_progress(
        [_progress(S.PROCESSING, 1), _progress(S.PROCESSING, 2)], received_at=received, now=NOW
    )
    with pytest.raises(ValidationFailed) as exc:
        validate_progress(
            [_progress(S.PROCESSING, 5), _progress(S.PROCESSING, 2)], received_at=received, now=NOW
        )
    assert _pointers(exc) == ["/records/1/processed_at"]
    with pytest.raises(ValidationFailed) as exc:
        validate_progress(
            [_progress(S.PROCESSING, 1)], received_at=received + timedelta(hours=1), now=NOW
        )
    assert _pointers(exc) == ["/records/0/processed_at"]
