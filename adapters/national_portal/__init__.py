"""The National Public Service Portal (Cổng Dịch vụ công quốc gia): the ``dossiers`` capability.

The entry point ``national_portal = "adapters.national_portal:NationalPortalAdapter"`` names
the adapter; see docs/adapters/national_portal.md.
"""

from __future__ import annotations

from adapters.national_portal.adapter import NationalPortalAdapter, NationalPortalConfig

__all__ = ["NationalPortalAdapter", "NationalPortalConfig"]
