"""Correct ``Allow`` on Litestar's automatic OPTIONS answers.

Litestar 2 builds a path's OPTIONS handler with the first route object made for that path;
when more handlers join the path (``@get`` and ``@put`` on ``/v1/dossiers/{code}``), the
route is rebuilt but the handler still reads the first one's methods, so ``Allow`` lists
only some of them (litestar-org/litestar#4169, fixed in Litestar 3). Each automatic handler
is pointed at the route that serves it, once, at start-up. A handler of another shape is
left alone, so the function does nothing once the upstream fix arrives.
"""

from __future__ import annotations

from litestar import Litestar
from litestar.routes import HTTPRoute

__all__ = ["repair_automatic_options"]


def repair_automatic_options(app: Litestar) -> int:
    """Rebind every stale automatic OPTIONS handler to its route; returns how many."""
    repaired = 0
    for route in app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        for handler in route.route_handlers:
            fn = getattr(handler.fn, "__func__", handler.fn)
            if getattr(fn, "__name__", "") != "options_handler":
                continue
            for cell in getattr(fn, "__closure__", None) or ():
                stale = cell.cell_contents
                if isinstance(stale, HTTPRoute) and stale is not route:
                    cell.cell_contents = route
                    repaired += 1
    return repaired
