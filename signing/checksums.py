"""Peer checksums and MACs over pipe-joined fields, as small declarative field orders.

Two constructions are in use by the national payment platform and its peers (DOMAIN.md):

* ``sha256-key-suffix``: SHA-256 hex of ``f1|f2|...|fn|<key>`` (the key is the last field);
* ``hmac-sha256``: HMAC-SHA256 hex of ``f1|f2|...|fn`` under the key.

A scheme names its fields in English; the adapter maps its wire names to them (the comments
below give the payment platform's wire names). Presented values are compared in constant time,
case-insensitively (peers send upper- or lower-case hex).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

from gateway.errors import SignatureInvalid

__all__ = [
    "PAYMENT_INIT",
    "PAYMENT_NOTIFICATION",
    "PAYMENT_QUERY",
    "ChecksumScheme",
    "FieldValue",
    "hmac_sha256_scheme",
]

FieldValue = str | int | Decimal | None
Construction = Literal["sha256-key-suffix", "hmac-sha256"]


@dataclass(frozen=True, slots=True)
class ChecksumScheme:
    name: str
    fields: tuple[str, ...]
    construction: Construction
    separator: str = "|"

    def message(self, values: Mapping[str, FieldValue]) -> str:
        """The pipe-joined fields in this scheme's order (without the key)."""
        missing = [f for f in self.fields if f not in values]
        if missing:
            raise ValueError(f"{self.name}: missing fields {', '.join(missing)}")
        return self.separator.join(_text(self.name, f, values[f]) for f in self.fields)

    def compute(self, values: Mapping[str, FieldValue], key: str | bytes) -> str:
        """The checksum as lower-case hex."""
        message = self.message(values).encode("utf-8")
        secret = key.encode("utf-8") if isinstance(key, str) else key
        if self.construction == "hmac-sha256":
            return hmac.new(secret, message, hashlib.sha256).hexdigest()
        return hashlib.sha256(message + self.separator.encode() + secret).hexdigest()

    def matches(self, values: Mapping[str, FieldValue], key: str | bytes, presented: str) -> bool:
        expected = self.compute(values, key).encode("ascii")
        given = presented.strip().lower().encode("ascii", "replace")
        return hmac.compare_digest(expected, given)

    def require(
        self,
        values: Mapping[str, FieldValue],
        key: str | bytes,
        presented: str | None,
    ) -> None:
        """Raise :class:`SignatureInvalid` unless ``presented`` is this scheme's checksum."""
        if not presented:
            raise SignatureInvalid(f"{self.name}: the checksum is missing")
        try:
            ok = self.matches(values, key, presented)
        except ValueError as exc:
            raise SignatureInvalid(str(exc)) from None
        if not ok:
            # never echo the expected value: it would be an oracle for forging one
            raise SignatureInvalid(f"{self.name}: the checksum does not match")


def hmac_sha256_scheme(name: str, fields: tuple[str, ...], separator: str = "|") -> ChecksumScheme:
    """HMAC-SHA256 (KeyPay, provincial PayGov: one key for requests, another for callbacks)."""
    return ChecksumScheme(name, fields, "hmac-sha256", separator)


def _text(scheme: str, name: str, value: FieldValue) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        raise ValueError(f"{scheme}: field {name} is a boolean; format it as the peer expects")
    if isinstance(value, Decimal):
        # amounts are whole đồng; never "1E+5" or "100000.00"
        return format(value, "f")
    if isinstance(value, int | str):
        return str(value)
    raise ValueError(f"{scheme}: field {name} has unsupported type {type(value).__name__}")


#: payment init (MaXacThuc): LoaiBanTin|PhienBan|MaDoiTac|MaThamChieu|SoTien|LoaiHinhThanhToan|
#: MaKenhThanhToan|MaThietBi|NgonNgu|MaTienTe|MaNganHang|ThongTinGiaoDich|ThoiGianGD|Ip|<hashKey>
PAYMENT_INIT = ChecksumScheme(
    "payment-init",
    (
        "message_type",
        "version",
        "partner_code",
        "reference",
        "amount",
        "payment_type",
        "channel_code",
        "device_id",
        "language",
        "currency",
        "bank_code",
        "order_info",
        "transaction_time",
        "client_ip",
    ),
    "sha256-key-suffix",
)

#: result notification (IPN), note the order: LoaiBanTin|MaLoi|MaDoiTac|MaThamChieu|SoTien|
#: MaTienTe|MaGiaoDich|MaNganHang|ThoiGianGD|ThongTinGiaoDich|<hashKey>
PAYMENT_NOTIFICATION = ChecksumScheme(
    "payment-notification",
    (
        "message_type",
        "result_code",
        "partner_code",
        "reference",
        "amount",
        "currency",
        "transaction_id",
        "bank_code",
        "transaction_time",
        "order_info",
    ),
    "sha256-key-suffix",
)

#: status query: LoaiBanTin|PhienBan|MaDoiTac|MaThamChieu|ThoiGianGD|<hashKey>
PAYMENT_QUERY = ChecksumScheme(
    "payment-query",
    ("message_type", "version", "partner_code", "reference", "transaction_time"),
    "sha256-key-suffix",
)
