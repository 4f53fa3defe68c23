"""The National Population Database (CSDLQG về dân cư): the ``identity`` capability.

The entry point ``population_db = "adapters.population_db:PopulationDbAdapter"`` names the
adapter class; see ``docs/adapters/population_db.md`` for the protocol and its conformance.
"""

from __future__ import annotations

from .adapter import PopulationDbAdapter
from .config import PopulationDbConfig

__all__ = ["PopulationDbAdapter", "PopulationDbConfig"]
