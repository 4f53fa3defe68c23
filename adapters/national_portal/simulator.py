"""A strict national portal, for the sandbox, the demo and the tests.

It speaks the wire protocol of DOMAIN.md ("National portal"): ``POST /login`` with
``{username, password}`` returns a session that expires; ``POST /service`` with
``{session, madonvi, service, ...}`` runs ``LayDanhSachTTHC``, ``LayThuTuc``, ``TraCuuHoSo``,
``DongBoHoSoMC`` and ``CapNhatTienDoHoSoMC``. Like the real portal it refuses malformed
dossier and procedure codes, unknown procedures, dossiers of another province, malformed
dates, codes outside their lists (``LoaiDoiTuong``, ``LoaiDinhDanh``, ``HinhThuc``,
``LoaiPhiLePhi``, ``DuocThanhToanTrucTuyen``, ``TrangThaiHoSo``), more than 10 progress records
per call, creating a dossier twice, updating one that does not exist, and status transitions
that cannot happen. Refusals are business answers:
HTTP 200 with a non-zero ``error_code`` and a Vietnamese ``message``.

Its state is inspectable and steerable by tests under ``/_state/...`` (the sandbox keeps
those paths local), and ``POST /_state/push`` pushes a dossier "submitted nationally" to the
gateway under our push contract (docs/adapters/national_portal.md).
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from importlib import resources
from typing import Any

import httpx
from litestar import Litestar, Request, Response, get, post
from litestar.datastructures import State
from pydantic import ValidationError

from adapters.national_portal.callbacks import PUSH_PATH, sign_push
from adapters.national_portal.models import (
    DEFAULT_CHANNEL_CODES,
    DEFAULT_STATUS_CODES,
    CallbackPush,
    DinhDanh,
    HoSo,
    TienDo,
    format_wire_date,
    parse_wire_date,
)
from gateway.capabilities.dossiers import (
    DOSSIER_CODE_PATTERN,
    PROCEDURE_CODE_PATTERN,
    VN_TZ,
    DossierStatus,
    check_transition,
    parse_dossier_code,
)
from gateway.errors import ValidationFailed

__all__ = [
    "ERR_BAD_REQUEST",
    "ERR_CREDENTIALS",
    "ERR_NOT_FOUND",
    "ERR_REJECTED",
    "ERR_SESSION",
    "PortalSimulator",
    "create_simulator_app",
    "load_catalogue",
    "push_to_gateway",
]

#: the simulator's error codes (the real portal's are not published; the adapter's
#: ``session_rejected_codes`` names the one meaning "log in again")
ERR_SESSION = "-1"
ERR_CREDENTIALS = "-2"
ERR_BAD_REQUEST = "1"
ERR_NOT_FOUND = "2"
ERR_REJECTED = "3"

MAX_PROGRESS_PER_CALL = 10

#: LoaiDoiTuong, published: 1 citizen, 2 enterprise, 3 state agency, 4 other
LOAI_DOI_TUONG = frozenset({"1", "2", "3", "4"})
#: not published for DanhSachLePhi, our choice (the payment platform's 1 fee / 2 charge)
LOAI_PHI_LE_PHI = frozenset({"1", "2"})
#: not published, our choice
DUOC_THANH_TOAN = frozenset({"0", "1"})

_STEPS = [
    "Tổ chức, cá nhân nộp hồ sơ trực tiếp, qua dịch vụ bưu chính hoặc trực tuyến",
    "Bộ phận một cửa tiếp nhận, kiểm tra tính đầy đủ của hồ sơ",
    "Cơ quan có thẩm quyền thẩm định, giải quyết hồ sơ",
    "Trả kết quả cho tổ chức, cá nhân",
]


def load_catalogue() -> dict[str, dict[str, Any]]:
    """The shipped sample catalogue as ``LayThuTuc`` answers, by procedure code."""
    raw = json.loads(
        resources.files("adapters.national_portal")
        .joinpath("data/procedures.json")
        .read_text(encoding="utf-8")
    )
    fields: dict[str, dict[str, Any]] = raw["fields"]
    catalogue: dict[str, dict[str, Any]] = {}
    for code, name, field_code, level, days, fees in raw["procedures"]:
        f = fields[field_code]
        fee_lines = [
            {"MaPhiLePhi": f"{code}-{i + 1}", "TenPhiLePhi": n, "LoaiPhiLePhi": str(k), "Gia": a}
            for i, (n, k, a) in enumerate(fees)
        ]
        channels = [
            {
                "KenhThucHien": "0",
                "ThoiGianGiaiQuyet": days,
                "DonViTinh": "Ngày làm việc",
                "MoTa": "Nộp trực tiếp tại Bộ phận một cửa",
                "PhiLePhi": fee_lines,
            },
            {
                "KenhThucHien": "1",
                "ThoiGianGiaiQuyet": days,
                "DonViTinh": "Ngày làm việc",
                "MoTa": "Nộp trực tuyến trên Cổng Dịch vụ công quốc gia",
                "PhiLePhi": fee_lines,
            },
            {
                "KenhThucHien": "2",
                "ThoiGianGiaiQuyet": days + 1,
                "DonViTinh": "Ngày làm việc",
                "MoTa": "Nộp qua dịch vụ bưu chính công ích",
                "PhiLePhi": fee_lines,
            },
        ]
        catalogue[code] = {
            "MaTTHC": code,
            "TenTTHC": name,
            "CapThucHien": level,
            "LinhVuc": [{"MaLinhVuc": field_code, "TenLinhVuc": f["name"]}],
            "TrinhTuThucHien": [{"Ten": s} for s in _STEPS],
            "CachThucThucHien": channels,
            "ThanhPhanHoSo": [{"Ten": d} for d in f["docs"]],
            "CoQuanThucHien": [{"Ten": f["agency"]}],
            "CanCuPhapLy": [{"Ten": t} for t in f["legal"]],
            "KetQuaThucHien": [{"Ten": f["result"]}],
            "DoiTuongThucHien": [{"Ten": "Công dân Việt Nam"}, {"Ten": "Tổ chức"}],
        }
    return catalogue


def _reply(code: str | int = 0, message: str = "Thành công", **extra: Any) -> dict[str, Any]:
    return {"error_code": code, "message": message, **extra}


class _Refused(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class _Dossier:
    record: dict[str, Any]
    #: canonical statuses, oldest first
    history: list[DossierStatus]
    created_at: float
    updated_at: float
    versions: int = 1


@dataclass
class PortalSimulator:
    """The portal's state and rules, independent of HTTP (the app below wraps it)."""

    username: str
    password: str
    #: the province's unit code; dossiers must belong to its province letter code
    madonvi: str
    session_ttl: float = 1800.0
    #: the HinhThuc codes it accepts (not published: the adapter's channel codes)
    channel_codes: frozenset[str] = frozenset(DEFAULT_CHANNEL_CODES.values())
    catalogue: dict[str, dict[str, Any]] = field(default_factory=load_catalogue)
    sessions: dict[str, float] = field(default_factory=dict)
    dossiers: dict[str, _Dossier] = field(default_factory=dict)
    progress: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    #: every accepted write, in arrival order: {service, MaHoSo, TrangThai, at}
    calls: list[dict[str, Any]] = field(default_factory=list)
    counters: dict[str, int] = field(default_factory=dict)
    logins: int = 0
    #: test hook, an outage in the middle of a run: {service: [calls let through, failures,
    #: HTTP status]} (the sandbox's faults hit the next calls; this one hits a later call)
    failures: dict[str, list[Any]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def fail_later(
        self,
        service: str,
        *,
        after: int,
        times: int = 1,
        status: int = 503,
        error_code: str | None = None,
    ) -> None:
        """Plan failures of a later call; ``error_code`` makes them business refusals (HTTP
        200 with that code, e.g. the portal "under maintenance") instead of HTTP ``status``."""
        with self._lock:
            self.failures[service] = [after, times, status, error_code]

    def take_failure(self, service: object) -> tuple[int, str | None] | None:
        """(HTTP status, error_code or None) this call must fail with, if planned."""
        with self._lock:
            plan = self.failures.get(str(service))
            if plan is None:
                return None
            if plan[0] > 0:
                plan[0] -= 1
                return None
            plan[1] -= 1
            if plan[1] <= 0:
                del self.failures[str(service)]
            return int(plan[2]), plan[3]

    # sessions ---------------------------------------------------------------------
    def login(self, body: Mapping[str, Any]) -> dict[str, Any]:
        user, pwd = body.get("username"), body.get("password")
        if not isinstance(user, str) or not isinstance(pwd, str):
            return _reply(ERR_BAD_REQUEST, "Thiếu tên đăng nhập hoặc mật khẩu")
        if not (
            secrets.compare_digest(user, self.username)
            and secrets.compare_digest(pwd, self.password)
        ):
            return _reply(ERR_CREDENTIALS, "Tên đăng nhập hoặc mật khẩu không đúng")
        token = secrets.token_urlsafe(24)
        with self._lock:
            now = time.time()
            self.sessions = {t: exp for t, exp in self.sessions.items() if exp > now}
            self.sessions[token] = now + self.session_ttl
            self.logins += 1
        return _reply(0, "Đăng nhập thành công", session=token)

    def expire_sessions(self) -> int:
        with self._lock:
            n = len(self.sessions)
            self.sessions.clear()
            return n

    def _check_session(self, token: object) -> None:
        if not isinstance(token, str):
            raise _Refused(ERR_SESSION, "Thiếu session")
        expires = self.sessions.get(token)
        if expires is None or expires <= time.time():
            raise _Refused(ERR_SESSION, "Phiên làm việc không hợp lệ hoặc đã hết hạn")

    # dispatch ---------------------------------------------------------------------
    def service(self, body: Mapping[str, Any]) -> dict[str, Any]:
        name = body.get("service")
        try:
            self._check_session(body.get("session"))
            madonvi = body.get("madonvi")
            if madonvi != self.madonvi:
                raise _Refused(ERR_BAD_REQUEST, "Mã đơn vị không đúng với tài khoản")
            handler = _SERVICES.get(str(name))
            if handler is None:
                raise _Refused(ERR_BAD_REQUEST, f"Dịch vụ không tồn tại: {name}")
            with self._lock:
                self.counters[str(name)] = self.counters.get(str(name), 0) + 1
                answer: dict[str, Any] = handler(self, body)
                return answer
        except _Refused as exc:
            return _reply(exc.code, exc.message)

    # catalogue --------------------------------------------------------------------
    def _list_procedures(self, body: Mapping[str, Any]) -> dict[str, Any]:
        items = [
            {
                "MaTTHC": p["MaTTHC"],
                "TenTTHC": p["TenTTHC"],
                "MaLinhVuc": p["LinhVuc"][0]["MaLinhVuc"] if p["LinhVuc"] else None,
                "TenLinhVuc": p["LinhVuc"][0]["TenLinhVuc"] if p["LinhVuc"] else None,
                "CapThucHien": p.get("CapThucHien"),
            }
            for p in self.catalogue.values()
        ]
        return _reply(result=items)

    def _procedure(self, body: Mapping[str, Any]) -> dict[str, Any]:
        code = body.get("maTTHC")
        if not isinstance(code, str) or not PROCEDURE_CODE_PATTERN.match(code):
            raise _Refused(ERR_BAD_REQUEST, "Mã TTHC không đúng định dạng")
        detail = self.catalogue.get(code)
        if detail is None:
            raise _Refused(ERR_NOT_FOUND, f"Không tìm thấy thủ tục hành chính {code}")
        return _reply(result=detail)

    # dossiers ---------------------------------------------------------------------
    def _check_code(self, code: object) -> str:
        if not isinstance(code, str) or parse_dossier_code(code) is None:
            raise _Refused(ERR_BAD_REQUEST, f"Mã hồ sơ không đúng định dạng: {code!r}")
        m = DOSSIER_CODE_PATTERN.match(code)
        assert m is not None
        if m["unit"][-3:] != self.madonvi[-3:]:
            raise _Refused(ERR_REJECTED, f"Hồ sơ {code} không thuộc đơn vị {self.madonvi}")
        return code

    def _lookup(self, body: Mapping[str, Any]) -> dict[str, Any]:
        code = self._check_code(body.get("mahoso"))
        found = self.dossiers.get(code)
        return _reply(result=dict(found.record) if found else None)

    def _status(self, code: object) -> DossierStatus:
        back = {v: k for k, v in DEFAULT_STATUS_CODES.items()}
        if str(code) not in back:
            raise _Refused(ERR_BAD_REQUEST, f"Trạng thái hồ sơ không hợp lệ: {code!r}")
        return DossierStatus(back[str(code)])

    @staticmethod
    def _date(value: object, name: str, *, required: bool = False) -> datetime | None:
        if value in (None, ""):
            if required:
                raise _Refused(ERR_BAD_REQUEST, f"Thiếu {name}")
            return None
        try:
            return parse_wire_date(str(value))
        except ValueError:
            raise _Refused(ERR_BAD_REQUEST, f"{name} không đúng định dạng yyyyMMddHHmmss") from None

    def _check_codes(self, record: HoSo) -> None:
        """The code lists of a dossier record, and the dates of its supplement requests."""

        def one_of(value: object, allowed: Collection[str], name: str) -> None:
            if value is not None and str(value) not in allowed:
                raise _Refused(ERR_BAD_REQUEST, f"{name} không hợp lệ: {value!r}")

        one_of(record.LoaiDoiTuong, LOAI_DOI_TUONG, "LoaiDoiTuong")
        one_of(record.HinhThuc, self.channel_codes, "HinhThuc")
        one_of(record.DuocThanhToanTrucTuyen, DUOC_THANH_TOAN, "DuocThanhToanTrucTuyen")
        for fee in record.DanhSachLePhi:
            one_of(fee.LoaiPhiLePhi, LOAI_PHI_LE_PHI, "LoaiPhiLePhi")
        for extra in record.DanhSachHoSoBoSung:
            self._date(extra.NgayBoSung, "NgayBoSung", required=True)
            self._date(extra.NgayTiepNhanBoSung, "NgayTiepNhanBoSung")
            self._date(extra.NgayHenTraMoi, "NgayHenTraMoi")

    def _transition(self, history: list[DossierStatus], new: DossierStatus, code: str) -> None:
        try:
            check_transition(history, new)
        except ValidationFailed:
            current = history[-1].value if history else "(mới)"
            raise _Refused(
                ERR_REJECTED,
                f"Hồ sơ {code}: không thể chuyển trạng thái từ {current} sang {new.value}",
            ) from None

    def _sync(self, body: Mapping[str, Any]) -> dict[str, Any]:
        updating = body.get("isUpdating")
        if updating not in ("True", "False"):
            raise _Refused(ERR_BAD_REQUEST, 'isUpdating phải là "True" hoặc "False"')
        data = body.get("data")
        if not isinstance(data, list) or not data:
            raise _Refused(ERR_BAD_REQUEST, "data phải là danh sách hồ sơ")
        staged: list[tuple[str, dict[str, Any], list[DossierStatus]]] = []
        for item in data:
            try:
                record = HoSo.model_validate(item)
            except ValidationError as exc:
                loc = ".".join(str(p) for p in exc.errors()[0]["loc"])
                raise _Refused(ERR_BAD_REQUEST, f"Dữ liệu hồ sơ không hợp lệ: {loc}") from None
            code = self._check_code(record.MaHoSo)
            if not PROCEDURE_CODE_PATTERN.match(record.MaTTHC):
                raise _Refused(ERR_BAD_REQUEST, f"Mã TTHC không đúng định dạng: {record.MaTTHC}")
            if record.MaTTHC not in self.catalogue:
                raise _Refused(ERR_REJECTED, f"Mã TTHC {record.MaTTHC} không tồn tại")
            received = self._date(record.NgayTiepNhan, "NgayTiepNhan", required=True)
            assert received is not None
            due = self._date(record.NgayHenTra, "NgayHenTra")
            self._date(record.NgayTra, "NgayTra")
            self._date(record.NgayKetThucXuLy, "NgayKetThucXuLy")
            if due is not None and due < received:
                raise _Refused(ERR_REJECTED, "NgayHenTra trước NgayTiepNhan")
            self._check_codes(record)
            for ident in record.DinhDanhCHS:
                width = {"1": 12, "2": 9}.get(ident.LoaiDinhDanh)
                if (
                    width is None
                    or len(ident.SoDinhDanh) != width
                    or not ident.SoDinhDanh.isdigit()
                ):
                    raise _Refused(ERR_BAD_REQUEST, "Số định danh chủ hồ sơ không hợp lệ")
            status = self._status(record.TrangThaiHoSo)
            existing = self.dossiers.get(code)
            if updating == "False" and existing is not None:
                raise _Refused(ERR_REJECTED, f"Hồ sơ {code} đã tồn tại")
            if updating == "True" and existing is None:
                raise _Refused(ERR_NOT_FOUND, f"Hồ sơ {code} không tồn tại")
            history = list(existing.history) if existing else []
            self._transition(history, status, code)
            if not history or history[-1] is not status:
                history.append(status)
            staged.append((code, record.model_dump(), history))
        now = time.time()
        for code, stored, history in staged:  # all or nothing, like one transaction
            existing = self.dossiers.get(code)
            if existing is None:
                self.dossiers[code] = _Dossier(stored, history, now, now)
            else:
                existing.record, existing.history = stored, history
                existing.updated_at, existing.versions = now, existing.versions + 1
            self.calls.append(
                {
                    "service": "DongBoHoSoMC",
                    "MaHoSo": code,
                    "TrangThai": stored["TrangThaiHoSo"],
                    "isUpdating": updating,
                    "at": now,
                }
            )
        return _reply(message=f"Đồng bộ thành công {len(staged)} hồ sơ")

    def _progress(self, body: Mapping[str, Any]) -> dict[str, Any]:
        data = body.get("data")
        if not isinstance(data, list) or not data:
            raise _Refused(ERR_BAD_REQUEST, "data phải là danh sách tiến độ")
        if len(data) > MAX_PROGRESS_PER_CALL:
            raise _Refused(
                ERR_BAD_REQUEST,
                f"Mỗi lần gửi tối đa {MAX_PROGRESS_PER_CALL} bản ghi tiến độ ({len(data)})",
            )
        staged: list[tuple[str, dict[str, Any], DossierStatus]] = []
        histories: dict[str, list[DossierStatus]] = {}
        for item in data:
            try:
                rec = TienDo.model_validate(item)
            except ValidationError as exc:
                loc = ".".join(str(p) for p in exc.errors()[0]["loc"])
                raise _Refused(ERR_BAD_REQUEST, f"Dữ liệu tiến độ không hợp lệ: {loc}") from None
            code = self._check_code(rec.MaHoSo)
            dossier = self.dossiers.get(code)
            if dossier is None:
                raise _Refused(ERR_NOT_FOUND, f"Hồ sơ {code} không tồn tại")
            self._date(rec.ThoiDiemXuLy, "ThoiDiemXuLy", required=True)
            self._date(rec.NgayBatDau, "NgayBatDau")
            self._date(rec.NgayKetThucTheoQuyDinh, "NgayKetThucTheoQuyDinh")
            status = self._status(rec.TrangThai)
            history = histories.setdefault(code, list(dossier.history))
            self._transition(history, status, code)
            if history[-1] is not status:
                history.append(status)
            staged.append((code, rec.model_dump(), status))
        now = time.time()
        for code, history in histories.items():
            dossier = self.dossiers[code]
            dossier.history = history
            dossier.record["TrangThaiHoSo"] = DEFAULT_STATUS_CODES[history[-1].value]
            dossier.updated_at = now
        for code, line, _status in staged:
            self.progress.setdefault(code, []).append(line)
            self.calls.append(
                {
                    "service": "CapNhatTienDoHoSoMC",
                    "MaHoSo": code,
                    "TrangThai": line["TrangThai"],
                    "chunk": len(data),
                    "at": now,
                }
            )
        return _reply(message=f"Cập nhật thành công {len(staged)} bản ghi tiến độ")

    # inspection -------------------------------------------------------------------
    def dossier_state(self, code: str) -> dict[str, Any] | None:
        with self._lock:
            d = self.dossiers.get(code)
            if d is None:
                return None
            return {
                "record": d.record,
                "history": [s.value for s in d.history],
                "versions": d.versions,
                "progress": list(self.progress.get(code, [])),
            }

    def calls_of(self, code: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [c for c in self.calls if code is None or c["MaHoSo"] == code]

    # the national side's own dossiers ---------------------------------------------
    def sample_push(self, seq: int, *, message_id: str | None = None) -> dict[str, Any]:
        """A dossier "submitted on the national portal" today, with one PDF-like file; the
        portal keeps it (status registered) like the dossiers the province syncs."""
        now = datetime.now(VN_TZ).replace(microsecond=0)
        unit = self.madonvi.rsplit(".", 1)[0][:-2] + "19." + self.madonvi.rsplit(".", 1)[1]
        code = f"{unit}-{now:%y%m%d}-{9000 + seq % 1000:04d}"
        procedure = self.catalogue.get("1.001612") or next(iter(self.catalogue.values()))
        record = HoSo(
            MaHoSo=code,
            MaTTHC=procedure["MaTTHC"],
            TenTTHC=procedure["TenTTHC"],
            SoBienNhan=f"DVCQG-{now:%y%m%d}-{seq:05d}",
            ChuHoSo="Nguyễn Văn An",
            LoaiDoiTuong="1",
            DinhDanhCHS=[DinhDanh(LoaiDinhDanh="1", SoDinhDanh="049090001234")],
            Email="an.nguyen@example.vn",
            SoDienThoai="0905123456",
            TrichYeuHoSo="Đề nghị cấp Phiếu lý lịch tư pháp số 1",
            NgayTiepNhan=format_wire_date(now) or "",
            NgayHenTra=format_wire_date(now + timedelta(days=10)),
            TrangThaiHoSo="1",
            HinhThuc="1",
            NoiNopHoSo="Cổng Dịch vụ công quốc gia",
            DuocThanhToanTrucTuyen="1",
        )
        with self._lock:
            # submitted nationally: the portal holds it, so the province's sync is an update
            stamp = time.time()
            self.dossiers.setdefault(
                code, _Dossier(record.model_dump(), [DossierStatus.REGISTERED], stamp, stamp)
            )
        content = b"%PDF-1.4\n% sample national dossier attachment\n" + code.encode() + b"\n%%EOF\n"
        return {
            "maGiaoDich": message_id or f"DVCQG-{code}-{seq}",
            "maHoSo": code,
            "maTTHC": record.MaTTHC,
            "maDonVi": unit,
            "thoiGianGui": format_wire_date(now) or "",
            "hoSo": record.model_dump(),
            "tepDinhKem": [
                {
                    "tenTep": "to-khai.pdf",
                    "loaiTep": "application/pdf",
                    "maThanhPhanHoSo": "TK01",
                    "noiDung": base64.b64encode(content).decode("ascii"),
                }
            ],
        }


_SERVICES: dict[str, Any] = {
    "LayDanhSachTTHC": PortalSimulator._list_procedures,
    "LayThuTuc": PortalSimulator._procedure,
    "TraCuuHoSo": PortalSimulator._lookup,
    "DongBoHoSoMC": PortalSimulator._sync,
    "CapNhatTienDoHoSoMC": PortalSimulator._progress,
}


async def push_to_gateway(
    sim: PortalSimulator,
    push: Mapping[str, Any],
    *,
    gateway_url: str,
    api_key: str,
    hmac_key: bytes,
    timeout: float = 10.0,  # noqa: ASYNC109
) -> httpx.Response:
    """POST one push to the gateway as the portal would: our contract, signed."""
    parsed = CallbackPush.model_validate(push)  # the simulator sends only valid pushes
    body = json.dumps(parsed.model_dump(exclude_none=True), ensure_ascii=False).encode("utf-8")
    headers = sign_push(hmac_key, body=body, push=parsed)
    headers["Authorization"] = f"Bearer {api_key}"
    headers["Content-Type"] = "application/json"
    async with httpx.AsyncClient(timeout=timeout) as client:
        return await client.post(gateway_url.rstrip("/") + PUSH_PATH, content=body, headers=headers)


def create_simulator_app(
    sim: PortalSimulator,
    *,
    gateway_url: str | None = None,
    push_api_key: str | None = None,
    hmac_key: bytes = b"",
    login_path: str = "/login",
    service_path: str = "/service",
) -> Litestar:
    """The portal over HTTP; ``app.state.portal`` is the simulator object."""

    @post(login_path, status_code=200)
    async def login(data: dict[str, Any]) -> dict[str, Any]:
        return sim.login(data)

    @post(service_path, status_code=200)
    async def service(request: Request[Any, Any, Any]) -> dict[str, Any] | Response[Any]:
        try:
            body = json.loads(await request.body())
        except ValueError:
            return _reply(ERR_BAD_REQUEST, "Yêu cầu không phải JSON")
        if not isinstance(body, dict):
            return _reply(ERR_BAD_REQUEST, "Yêu cầu phải là một đối tượng JSON")
        outage = sim.take_failure(body.get("service"))
        if outage is not None:
            status, error_code = outage
            if error_code is not None:
                return _reply(error_code, "Hệ thống đang bảo trì, vui lòng thử lại sau")
            return Response({"message": "Service Unavailable"}, status_code=status)
        return sim.service(body)

    @get("/_state/dossiers/{code:str}")
    async def state_dossier(code: str) -> dict[str, Any]:
        found = sim.dossier_state(code)
        return {"found": found is not None, "dossier": found}

    @get("/_state/calls")
    async def state_calls(code: str | None = None) -> dict[str, Any]:
        return {"items": sim.calls_of(code)}

    @get("/_state/summary")
    async def state_summary() -> dict[str, Any]:
        return {
            "dossiers": len(sim.dossiers),
            "procedures": len(sim.catalogue),
            "sessions": len(sim.sessions),
            "logins": sim.logins,
            "calls": len(sim.calls),
            "services": dict(sim.counters),
        }

    @post("/_state/sessions/expire", status_code=200)
    async def expire() -> dict[str, Any]:
        return {"expired": sim.expire_sessions()}

    @post("/_state/fail", status_code=200)
    async def fail(data: dict[str, Any]) -> dict[str, Any]:
        """Fail a later call of a service: ``{service, after, times, status, error_code}``."""
        code = data.get("error_code")
        sim.fail_later(
            str(data["service"]),
            after=int(data.get("after", 0)),
            times=int(data.get("times", 1)),
            status=int(data.get("status", 503)),
            error_code=None if code is None else str(code),
        )
        return {"failures": sim.failures}

    @post("/_state/session-ttl", status_code=200)
    async def session_ttl(data: dict[str, Any]) -> dict[str, Any]:
        sim.session_ttl = float(data["seconds"])
        return {"session_ttl": sim.session_ttl}

    @post("/_state/procedures", status_code=200)
    async def add_procedure(data: dict[str, Any]) -> dict[str, Any]:
        code = str(data.get("MaTTHC", ""))
        if not PROCEDURE_CODE_PATTERN.match(code):
            return _reply(ERR_BAD_REQUEST, "Mã TTHC không đúng định dạng")
        detail = {"LinhVuc": [], "CachThucThucHien": [], **data}
        with sim._lock:
            sim.catalogue[code] = detail
        return _reply(message=f"Đã thêm thủ tục {code}")

    @post("/_state/push", status_code=200)
    async def push(data: dict[str, Any]) -> dict[str, Any]:
        """Push a nationally submitted dossier to the gateway. Body: ``push`` (a full push,
        optional), ``seq``, ``message_id``, ``api_key`` (else the configured one), ``times``."""
        target = data.get("gateway_url") or gateway_url
        key = data.get("api_key") or push_api_key
        if not target or not key:
            return _reply(ERR_BAD_REQUEST, "gateway_url and api_key are needed to push")
        body = data.get("push") or sim.sample_push(
            int(data.get("seq", 1)), message_id=data.get("message_id")
        )
        answers = []
        for _ in range(int(data.get("times", 1))):
            resp = await push_to_gateway(
                sim, body, gateway_url=str(target), api_key=str(key), hmac_key=hmac_key
            )
            try:
                answer: Any = resp.json()
            except ValueError:
                answer = resp.text
            answers.append({"status": resp.status_code, "body": answer})
        return {"maHoSo": body["maHoSo"], "answers": answers}

    app = Litestar(
        route_handlers=[
            login,
            service,
            state_dossier,
            state_calls,
            state_summary,
            expire,
            fail,
            session_ttl,
            add_procedure,
            push,
        ],
        state=State({"portal": sim}),
        # logging is the gateway's (gateway.observability); Litestar's default would replace
        # the process's handlers and drop the PII masking
        logging_config=None,
        openapi_config=None,
        debug=False,
    )
    return app
