"""Wire models of the National Population Database (namespace ``http://dancuquocgia.bca``).

The Vietnamese field names of the protocol live here and nowhere else: ``adapter.py`` maps
them to the canonical models of ``gateway.capabilities.identity``. The XML shapes are those of
``wsdl/dancuquocgia.xsd``; :func:`request_from_xml` and :func:`response_to_xml` are the
simulator's side of the wire (the gateway's side is zeep, built from the same WSDL).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lxml import etree
from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "NS",
    "OPERATION",
    "SOAP_ACTION",
    "SOAP_ENV_NS",
    "WSDL_DIR",
    "WSDL_PATH",
    "XSD_PATH",
    "ChuHoType",
    "CongDan",
    "DiaChiType",
    "HoVaTenType",
    "KetQuaTraCuu",
    "MaLoi",
    "NguoiThanType",
    "YeuCauTraCuu",
    "request_from_xml",
    "request_to_xml",
    "response_from_xml",
    "response_to_xml",
]

NS = "http://dancuquocgia.bca"
SOAP_ENV_NS = "http://schemas.xmlsoap.org/soap/envelope/"
OPERATION = "TraCuuThongTinCongDan"
SOAP_ACTION = f"{NS}/{OPERATION}"
WSDL_DIR = Path(__file__).with_name("wsdl")
WSDL_PATH = WSDL_DIR / "dancuquocgia.wsdl"
XSD_PATH = WSDL_DIR / "dancuquocgia.xsd"


class MaLoi:
    """Result codes (``MaLoi``). 004 and 005 are the published ones; the rest are ours."""

    THANH_CONG = "000"  # answered (an empty collection: no such citizen)
    YEU_CAU_KHONG_HOP_LE = "001"  # the request broke the schema
    MA_TICH_HOP_SAI = "002"  # unknown integration code
    DON_VI_CHUA_DANG_KY = "003"  # the unit is not registered
    THU_TUC_CHUA_DUOC_CAP_PHEP = "004"  # the procedure is not licensed to query
    CAN_BO_KHONG_DUOC_PHEP = "005"  # the officer is not permitted


class _Wire(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class YeuCauTraCuu(_Wire):
    """``TraCuuThongTinCongDan``: the request, fields in wire order."""

    MaYeuCau: str = Field(min_length=1, max_length=40)
    MaDVC: str = Field(min_length=1, max_length=20)
    MaTichHop: str = Field(pattern=r"^[0-9]{1,20}$")
    MaDonVi: str = Field(min_length=1, max_length=50)
    MaCanBo: str = Field(min_length=1, max_length=50)
    SoDinhDanh: str | None = Field(None, pattern=r"^[0-9]{12}$")
    SoCMND: str | None = Field(None, pattern=r"^[0-9]{9}$")
    HoVaTen: str | None = Field(None, min_length=1, max_length=100)
    #: ``yyyyMMdd`` or ``yyyy``
    NgayThangNamSinh: str | None = Field(None, pattern=r"^[0-9]{4}([0-9]{4})?$")

    def zeep_arguments(self) -> dict[str, Any]:
        """Keyword arguments of zeep's service call (absent optionals left out)."""
        return self.model_dump(exclude_none=True)


class HoVaTenType(_Wire):
    Ho: str
    ChuDem: str | None = None
    Ten: str

    def day_du(self) -> str:
        """The full name as written: family, middle, given."""
        return " ".join(p for p in (self.Ho, self.ChuDem, self.Ten) if p)


class DiaChiType(_Wire):
    MaTinhThanh: str | None = None
    MaQuanHuyen: str | None = None
    MaPhuongXa: str | None = None
    ChiTiet: str | None = None


class NguoiThanType(_Wire):
    HoVaTen: HoVaTenType
    SoDinhDanh: str | None = None


class ChuHoType(NguoiThanType):
    QuanHe: str | None = None


class CongDan(_Wire):
    SoDinhDanh: str
    SoCMND: str | None = None
    HoVaTen: HoVaTenType
    NgayThangNamSinh: str
    #: 1 male, 2 female
    GioiTinh: str
    QuocTich: str | None = None
    DanToc: str | None = None
    TonGiao: str | None = None
    ThuongTru: DiaChiType | None = None
    NoiOHienTai: DiaChiType | None = None
    NhomMau: str | None = None
    TinhTrangHonNhan: str | None = None
    Cha: NguoiThanType | None = None
    Me: NguoiThanType | None = None
    VoChong: NguoiThanType | None = None
    ChuHo: ChuHoType | None = None
    SoSoHoKhau: str | None = None


class KetQuaTraCuu(_Wire):
    """``TraCuuThongTinCongDanResponse``."""

    MaYeuCau: str
    MaLoi: str
    MoTaLoi: str | None = None
    CongdanCollection: list[CongDan] = Field(default_factory=list)


# ---------------------------------------------------------------- XML (the simulator's side)


def _q(name: str) -> str:
    return f"{{{NS}}}{name}"


def _append(parent: etree._Element, name: str, value: Any) -> None:
    """Append ``value`` (a model, a string or None) as element ``name``, in schema order."""
    if value is None:
        return
    child = etree.SubElement(parent, _q(name))
    if isinstance(value, BaseModel):
        for field_name in type(value).model_fields:
            _append(child, field_name, getattr(value, field_name))
    else:
        child.text = str(value)


def _children(element: etree._Element) -> Iterator[tuple[str, etree._Element]]:
    for child in element:
        if not isinstance(child.tag, str):
            continue  # comments, processing instructions
        qname = etree.QName(child)
        if qname.namespace != NS:
            raise ValueError(f"unexpected element {qname.text} outside {NS}")
        yield qname.localname, child


def _element_dict(element: etree._Element) -> dict[str, Any] | str:
    children = list(_children(element))
    if not children:
        return element.text or ""
    out: dict[str, Any] = {}
    for name, child in children:
        value = _element_dict(child)
        if name == "CongDan":
            out.setdefault(name, []).append(value)
        else:
            if name in out:
                raise ValueError(f"element {name} repeated")
            out[name] = value
    return out


def request_to_xml(request: YeuCauTraCuu) -> etree._Element:
    """The body element of a request (tests and the benchmark build envelopes with it)."""
    root = etree.Element(_q(OPERATION), nsmap={"dc": NS})
    for field_name in YeuCauTraCuu.model_fields:
        _append(root, field_name, getattr(request, field_name))
    return root


def request_from_xml(element: etree._Element) -> YeuCauTraCuu:
    """The request from its body element; raises ValueError or pydantic's ValidationError."""
    if etree.QName(element).text != _q(OPERATION):
        raise ValueError(f"the body holds {etree.QName(element).localname}, not {OPERATION}")
    data = _element_dict(element)
    if not isinstance(data, dict):
        raise ValueError(f"{OPERATION} is empty")
    return YeuCauTraCuu.model_validate(data)


def response_to_xml(response: KetQuaTraCuu) -> etree._Element:
    root = etree.Element(_q(f"{OPERATION}Response"), nsmap={"dc": NS})
    _append(root, "MaYeuCau", response.MaYeuCau)
    _append(root, "MaLoi", response.MaLoi)
    _append(root, "MoTaLoi", response.MoTaLoi)
    if response.MaLoi == MaLoi.THANH_CONG:
        collection = etree.SubElement(root, _q("CongdanCollection"))
        for citizen in response.CongdanCollection:
            _append(collection, "CongDan", citizen)
    return root


def response_from_xml(element: etree._Element) -> KetQuaTraCuu:
    """The response from its body element (tests read simulator answers with it)."""
    data = _element_dict(element)
    if not isinstance(data, dict):
        raise ValueError("the response is empty")
    collection = data.pop("CongdanCollection", None)
    citizens = collection.get("CongDan", []) if isinstance(collection, dict) else []
    return KetQuaTraCuu.model_validate({**data, "CongdanCollection": citizens})
