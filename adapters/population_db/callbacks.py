"""Callbacks from the National Population Database: there are none.

The registry answers queries and never pushes anything to the province, so this adapter mounts
no routes under ``/callbacks/population_db/``. The module stays, empty, so every adapter has
the same shape (``docs/adapter-guide.md``): a system that starts pushing (e.g. notices of a
changed residence) gets its handlers here, authenticated with the system's own signature and
handed to ``gateway.callbacks.CallbackIntake``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from litestar.types import ControllerRouterHandler

__all__ = ["routes"]


def routes() -> Sequence[ControllerRouterHandler]:
    """No callback routes: the registry does not push."""
    return ()
