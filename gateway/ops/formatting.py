"""Vietnamese display conventions: times in Asia/Ho_Chi_Minh, numbers with Vietnamese separators."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

__all__ = ["VN_TZ", "format_duration", "format_number", "format_time"]

VN_TZ = ZoneInfo("Asia/Ho_Chi_Minh")


def format_time(epoch: float | None) -> str:
    """``dd/MM/yyyy HH:mm:ss`` in Vietnam's time zone; an em dash when unknown."""
    if epoch is None:
        return "—"
    return datetime.fromtimestamp(epoch, UTC).astimezone(VN_TZ).strftime("%d/%m/%Y %H:%M:%S")


def format_number(value: float | int | None, decimals: int = 0) -> str:
    """``1.234.567`` and ``12,5``: dots group thousands, a comma marks decimals."""
    if value is None:
        return "—"
    text = f"{value:,.{decimals}f}"  # 1,234,567.89
    return text.replace(",", "\x00").replace(".", ",").replace("\x00", ".")


#: the units of a short age, per language: seconds, minutes, hours, days
_DURATION_UNITS: dict[str, tuple[str, str, str, str]] = {
    "vi": ("giây", "phút", "giờ", "ngày"),
    "en": ("s", "min", "h", "d"),
}


def format_duration(seconds: float | None, lang: str = "vi") -> str:
    """A short age: ``45 giây``, ``12 phút``, ``3 giờ``, ``2 ngày`` (``45 s``, ``12 min``,
    ``3 h``, ``2 d`` in English)."""
    if seconds is None:
        return "—"
    sec, minute, hour, day = _DURATION_UNITS.get(lang, _DURATION_UNITS["vi"])
    s = max(0, int(seconds))
    if s < 120:
        return f"{format_number(s)} {sec}"
    if s < 7200:
        return f"{format_number(s // 60)} {minute}"
    if s < 172800:
        return f"{format_number(s // 3600)} {hour}"
    return f"{format_number(s // 86400)} {day}"
