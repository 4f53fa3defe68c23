"""Vietnamese display conventions and the completeness of the translation tables."""

from __future__ import annotations

from datetime import UTC, datetime

from gateway.ops.formatting import format_duration, format_number, format_time
from gateway.ops.i18n import LANGUAGES, MESSAGES, translate


def test_time_is_shown_in_vietnam_as_day_month_year() -> None:
    # 2026-01-05 17:30:05 UTC is 2026-01-06 00:30:05 in Asia/Ho_Chi_Minh (UTC+7)
    epoch = datetime(2026, 1, 5, 17, 30, 5, tzinfo=UTC).timestamp()
    assert format_time(epoch) == "06/01/2026 00:30:05"
    assert format_time(None) == "—"


def test_numbers_use_vietnamese_separators() -> None:
    assert format_number(1234567) == "1.234.567"
    assert format_number(12.5, 1) == "12,5"
    assert format_number(1234.5, 2) == "1.234,50"
    assert format_number(None) == "—"


def test_durations_are_short_and_in_the_page_language() -> None:
    assert format_duration(45) == "45 giây"
    assert format_duration(600) == "10 phút"
    assert format_duration(3 * 3600) == "3 giờ"
    assert format_duration(3 * 86400) == "3 ngày"
    assert format_duration(1500 * 86400) == "1.500 ngày"
    assert format_duration(45, "en") == "45 s"
    assert format_duration(600, "en") == "10 min"
    assert format_duration(3 * 3600, "en") == "3 h"
    assert format_duration(3 * 86400, "en") == "3 d"
    assert format_duration(None) == "—"


def test_every_message_has_both_languages() -> None:
    missing = [k for k, v in MESSAGES.items() for lang in LANGUAGES if not v.get(lang)]
    assert missing == []


def test_vietnamese_is_distinct_from_english_and_unknown_keys_fall_back() -> None:
    assert translate("nav_dead_letters", "vi") == "Việc lỗi"
    assert translate("nav_dead_letters", "en") == "Dead letters"
    assert translate("no-such-key", "vi") == "no-such-key"


def test_every_key_used_by_the_templates_exists() -> None:
    import re
    from pathlib import Path

    import gateway.ops

    used: set[str] = set()
    for tpl in (Path(gateway.ops.__file__).parent / "templates").glob("*.html"):
        used |= set(re.findall(r"t\('([a-z0-9_]+)'\)", tpl.read_text(encoding="utf-8")))
    assert used, "no translated strings found in the templates"
    assert sorted(used - set(MESSAGES)) == []
