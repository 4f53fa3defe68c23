# ruff: noqa: N815  (the portal's own field names, mixedCase on the wire)
"""The national portal's wire models (its Vietnamese field names live only here) and the
mapping between them and the canonical dossier models.

Facts from DOMAIN.md ("National portal"): JSON over HTTPS; every call is a POST of
``{session, madonvi, service, ...}``; ``error_code`` 0 or "00" is success; dates are
``yyyyMMddHHmmss`` in Asia/Ho_Chi_Minh. Where the public description stops (the shape of a
document line, the codes of ``HinhThuc``), the choice is written next to the field and the
codes are adapter configuration.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from gateway.capabilities.dossiers import (
    VN_TZ,
    Applicant,
    ApplicantKind,
    Channel,
    Dossier,
    DossierStatus,
    Fee,
    FeeKind,
    Procedure,
    ProcedureChannel,
    ProcedureField,
    ProcedureSummary,
    ProgressRecord,
    ResultDocument,
    SubmittedDocument,
    SupplementRequest,
)

__all__ = [
    "APPLICANT_KIND_CODES",
    "DEFAULT_CHANNEL_CODES",
    "DEFAULT_STATUS_CODES",
    "FEE_KIND_CODES",
    "WIRE_DATE_FORMAT",
    "CallbackAttachment",
    "CallbackPush",
    "CatalogueEntry",
    "DinhDanh",
    "GiayToKetQua",
    "HoSo",
    "HoSoBoSung",
    "LePhi",
    "PortalReply",
    "ProcedureDetail",
    "TaiLieu",
    "TienDo",
    "WireMapping",
    "chunks",
    "format_wire_date",
    "is_success",
    "parse_wire_date",
]

WIRE_DATE_FORMAT = "%Y%m%d%H%M%S"

#: canonical status -> TrangThaiHoSo, the portal's published numbering
DEFAULT_STATUS_CODES: dict[str, str] = {
    DossierStatus.REGISTERED.value: "1",
    DossierStatus.RECEIVED.value: "2",
    DossierStatus.NOT_RECEIVED.value: "3",
    DossierStatus.PROCESSING.value: "4",
    DossierStatus.SUPPLEMENT_REQUESTED.value: "5",
    DossierStatus.PAYMENT_REQUESTED.value: "6",
    DossierStatus.WITHDRAWN.value: "7",
    DossierStatus.STOPPED.value: "8",
    DossierStatus.PROCESSED.value: "9",
    DossierStatus.RETURNED.value: "10",
}

#: canonical channel -> HinhThuc (not published: our default, configurable)
DEFAULT_CHANNEL_CODES: dict[str, str] = {
    Channel.IN_PERSON.value: "0",
    Channel.ONLINE.value: "1",
    Channel.POSTAL.value: "2",
}

#: LoaiDoiTuong: 1 citizen, 2 enterprise, 3 state agency, 4 other (published)
APPLICANT_KIND_CODES: dict[ApplicantKind, str] = {
    ApplicantKind.CITIZEN: "1",
    ApplicantKind.ENTERPRISE: "2",
    ApplicantKind.AGENCY: "3",
    ApplicantKind.OTHER: "4",
}

#: LoaiPhiLePhi: 1 fee (phí), 2 charge (lệ phí)
FEE_KIND_CODES: dict[FeeKind, str] = {FeeKind.FEE: "1", FeeKind.CHARGE: "2"}


def format_wire_date(value: datetime | None) -> str | None:
    if value is None:
        return None
    aware = value if value.tzinfo is not None else value.replace(tzinfo=VN_TZ)
    return aware.astimezone(VN_TZ).strftime(WIRE_DATE_FORMAT)


def parse_wire_date(value: str | None) -> datetime | None:
    """``yyyyMMddHHmmss`` Asia/Ho_Chi_Minh -> aware datetime; ValueError when malformed."""
    if value is None or value == "":
        return None
    if len(value) != 14 or not value.isdigit():
        raise ValueError(f"not a yyyyMMddHHmmss date: {value!r}")
    return datetime.strptime(value, WIRE_DATE_FORMAT).replace(tzinfo=VN_TZ)


def is_success(code: object) -> bool:
    """``error_code`` 0 or "00" (some deployments send "0")."""
    return code in (0, "0", "00")


class _Wire(BaseModel):
    # the portal adds fields over time: accept and ignore unknown ones in answers
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


# ---------------------------------------------------------------- envelope


class PortalReply(_Wire):
    error_code: int | str = 0
    message: str | None = None
    session: str | None = None
    result: Any = None

    @property
    def ok(self) -> bool:
        return is_success(self.error_code)


# ---------------------------------------------------------------- dossier record


class DinhDanh(_Wire):
    LoaiDinhDanh: str  # "1" 12-digit personal ID, "2" 9-digit legacy ID
    SoDinhDanh: str


class LePhi(_Wire):
    TenPhiLePhi: str
    MaPhiLePhi: str | None = None
    HinhThucThu: str | None = None
    Gia: int = Field(ge=0)
    LoaiPhiLePhi: str = "1"


class TaiLieu(_Wire):
    TepDinhKemId: str | None = None
    TenTepDinhKem: str
    MaThanhPhanHoSo: str | None = None
    DuongDanTaiTepTin: str | None = None


class GiayToKetQua(_Wire):
    TenGiayTo: str
    MaThanhPhanHoSo: str | None = None
    GiayToId: str | None = None
    DuongDanTepTinKetQua: str | None = None


class HoSoBoSung(_Wire):
    HoSoBoSungId: str
    NguoiYeuCauBoSung: str | None = None
    NoiDungBoSung: str
    NgayBoSung: str
    NgayTiepNhanBoSung: str | None = None
    NgayHenTraMoi: str | None = None


class HoSo(_Wire):
    """One dossier record of ``DongBoHoSoMC`` (and of a push from the national side)."""

    MaHoSo: str
    MaTTHC: str
    TenTTHC: str | None = None
    MaLinhVuc: str | None = None
    TenLinhVuc: str | None = None
    SoBienNhan: str
    ChuHoSo: str
    LoaiDoiTuong: str = "1"
    MaDoiTuong: str | None = None
    DinhDanhCHS: list[DinhDanh] = Field(default_factory=list)
    Email: str | None = None
    SoDienThoai: str | None = None
    TrichYeuHoSo: str
    NgayTiepNhan: str
    NgayHenTra: str | None = None
    TrangThaiHoSo: str
    NgayTra: str | None = None
    HinhThuc: str | None = None
    NgayKetThucXuLy: str | None = None
    DonViXuLy: str | None = None
    NoiNopHoSo: str | None = None
    #: "1" the dossier may be paid online, "0" not (not published: our choice)
    DuocThanhToanTrucTuyen: str = "0"
    TaiLieuNop: list[TaiLieu] = Field(default_factory=list)
    DanhSachLePhi: list[LePhi] = Field(default_factory=list)
    DanhSachGiayToKetQua: list[GiayToKetQua] = Field(default_factory=list)
    DanhSachHoSoBoSung: list[HoSoBoSung] = Field(default_factory=list)


class TienDo(_Wire):
    """One progress record of ``CapNhatTienDoHoSoMC``."""

    MaHoSo: str
    NguoiXuLy: str
    ChucDanh: str | None = None
    ThoiDiemXuLy: str
    PhongBanXuLy: str | None = None
    NoiDungXuLy: str
    TrangThai: str
    NgayBatDau: str | None = None
    NgayKetThucTheoQuyDinh: str | None = None


# ---------------------------------------------------------------- catalogue


class CatalogueEntry(_Wire):
    """One line of ``LayDanhSachTTHC``."""

    MaTTHC: str
    TenTTHC: str
    MaLinhVuc: str | None = None
    TenLinhVuc: str | None = None
    CapThucHien: str | None = None


class _LinhVuc(_Wire):
    MaLinhVuc: str
    TenLinhVuc: str


class _PhiLePhiThuTuc(_Wire):
    MaPhiLePhi: str | None = None
    TenPhiLePhi: str | None = None
    LoaiPhiLePhi: str = "1"
    Gia: int = 0
    MoTa: str | None = None


class _CachThuc(_Wire):
    KenhThucHien: str  # HinhThuc codes
    ThoiGianGiaiQuyet: float | None = None
    DonViTinh: str | None = None
    MoTa: str | None = None
    PhiLePhi: list[_PhiLePhiThuTuc] = Field(default_factory=list)


class _Ten(_Wire):
    Ten: str


class ProcedureDetail(_Wire):
    """The answer of ``LayThuTuc``."""

    MaTTHC: str
    TenTTHC: str
    CapThucHien: str | None = None
    LinhVuc: list[_LinhVuc] = Field(default_factory=list)
    TrinhTuThucHien: list[_Ten] = Field(default_factory=list)
    CachThucThucHien: list[_CachThuc] = Field(default_factory=list)
    ThanhPhanHoSo: list[_Ten] = Field(default_factory=list)
    CoQuanThucHien: list[_Ten] = Field(default_factory=list)
    CanCuPhapLy: list[_Ten] = Field(default_factory=list)
    KetQuaThucHien: list[_Ten] = Field(default_factory=list)
    DoiTuongThucHien: list[_Ten] = Field(default_factory=list)


# ---------------------------------------------------------------- our push contract


class CallbackAttachment(_Wire):
    tenTep: str = Field(min_length=1, max_length=255)
    loaiTep: str = "application/octet-stream"
    maThanhPhanHoSo: str | None = None
    #: the file, base64 (RFC 4648, standard alphabet, padded)
    noiDung: str


class CallbackPush(_Wire):
    """A dossier submitted on the national portal, pushed to the gateway (our contract)."""

    maGiaoDich: str = Field(min_length=1, max_length=100)
    maHoSo: str
    maTTHC: str
    maDonVi: str
    thoiGianGui: str
    hoSo: HoSo
    tepDinhKem: list[CallbackAttachment] = Field(default_factory=list, max_length=50)


# ---------------------------------------------------------------- mapping


def _invert(codes: Mapping[str, str]) -> dict[str, str]:
    return {wire: canonical for canonical, wire in codes.items()}


class WireMapping:
    """Canonical <-> wire, with the configured status and channel codes."""

    def __init__(
        self,
        status_codes: Mapping[str, str] | None = None,
        channel_codes: Mapping[str, str] | None = None,
    ) -> None:
        self.status_codes = dict(DEFAULT_STATUS_CODES)
        self.status_codes.update(status_codes or {})
        self.channel_codes = dict(DEFAULT_CHANNEL_CODES)
        self.channel_codes.update(channel_codes or {})
        self._status_back = _invert(self.status_codes)
        self._channel_back = _invert(self.channel_codes)

    def status_code(self, status: DossierStatus) -> str:
        return self.status_codes[status.value]

    def status(self, code: str) -> DossierStatus:
        try:
            return DossierStatus(self._status_back[str(code)])
        except KeyError:
            raise ValueError(f"unknown TrangThaiHoSo {code!r}") from None

    def channel(self, code: str | None) -> Channel:
        if code is None:
            return Channel.IN_PERSON
        try:
            return Channel(self._channel_back[str(code)])
        except KeyError:
            raise ValueError(f"unknown HinhThuc {code!r}") from None

    # dossiers ---------------------------------------------------------------------
    def dossier_to_wire(self, d: Dossier) -> HoSo:
        a = d.applicant
        ids: list[DinhDanh] = []
        subject_code: str | None = None
        if a.id_number:
            if a.kind is ApplicantKind.CITIZEN:
                kind = "1" if len(a.id_number) == 12 else "2"
                ids.append(DinhDanh(LoaiDinhDanh=kind, SoDinhDanh=a.id_number))
            else:
                subject_code = a.id_number
        return HoSo(
            MaHoSo=d.code,
            MaTTHC=d.procedure_code,
            TenTTHC=d.procedure_name,
            MaLinhVuc=d.field_code,
            TenLinhVuc=d.field_name,
            SoBienNhan=d.receipt_number,
            ChuHoSo=a.name,
            LoaiDoiTuong=APPLICANT_KIND_CODES[a.kind],
            MaDoiTuong=subject_code,
            DinhDanhCHS=ids,
            Email=a.email,
            SoDienThoai=a.phone,
            TrichYeuHoSo=d.summary,
            NgayTiepNhan=format_wire_date(d.received_at) or "",
            NgayHenTra=format_wire_date(d.due_at),
            TrangThaiHoSo=self.status_code(d.status),
            NgayTra=format_wire_date(d.returned_at),
            HinhThuc=self.channel_codes[d.channel.value],
            NgayKetThucXuLy=format_wire_date(d.finished_at),
            DonViXuLy=d.processing_unit,
            NoiNopHoSo=d.submitted_at_place,
            DuocThanhToanTrucTuyen="1" if d.online_payment else "0",
            TaiLieuNop=[
                TaiLieu(
                    TepDinhKemId=doc.file_id,
                    TenTepDinhKem=doc.name,
                    MaThanhPhanHoSo=doc.component_code,
                    DuongDanTaiTepTin=doc.url,
                )
                for doc in d.documents
            ],
            DanhSachLePhi=[
                LePhi(
                    TenPhiLePhi=f.name,
                    MaPhiLePhi=f.code,
                    HinhThucThu=f.method,
                    Gia=f.amount,
                    LoaiPhiLePhi=FEE_KIND_CODES[f.kind],
                )
                for f in d.fees
            ],
            DanhSachGiayToKetQua=[
                GiayToKetQua(
                    TenGiayTo=r.name,
                    MaThanhPhanHoSo=r.component_code,
                    GiayToId=r.file_id,
                    DuongDanTepTinKetQua=r.url,
                )
                for r in d.results
            ],
            DanhSachHoSoBoSung=[
                HoSoBoSung(
                    HoSoBoSungId=s.id,
                    NguoiYeuCauBoSung=s.requested_by,
                    NoiDungBoSung=s.content,
                    NgayBoSung=format_wire_date(s.requested_at) or "",
                    NgayTiepNhanBoSung=format_wire_date(s.received_at),
                    NgayHenTraMoi=format_wire_date(s.new_due_at),
                )
                for s in d.supplement_requests
            ],
        )

    def dossier_from_wire(self, w: HoSo) -> Dossier:
        """A wire record as a canonical dossier (ValueError/ValidationError when malformed)."""
        kinds = {code: kind for kind, code in APPLICANT_KIND_CODES.items()}
        fee_kinds = {code: kind for kind, code in FEE_KIND_CODES.items()}
        kind = kinds.get(w.LoaiDoiTuong, ApplicantKind.OTHER)
        id_number = w.DinhDanhCHS[0].SoDinhDanh if w.DinhDanhCHS else w.MaDoiTuong
        received = parse_wire_date(w.NgayTiepNhan)
        if received is None:
            raise ValueError("NgayTiepNhan is required")
        return Dossier(
            code=w.MaHoSo,
            procedure_code=w.MaTTHC,
            procedure_name=w.TenTTHC,
            field_code=w.MaLinhVuc,
            field_name=w.TenLinhVuc,
            receipt_number=w.SoBienNhan,
            applicant=Applicant(
                kind=kind, name=w.ChuHoSo, id_number=id_number, email=w.Email, phone=w.SoDienThoai
            ),
            summary=w.TrichYeuHoSo,
            received_at=received,
            due_at=parse_wire_date(w.NgayHenTra),
            returned_at=parse_wire_date(w.NgayTra),
            finished_at=parse_wire_date(w.NgayKetThucXuLy),
            status=self.status(w.TrangThaiHoSo),
            channel=self.channel(w.HinhThuc),
            online_payment=w.DuocThanhToanTrucTuyen in ("1", "True", "true"),
            processing_unit=w.DonViXuLy,
            submitted_at_place=w.NoiNopHoSo,
            fees=[
                Fee(
                    name=f.TenPhiLePhi,
                    code=f.MaPhiLePhi,
                    kind=fee_kinds.get(f.LoaiPhiLePhi, FeeKind.FEE),
                    amount=f.Gia,
                    method=f.HinhThucThu,
                )
                for f in w.DanhSachLePhi
            ],
            documents=[
                SubmittedDocument(
                    name=t.TenTepDinhKem,
                    component_code=t.MaThanhPhanHoSo,
                    file_id=t.TepDinhKemId,
                    url=t.DuongDanTaiTepTin,
                )
                for t in w.TaiLieuNop
            ],
            results=[
                ResultDocument(
                    name=g.TenGiayTo,
                    component_code=g.MaThanhPhanHoSo,
                    file_id=g.GiayToId,
                    url=g.DuongDanTepTinKetQua,
                )
                for g in w.DanhSachGiayToKetQua
            ],
            supplement_requests=[
                SupplementRequest(
                    id=b.HoSoBoSungId,
                    requested_by=b.NguoiYeuCauBoSung,
                    content=b.NoiDungBoSung,
                    requested_at=parse_wire_date(b.NgayBoSung) or received,
                    received_at=parse_wire_date(b.NgayTiepNhanBoSung),
                    new_due_at=parse_wire_date(b.NgayHenTraMoi),
                )
                for b in w.DanhSachHoSoBoSung
            ],
        )

    # progress ---------------------------------------------------------------------
    def progress_to_wire(self, code: str, r: ProgressRecord) -> TienDo:
        return TienDo(
            MaHoSo=code,
            NguoiXuLy=r.officer_name,
            ChucDanh=r.officer_title,
            ThoiDiemXuLy=format_wire_date(r.processed_at) or "",
            PhongBanXuLy=r.department,
            NoiDungXuLy=r.content,
            TrangThai=self.status_code(r.status),
            NgayBatDau=format_wire_date(r.started_at),
            NgayKetThucTheoQuyDinh=format_wire_date(r.due_at),
        )

    # catalogue --------------------------------------------------------------------
    @staticmethod
    def summary_from_wire(e: CatalogueEntry) -> ProcedureSummary:
        return ProcedureSummary(
            code=e.MaTTHC,
            name=e.TenTTHC,
            field_code=e.MaLinhVuc,
            field_name=e.TenLinhVuc,
            level=e.CapThucHien,
        )

    def procedure_from_wire(self, p: ProcedureDetail) -> Procedure:
        fee_kinds = {code: kind for kind, code in FEE_KIND_CODES.items()}
        channels: list[ProcedureChannel] = []
        for c in p.CachThucThucHien:
            try:
                channel = self.channel(c.KenhThucHien)
            except ValueError:
                continue  # a channel this deployment does not map: not offered here
            channels.append(
                ProcedureChannel(
                    channel=channel,
                    time_limit_days=c.ThoiGianGiaiQuyet,
                    time_limit_unit=c.DonViTinh,
                    description=c.MoTa,
                    fees=[
                        Fee(
                            name=f.TenPhiLePhi or f.MoTa or "Phí, lệ phí",
                            code=f.MaPhiLePhi,
                            kind=fee_kinds.get(f.LoaiPhiLePhi, FeeKind.FEE),
                            amount=f.Gia,
                        )
                        for f in c.PhiLePhi
                    ],
                )
            )
        first = p.LinhVuc[0] if p.LinhVuc else None
        return Procedure(
            code=p.MaTTHC,
            name=p.TenTTHC,
            field_code=first.MaLinhVuc if first else None,
            field_name=first.TenLinhVuc if first else None,
            level=p.CapThucHien,
            fields=[ProcedureField(code=f.MaLinhVuc, name=f.TenLinhVuc) for f in p.LinhVuc],
            steps=[s.Ten for s in p.TrinhTuThucHien],
            channels=channels,
            required_documents=[s.Ten for s in p.ThanhPhanHoSo],
            agencies=[s.Ten for s in p.CoQuanThucHien],
            legal_basis=[s.Ten for s in p.CanCuPhapLy],
            results=[s.Ten for s in p.KetQuaThucHien],
            applicant_kinds=[s.Ten for s in p.DoiTuongThucHien],
        )


def chunks(items: Sequence[Any], size: int) -> list[list[Any]]:
    """``items`` in consecutive chunks of at most ``size``."""
    return [list(items[i : i + size]) for i in range(0, len(items), size)]
