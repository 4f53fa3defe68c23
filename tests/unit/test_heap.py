"""The collector helpers leave the process as they found it."""

from __future__ import annotations

import gc

import pytest

from gateway.heap import collector_paused


def test_the_collector_is_paused_inside_and_back_after_even_on_error() -> None:
    seen: list[bool] = []

    def build() -> None:
        with collector_paused():
            seen.append(gc.isenabled())
            raise RuntimeError("boom")

    assert gc.isenabled()
    with pytest.raises(RuntimeError):
        build()
    assert seen == [False]
    assert gc.isenabled()


def test_a_collector_that_was_off_stays_off() -> None:
    gc.disable()
    try:
        with collector_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    finally:
        gc.enable()
