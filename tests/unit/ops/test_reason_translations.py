"""Every health reason has a Vietnamese and an English text taking the same arguments, and the
dashboard's time filter reads Vietnamese dates."""

from __future__ import annotations

import string
from datetime import datetime

import pytest

from gateway.health import REASON_TEXTS, Diagnosis
from gateway.ops.formatting import VN_TZ
from gateway.ops.i18n import MESSAGES, format_reason
from gateway.ops.pages import _BadTime, _parse_local

SAMPLE_ARGS = {"detail": "HTTP 503", "rate": 0.5, "ms": 4200.0, "days": 12.0}


def _fields(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


@pytest.mark.parametrize("code", sorted(REASON_TEXTS))
def test_each_reason_is_translated_with_the_same_arguments(code: str) -> None:
    entry = MESSAGES[f"reason_{code}"]
    english = _fields(REASON_TEXTS[code])
    args = {name: SAMPLE_ARGS[name] for name in english}
    for lang in ("vi", "en"):
        assert _fields(entry[lang]) == english, (code, lang)
        assert format_reason(code, args, lang), (code, lang)
    assert entry["vi"] != entry["en"], f"reason_{code} is not translated"


def test_reason_numbers_are_written_the_vietnamese_way_in_both_languages() -> None:
    """Like every figure of the dashboard: ``4.200``, not ``4200``; a rate as a percentage.
    The English text of the API (Diagnosis.reason) keeps its plain numbers."""
    assert format_reason("slow", {"ms": 4200.4}, "vi") == "Chậm: p95 4.200 ms"
    assert format_reason("slow", {"ms": 4200.4}, "en") == "Slow: p95 4.200 ms"
    assert format_reason("slow_probe", {"ms": 12500.0}, "vi") == "Kiểm tra chậm: 12.500 ms"
    assert (
        format_reason("errors_degraded", {"rate": 0.234}, "vi")
        == "23 % lượt gọi bị lỗi trong 5 phút qua"
    )
    assert format_reason("certificate_expiring", {"days": 12.2}, "vi") == (
        "Chứng thư số hết hạn sau 12 ngày"
    )
    assert format_reason("probe_failed", {"detail": "HTTP 503"}, "vi") == (
        "Kiểm tra thất bại: HTTP 503"
    )
    assert Diagnosis("degraded", "slow", {"ms": 4200.4}).reason == "slow: p95 4200 ms"
    # an unknown code or arguments that do not fit: None, the page shows the English text
    assert format_reason("no-such-code", {}, "vi") is None
    assert format_reason("slow", {}, "vi") is None
    assert format_reason(None, {}, "vi") is None


def test_a_diagnosis_reads_as_its_english_text() -> None:
    found = Diagnosis("down", "probe_failed", {"detail": "HTTP 503"})
    assert found.reason == "probe failed: HTTP 503"
    assert Diagnosis("up").reason is None


def test_time_filters_are_read_as_vietnamese_dates_in_vietnam_time() -> None:
    expected = datetime(2026, 1, 6, 0, 30, tzinfo=VN_TZ).timestamp()
    assert _parse_local("06/01/2026 00:30") == expected
    assert _parse_local("06/01/2026 00:30:00") == expected
    assert _parse_local("2026-01-06T00:30") == expected
    assert _parse_local("06/01/2026") == datetime(2026, 1, 6, tzinfo=VN_TZ).timestamp()
    assert _parse_local("") is None
    with pytest.raises(_BadTime):
        _parse_local("31/02/2026")
