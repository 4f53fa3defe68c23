"""Vietnamese display conventions and the completeness of the translation tables."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import get_args

import gateway.ops
from gateway.health import REASON_TEXTS, State
from gateway.ops import pages
from gateway.ops.formatting import format_duration, format_number, format_time
from gateway.ops.i18n import LANGUAGES, MESSAGES, translate
from gateway.outbound import CircuitState
from gateway.store.base import JobState
from gateway.webhooks import EndpointState

TEMPLATES = Path(gateway.ops.__file__).parent / "templates"

#: every key family the templates build at render time (``t('state_' ~ s.state)``), with every
#: value its variable can take, from the types that define them: a new state, circuit state or
#: webhook state without a translation fails here, not on an operator's screen
DYNAMIC_FAMILIES: dict[str, set[str]] = {
    "state_": set(get_args(State)),
    "circuit_": {c.value for c in CircuitState},
    "wh_": set(get_args(EndpointState)),
    "job_state_": {s.value for s in JobState},
}


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


def _templates() -> str:
    return "".join(tpl.read_text(encoding="utf-8") for tpl in TEMPLATES.glob("*.html"))


def _in_both_languages(keys: set[str]) -> list[str]:
    """The keys missing from the table or from one of its languages."""
    return sorted(
        f"{key} ({lang})"
        for key in keys
        for lang in LANGUAGES
        if not MESSAGES.get(key, {}).get(lang)
    )


def test_every_key_used_by_the_templates_exists() -> None:
    used = set(re.findall(r"t\('([a-z0-9_]+)'\)", _templates()))
    assert used, "no translated strings found in the templates"
    assert _in_both_languages(used) == []


def test_every_key_the_templates_build_exists_for_every_value() -> None:
    """Keys built at render time (``t('state_' ~ s.state)``) are invisible to the literal
    search above: each family is checked against every value its variable can take."""
    families = set(re.findall(r"t\('([a-z0-9_]+)'\s*~", _templates()))
    assert families, "no key families found in the templates"
    assert families <= set(DYNAMIC_FAMILIES), (
        f"a template builds keys of {sorted(families - set(DYNAMIC_FAMILIES))}: add the family "
        "and its possible values to DYNAMIC_FAMILIES"
    )
    built = {prefix + value for prefix in families for value in DYNAMIC_FAMILIES[prefix]}
    assert _in_both_languages(built) == []


def test_keys_built_in_python_exist() -> None:
    """The health reasons (``reason_<code>``), the timeline labels (``tl_*``) and the flash
    messages the handlers redirect with."""
    from gateway import timeline

    reasons = {f"reason_{code}" for code in REASON_TEXTS}
    labels = {key for _, key in timeline._LABELS.values()}
    labels |= {"tl_job_queued", "tl_job_attempt_failed"}
    labels |= {f"tl_job_now_{state}" for state in ("queued", "leased", "dead")}
    source = Path(pages.__file__).read_text(encoding="utf-8")
    flashes = set(re.findall(r"flash=([a-z_]+)", source))
    flashes |= set(re.findall(r'flash = "([a-z_]+)"', source))
    flashes |= set(re.findall(r'"flash": "([a-z_]+)"', source))
    assert {"csrf_failed", "replayed", "not_dead", "bad_key"} <= flashes
    keys = reasons | labels | flashes | set(pages._ERROR_FLASHES)
    assert _in_both_languages(keys) == []
