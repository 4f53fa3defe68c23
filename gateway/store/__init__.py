"""The store: one contract (``base.Store``), two backends side by side."""

from __future__ import annotations

from gateway.settings import Settings
from gateway.store.base import Store

__all__ = ["Store", "create_store"]


def create_store(settings: Settings) -> Store:
    """The backend the settings name, not yet opened."""
    if settings.store.backend == "redis":
        from gateway.store.redis import RedisStore

        return RedisStore(
            settings.store.redis_url.get_secret_value(), key_prefix=settings.store.key_prefix
        )
    from gateway.store.sqlite import SqliteStore

    return SqliteStore(settings.store.sqlite_path)
