"""ULID identifiers that never go backwards within one process.

Two ULIDs made in the same millisecond are ordered by their random part, so a plain ``ULID()``
can sort a later job before an earlier one. The stores and the event publisher use
:func:`new_id`, which bumps the value by one whenever the clock has not moved on; the backends
additionally bump an id that is not above the last one they stored, so id order is the order
in which the store accepted the rows, across processes too.
"""

from __future__ import annotations

import threading

from ulid import ULID

__all__ = ["after", "new_id"]

_lock = threading.Lock()
_last = 0


def new_id() -> str:
    """A fresh ULID string, strictly greater than any this process made before."""
    global _last
    with _lock:
        value = int(ULID())
        if value <= _last:
            value = _last + 1
        _last = value
    return str(ULID.from_int(value))


def after(ulid: str) -> str:
    """The ULID string that follows ``ulid`` (the same timestamp, random part plus one)."""
    return str(ULID.from_int(int(ULID.from_str(ulid)) + 1))
