"""The portal simulator is strict the way the real portal is: its refusals, in-process."""

from __future__ import annotations

from typing import Any

import pytest

from adapters.national_portal.models import WireMapping
from adapters.national_portal.simulator import (
    ERR_CREDENTIALS,
    ERR_REJECTED,
    ERR_SESSION,
    MAX_PROGRESS_PER_CALL,
    PortalSimulator,
)
from gateway.capabilities.dossiers import Dossier

MADONVI = "000.00.00.H47"
CODE = "000.00.19.H47-260105-0001"


@pytest.fixture
def sim() -> PortalSimulator:
    return PortalSimulator(username="u", password="p", madonvi=MADONVI)


def _session(sim: PortalSimulator) -> str:
    reply = sim.login({"username": "u", "password": "p"})
    assert reply["error_code"] == 0
    return str(reply["session"])


def _record(**extra: Any) -> dict[str, Any]:
    dossier = Dossier.model_validate(
        {
            "code": CODE,
            "procedure_code": "1.001612",
            "receipt_number": "BN-1",
            "applicant": {"name": "A", "id_number": "049090001234"},
            "summary": "x",
            "received_at": "2026-01-05T08:00:00+07:00",
            "status": "received",
        }
    )
    wire = WireMapping().dossier_to_wire(dossier).model_dump(exclude_none=True)
    wire.update(extra)
    return wire


def _call(sim: PortalSimulator, service: str, **params: Any) -> dict[str, Any]:
    return sim.service({"session": _session(sim), "madonvi": MADONVI, "service": service, **params})


def _progress(status: str = "4", **extra: Any) -> dict[str, Any]:
    return {
        "MaHoSo": CODE,
        "NguoiXuLy": "Cán bộ",
        "ThoiDiemXuLy": "20260105090000",
        "NoiDungXuLy": "xử lý",
        "TrangThai": status,
        **extra,
    }


def test_login_and_sessions(sim: PortalSimulator) -> None:
    assert sim.login({"username": "u", "password": "x"})["error_code"] == ERR_CREDENTIALS
    session = _session(sim)
    ok = sim.service({"session": session, "madonvi": MADONVI, "service": "LayDanhSachTTHC"})
    assert ok["error_code"] == 0 and len(ok["result"]) >= 50
    sim.expire_sessions()
    gone = sim.service({"session": session, "madonvi": MADONVI, "service": "LayDanhSachTTHC"})
    assert gone["error_code"] == ERR_SESSION
    other = sim.service(
        {"session": _session(sim), "madonvi": "000.00.00.H48", "service": "LayThuTuc"}
    )
    assert other["error_code"] != 0
    assert _call(sim, "XoaHoSo")["error_code"] != 0


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"isUpdating": "yes", "data": [_record()]}, "isUpdating"),
        ({"isUpdating": "False", "data": []}, "data"),
        ({"isUpdating": "False", "data": [_record(MaHoSo="H47-260105-1")]}, "Mã hồ sơ"),
        (
            {"isUpdating": "False", "data": [_record(MaHoSo="000.00.19.H48-260105-0001")]},
            "không thuộc",
        ),
        ({"isUpdating": "False", "data": [_record(MaTTHC="1.16")]}, "định dạng"),
        ({"isUpdating": "False", "data": [_record(MaTTHC="9.999999")]}, "không tồn tại"),
        ({"isUpdating": "False", "data": [_record(NgayTiepNhan="2026-01-05")]}, "NgayTiepNhan"),
        ({"isUpdating": "False", "data": [_record(TrangThaiHoSo="11")]}, "Trạng thái"),
        ({"isUpdating": "False", "data": [_record(TrangThaiHoSo="10")]}, "không thể chuyển"),
        ({"isUpdating": "True", "data": [_record()]}, "không tồn tại"),
        ({"isUpdating": "False", "data": [{"MaHoSo": CODE}]}, "không hợp lệ"),
        ({"isUpdating": "False", "data": [_record(LoaiDoiTuong="9")]}, "LoaiDoiTuong"),
        ({"isUpdating": "False", "data": [_record(HinhThuc="7")]}, "HinhThuc"),
        (
            {"isUpdating": "False", "data": [_record(DuocThanhToanTrucTuyen="x")]},
            "DuocThanhToanTrucTuyen",
        ),
        (
            {
                "isUpdating": "False",
                "data": [
                    _record(
                        DanhSachLePhi=[{"TenPhiLePhi": "Lệ phí", "Gia": 1, "LoaiPhiLePhi": "5"}]
                    )
                ],
            },
            "LoaiPhiLePhi",
        ),
        (
            {
                "isUpdating": "False",
                "data": [
                    _record(
                        DanhSachHoSoBoSung=[
                            {"HoSoBoSungId": "1", "NoiDungBoSung": "x", "NgayBoSung": "05/01/2026"}
                        ]
                    )
                ],
            },
            "NgayBoSung",
        ),
        (
            {
                "isUpdating": "False",
                "data": [
                    _record(
                        DanhSachHoSoBoSung=[
                            {
                                "HoSoBoSungId": "1",
                                "NoiDungBoSung": "x",
                                "NgayBoSung": "20260105090000",
                                "NgayHenTraMoi": "sau",
                            }
                        ]
                    )
                ],
            },
            "NgayHenTraMoi",
        ),
    ],
)
def test_sync_refusals(sim: PortalSimulator, params: dict[str, Any], fragment: str) -> None:
    reply = _call(sim, "DongBoHoSoMC", **params)
    assert reply["error_code"] != 0
    assert fragment in reply["message"]
    assert sim.dossiers == {}


def test_sync_create_update_and_transitions(sim: PortalSimulator) -> None:
    assert _call(sim, "DongBoHoSoMC", isUpdating="False", data=[_record()])["error_code"] == 0
    again = _call(sim, "DongBoHoSoMC", isUpdating="False", data=[_record()])
    assert "đã tồn tại" in again["message"]
    assert _call(sim, "TraCuuHoSo", mahoso=CODE)["result"]["MaHoSo"] == CODE
    assert _call(sim, "TraCuuHoSo", mahoso="000.00.19.H47-260105-0002")["result"] is None
    assert _call(sim, "TraCuuHoSo", mahoso="bad")["error_code"] != 0
    withdrawn = _call(sim, "DongBoHoSoMC", isUpdating="True", data=[_record(TrangThaiHoSo="7")])
    assert withdrawn["error_code"] == 0
    after = _call(sim, "DongBoHoSoMC", isUpdating="True", data=[_record(TrangThaiHoSo="4")])
    assert "không thể chuyển" in after["message"]
    state = sim.dossier_state(CODE)
    assert state is not None and state["history"] == ["received", "withdrawn"]


def test_a_processed_dossier_cannot_go_back_to_received(sim: PortalSimulator) -> None:
    assert _call(sim, "DongBoHoSoMC", isUpdating="False", data=[_record()])["error_code"] == 0
    assert _call(sim, "CapNhatTienDoHoSoMC", data=[_progress("9")])["error_code"] == 0
    back = _call(sim, "DongBoHoSoMC", isUpdating="True", data=[_record(TrangThaiHoSo="2")])
    assert back["error_code"] == ERR_REJECTED and "không thể chuyển" in back["message"]
    back = _call(sim, "CapNhatTienDoHoSoMC", data=[_progress("2")])
    assert back["error_code"] == ERR_REJECTED
    state = sim.dossier_state(CODE)
    assert state is not None and state["history"] == ["received", "processed"]


def test_the_gateways_own_records_pass_every_code_list(sim: PortalSimulator) -> None:
    fees = [
        {"TenPhiLePhi": "Phí", "Gia": 1, "LoaiPhiLePhi": "1"},
        {"TenPhiLePhi": "Lệ phí", "Gia": 2, "LoaiPhiLePhi": "2"},
    ]
    extra = [{"HoSoBoSungId": "1", "NoiDungBoSung": "x", "NgayBoSung": "20260105090000"}]
    for n, (kind, channel) in enumerate(zip("1234", "0120", strict=True)):
        code = f"000.00.19.H47-260105-{n + 10:04d}"
        record = _record(
            MaHoSo=code,
            LoaiDoiTuong=kind,
            HinhThuc=channel,
            DuocThanhToanTrucTuyen=str(n % 2),
            DanhSachLePhi=fees,
            DanhSachHoSoBoSung=extra,
        )
        reply = _call(sim, "DongBoHoSoMC", isUpdating="False", data=[record])
        assert reply["error_code"] == 0, reply


def test_a_nationally_submitted_dossier_is_held_by_the_portal(sim: PortalSimulator) -> None:
    push = sim.sample_push(3)
    code = push["maHoSo"]
    state = sim.dossier_state(code)
    assert state is not None and state["history"] == ["registered"]
    assert _call(sim, "TraCuuHoSo", mahoso=code)["result"]["MaHoSo"] == code
    # the province receives it: an update, not a second create
    record = dict(push["hoSo"], TrangThaiHoSo="2")
    assert _call(sim, "DongBoHoSoMC", isUpdating="False", data=[record])["error_code"] != 0
    assert _call(sim, "DongBoHoSoMC", isUpdating="True", data=[record])["error_code"] == 0
    state = sim.dossier_state(code)
    assert state is not None and state["history"] == ["registered", "received"]


def test_progress_refusals_and_the_limit_of_ten(sim: PortalSimulator) -> None:
    assert "không tồn tại" in _call(sim, "CapNhatTienDoHoSoMC", data=[_progress()])["message"]
    _call(sim, "DongBoHoSoMC", isUpdating="False", data=[_record()])
    too_many = _call(sim, "CapNhatTienDoHoSoMC", data=[_progress()] * (MAX_PROGRESS_PER_CALL + 1))
    assert "tối đa 10" in too_many["message"]
    bad_date = _call(sim, "CapNhatTienDoHoSoMC", data=[_progress(ThoiDiemXuLy="hôm nay")])
    assert "ThoiDiemXuLy" in bad_date["message"]
    ok = _call(sim, "CapNhatTienDoHoSoMC", data=[_progress()] * MAX_PROGRESS_PER_CALL)
    assert ok["error_code"] == 0
    state = sim.dossier_state(CODE)
    assert state is not None and len(state["progress"]) == 10
    assert state["record"]["TrangThaiHoSo"] == "4"


def test_catalogue_services(sim: PortalSimulator) -> None:
    detail = _call(sim, "LayThuTuc", maTTHC="1.000948.H38")
    assert detail["error_code"] == 0 and detail["result"]["MaTTHC"] == "1.000948.H38"
    assert _call(sim, "LayThuTuc", maTTHC="9.999999")["error_code"] != 0
    assert _call(sim, "LayThuTuc", maTTHC="x")["error_code"] != 0
