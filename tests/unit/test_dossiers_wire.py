"""The national portal's wire models: dates, the configurable status mapping, round trips,
the push signature and the sample catalogue."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from adapters.national_portal.adapter import NationalPortalAdapter, NationalPortalConfig
from adapters.national_portal.callbacks import push_mac, sign_push, verify_push
from adapters.national_portal.models import (
    CallbackPush,
    ProcedureDetail,
    WireMapping,
    chunks,
    format_wire_date,
    is_success,
    parse_wire_date,
)
from adapters.national_portal.simulator import PortalSimulator, load_catalogue
from gateway.capabilities.dossiers import (
    PROCEDURE_CODE_PATTERN,
    VN_TZ,
    Dossier,
    DossierStatus,
    ProgressRecord,
)


def _dossier() -> Dossier:
    return Dossier.model_validate(
        {
            "code": "000.00.19.H47-260105-0001",
            "procedure_code": "1.001612",
            "procedure_name": "Cấp Phiếu lý lịch tư pháp",
            "receipt_number": "BN-1",
            "applicant": {
                "kind": "citizen",
                "name": "Nguyễn Văn A",
                "id_number": "049090001234",
                "email": "a@example.vn",
                "phone": "0905000111",
            },
            "summary": "x",
            "received_at": "2026-01-05T08:30:00+07:00",
            "due_at": "2026-01-15T17:00:00+07:00",
            "status": "processing",
            "channel": "postal",
            "online_payment": True,
            "fees": [{"name": "Phí", "code": "P1", "kind": "charge", "amount": 15000}],
            "documents": [{"name": "Tờ khai", "component_code": "TK", "file_id": "f1"}],
            "results": [{"name": "Phiếu", "file_id": "r1"}],
            "supplement_requests": [
                {
                    "id": "BS1",
                    "content": "Bổ sung bản sao",
                    "requested_at": "2026-01-06T09:00:00+07:00",
                }
            ],
        }
    )


def test_wire_dates_are_hanoi_time_without_offset() -> None:
    utc = datetime(2026, 1, 5, 1, 30, 0, tzinfo=UTC)
    assert format_wire_date(utc) == "20260105083000"
    back = parse_wire_date("20260105083000")
    assert back == utc and back is not None and back.utcoffset() == VN_TZ.utcoffset(back)
    assert format_wire_date(None) is None
    for bad in ("2026-01-05", "2026010508300", "2026010508300x"):
        with pytest.raises(ValueError, match="yyyyMMddHHmmss"):
            parse_wire_date(bad)


def test_error_codes() -> None:
    assert all(is_success(c) for c in (0, "0", "00"))
    assert not any(is_success(c) for c in (1, "01", "-1", None))


def test_dossier_round_trip_through_the_wire() -> None:
    mapping = WireMapping()
    dossier = _dossier()
    wire = mapping.dossier_to_wire(dossier)
    assert wire.TrangThaiHoSo == "4"
    assert wire.HinhThuc == "2"
    assert wire.LoaiDoiTuong == "1"
    assert wire.DinhDanhCHS[0].LoaiDinhDanh == "1"
    assert wire.DanhSachLePhi[0].LoaiPhiLePhi == "2"
    assert wire.DanhSachLePhi[0].Gia == 15000
    assert wire.NgayTiepNhan == "20260105083000"
    assert wire.DuocThanhToanTrucTuyen == "1"
    assert mapping.dossier_from_wire(wire) == dossier


def test_the_status_mapping_is_configuration() -> None:
    mapping = WireMapping(status_codes={"returned": "11", "processed": "10"})
    assert mapping.status_code(DossierStatus.RETURNED) == "11"
    assert mapping.status("10") is DossierStatus.PROCESSED
    with pytest.raises(ValueError, match="TrangThaiHoSo"):
        WireMapping().status("42")
    with pytest.raises(ValueError, match="same TrangThaiHoSo"):
        NationalPortalConfig(status_codes={"returned": "9"})
    with pytest.raises(ValueError, match="canonical status"):
        NationalPortalConfig(status_codes={"finished": "9"})


def test_a_nine_digit_legacy_id_and_an_enterprise() -> None:
    mapping = WireMapping()
    legacy = _dossier().model_copy(
        update={"applicant": _dossier().applicant.model_copy(update={"id_number": "123456789"})}
    )
    assert mapping.dossier_to_wire(legacy).DinhDanhCHS[0].LoaiDinhDanh == "2"
    firm = _dossier().model_copy(
        update={
            "applicant": _dossier().applicant.model_copy(
                update={"kind": "enterprise", "id_number": "4000123456"}
            )
        }
    )
    wire = mapping.dossier_to_wire(firm)
    assert wire.LoaiDoiTuong == "2" and wire.MaDoiTuong == "4000123456" and wire.DinhDanhCHS == []


def test_progress_to_wire() -> None:
    rec = ProgressRecord(
        officer_name="Cán bộ A",
        officer_title="Chuyên viên",
        department="Phòng TP",
        content="Thẩm định",
        processed_at=datetime(2026, 1, 6, 10, 0, tzinfo=VN_TZ),
        status=DossierStatus.PROCESSING,
    )
    wire = WireMapping().progress_to_wire("000.00.19.H47-260105-0001", rec)
    assert wire.ThoiDiemXuLy == "20260106100000"
    assert wire.TrangThai == "4"
    assert wire.NguoiXuLy == "Cán bộ A"


def test_chunks() -> None:
    assert [len(c) for c in chunks(list(range(25)), 10)] == [10, 10, 5]
    assert chunks([], 10) == []


def test_the_sample_catalogue_has_at_least_50_realistic_procedures() -> None:
    catalogue = load_catalogue()
    assert len(catalogue) >= 50
    mapping = WireMapping()
    for code, detail in catalogue.items():
        assert PROCEDURE_CODE_PATTERN.match(code)
        proc = mapping.procedure_from_wire(ProcedureDetail.model_validate(detail))
        assert proc.name.startswith("Thủ tục")
        assert proc.fields and proc.channels and proc.legal_basis and proc.required_documents
        assert all(c.time_limit_days and c.time_limit_days > 0 for c in proc.channels)
    assert any(c.endswith(".H38") for c in catalogue)  # a local variant
    assert any(
        line["Gia"] > 0
        for d in catalogue.values()
        for c in d["CachThucThucHien"]
        for line in c["PhiLePhi"]
    )


def test_the_push_signature() -> None:
    sim = PortalSimulator(username="u", password="p", madonvi="000.00.00.H47")
    raw = sim.sample_push(1)
    push = CallbackPush.model_validate(raw)
    body = json.dumps(raw).encode()
    headers = sign_push(b"k", body=body, push=push)
    sig = headers["X-DVCQG-Signature"]
    assert verify_push(b"k", body=body, push=push, signature=sig)
    assert verify_push(b"k", body=body, push=push, signature=sig.upper())
    assert not verify_push(b"other", body=body, push=push, signature=sig)
    assert not verify_push(b"k", body=body + b" ", push=push, signature=sig)
    assert not verify_push(b"k", body=body, push=push, signature=None)
    # the documented scheme: HMAC-SHA256 hex over the pipe-joined fields
    import hashlib
    import hmac

    assert push_mac(b"k", ["a", "b"]) == hmac.new(b"k", b"a|b", hashlib.sha256).hexdigest()
    assert len(sig) == 64


def test_the_simulator_names_the_service_for_sandbox_faults() -> None:
    op = NationalPortalAdapter.simulator_operation
    assert op("/national_portal/service", b'{"service": "DongBoHoSoMC"}') == "DongBoHoSoMC"
    assert op("/national_portal/login", b"{}") == "login"
    assert op("/national_portal/_state/summary", b"") == "summary"
