"""The dossier API's OpenAPI text says what the handlers answer."""

from __future__ import annotations

from datetime import datetime

from gateway.api.dossiers import get_procedure, get_timeline
from gateway.timeline import TimelineEntry


def test_the_timeline_description_gives_the_time_format_it_returns() -> None:
    description = get_timeline.description or ""
    assert "epoch" not in description
    assert "RFC 3339 UTC" in description
    at = TimelineEntry(at=1767576600.5, label="x", outcome="ok").as_dict()["at"]
    assert at.endswith("Z")
    assert datetime.fromisoformat(at).utcoffset() is not None


def test_the_procedure_description_says_when_it_is_404() -> None:
    description = get_procedure.description or ""
    assert "no such procedure" in description
    assert "stale: true" in description
