"""Known-answer tests: expected values computed independently with hashlib/hmac here."""

from __future__ import annotations

import hashlib
import hmac
from decimal import Decimal

import pytest

from gateway.errors import SignatureInvalid
from signing.checksums import (
    PAYMENT_INIT,
    PAYMENT_NOTIFICATION,
    PAYMENT_QUERY,
    hmac_sha256_scheme,
)

HASH_KEY = "k3y-of-the-partner"

#: the wire names of DOMAIN.md's result notification checksum, in its order
NOTIFICATION_WIRE_ORDER = (
    "LoaiBanTin",
    "MaLoi",
    "MaDoiTac",
    "MaThamChieu",
    "SoTien",
    "MaTienTe",
    "MaGiaoDich",
    "MaNganHang",
    "ThoiGianGD",
    "ThongTinGiaoDich",
)
#: docs/signing.md's English name of each wire field
ENGLISH = {
    "LoaiBanTin": "message_type",
    "MaLoi": "result_code",
    "MaDoiTac": "partner_code",
    "MaThamChieu": "reference",
    "SoTien": "amount",
    "MaTienTe": "currency",
    "MaGiaoDich": "transaction_id",
    "MaNganHang": "bank_code",
    "ThoiGianGD": "transaction_time",
    "ThongTinGiaoDich": "order_info",
}

INIT = {
    "message_type": "1",
    "version": "2.1",
    "partner_code": "QNAM",
    "reference": "000.00.19.H47-260105-0001",
    "amount": 150000,
    "payment_type": "1",
    "channel_code": "WEB",
    "device_id": "",
    "language": "vi",
    "currency": "704",
    "bank_code": None,
    "order_info": "Nộp lệ phí hồ sơ 000.00.19.H47-260105-0001",
    "transaction_time": "20260105093000",
    "client_ip": "127.0.0.1",
}


def test_payment_init_known_answer() -> None:
    raw = (
        "1|2.1|QNAM|000.00.19.H47-260105-0001|150000|1|WEB||vi|704||"
        "Nộp lệ phí hồ sơ 000.00.19.H47-260105-0001|20260105093000|127.0.0.1|" + HASH_KEY
    )
    expected = hashlib.sha256(raw.encode("utf-8")).hexdigest()
    assert PAYMENT_INIT.compute(INIT, HASH_KEY) == expected
    assert PAYMENT_INIT.matches(INIT, HASH_KEY, expected.upper())


def test_payment_notification_known_answer_and_order() -> None:
    values = {
        "message_type": "2",
        "result_code": "00",
        "partner_code": "QNAM",
        "reference": "000.00.19.H47-260105-0001",
        "amount": Decimal("150000"),
        "currency": "704",
        "transaction_id": "TX123",
        "bank_code": "VCB",
        "transaction_time": "20260105093512",
        "order_info": "ok",
    }
    raw = "2|00|QNAM|000.00.19.H47-260105-0001|150000|704|TX123|VCB|20260105093512|ok|" + HASH_KEY
    expected = hashlib.sha256(raw.encode()).hexdigest()
    assert PAYMENT_NOTIFICATION.compute(values, HASH_KEY) == expected
    PAYMENT_NOTIFICATION.require(values, HASH_KEY, expected)
    # DOMAIN.md, field by field: LoaiBanTin|MaLoi|MaDoiTac|MaThamChieu|SoTien|MaTienTe|
    # MaGiaoDich|MaNganHang|ThoiGianGD|ThongTinGiaoDich (every value distinct, so any swap shows)
    assert PAYMENT_NOTIFICATION.fields == tuple(ENGLISH[wire] for wire in NOTIFICATION_WIRE_ORDER)
    assert (
        PAYMENT_NOTIFICATION.message(values)
        == "2|00|QNAM|000.00.19.H47-260105-0001|150000|704|TX123|VCB|20260105093512|ok"
    )
    # a peer that hashed the init order (partner code before the result code) is refused
    init_order = "2|QNAM|00|000.00.19.H47-260105-0001|150000|704|TX123|VCB|20260105093512|ok|"
    wrong = hashlib.sha256((init_order + HASH_KEY).encode()).hexdigest()
    assert not PAYMENT_NOTIFICATION.matches(values, HASH_KEY, wrong)
    with pytest.raises(SignatureInvalid, match="does not match"):
        PAYMENT_NOTIFICATION.require(values, HASH_KEY, wrong)


def test_payment_query_known_answer() -> None:
    values = {
        "message_type": "3",
        "version": "2.1",
        "partner_code": "QNAM",
        "reference": "R1",
        "transaction_time": "20260105100000",
    }
    expected = hashlib.sha256(f"3|2.1|QNAM|R1|20260105100000|{HASH_KEY}".encode()).hexdigest()
    assert PAYMENT_QUERY.compute(values, HASH_KEY) == expected


def test_hmac_sha256_known_answer() -> None:
    scheme = hmac_sha256_scheme("paygov-callback", ("order_id", "amount", "status", "time"))
    values = {"order_id": "A-1", "amount": 20000, "status": "SUCCESS", "time": "20260105"}
    key = b"callback-secret"
    expected = hmac.new(key, b"A-1|20000|SUCCESS|20260105", hashlib.sha256).hexdigest()
    assert scheme.compute(values, key) == expected
    assert scheme.matches(values, key, f"  {expected}\n")
    assert not scheme.matches(values, b"request-secret", expected)


@pytest.mark.parametrize(
    ("presented", "reason"),
    [(None, "missing"), ("", "missing"), ("00" * 32, "does not match"), ("zz", "does not match")],
)
def test_wrong_or_missing_checksums_are_refused(presented: str | None, reason: str) -> None:
    with pytest.raises(SignatureInvalid, match=reason) as info:
        PAYMENT_INIT.require(INIT, HASH_KEY, presented)
    assert PAYMENT_INIT.compute(INIT, HASH_KEY) not in info.value.detail


def test_tampered_amount_is_refused() -> None:
    good = PAYMENT_INIT.compute(INIT, HASH_KEY)
    with pytest.raises(SignatureInvalid):
        PAYMENT_INIT.require({**INIT, "amount": 1500}, HASH_KEY, good)


def test_missing_field_and_bad_types_are_refused() -> None:
    partial = dict(INIT)
    del partial["client_ip"]
    with pytest.raises(SignatureInvalid, match="missing fields client_ip"):
        PAYMENT_INIT.require(partial, HASH_KEY, "00")
    with pytest.raises(ValueError, match="boolean"):
        PAYMENT_INIT.compute({**INIT, "device_id": True}, HASH_KEY)  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="unsupported type float"):
        PAYMENT_INIT.compute({**INIT, "amount": 1.5}, HASH_KEY)  # type: ignore[dict-item]
