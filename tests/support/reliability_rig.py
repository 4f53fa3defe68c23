"""Shared pieces of the reliability tests: settings for gateway processes over one store
(SQLite file or Redis under a unique prefix), and polling."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from support.receiver import RECEIVER_ADAPTER, write_config

from gateway.store.base import Store

#: fast retries so a test is about losing nothing, not about waiting
TEST_POLICY = {"max_attempts": 50, "backoff_initial": 0.05, "backoff_max": 0.5}


def process_settings(
    store: dict[str, Any],
    tmp_path: Path,
    receiver_url: str,
    *,
    workers: int,
    tick_seconds: float | None = None,
    port: int = 0,
    visibility: float = 3.0,
) -> dict[str, Any]:
    return {
        "environment": "sandbox",
        "extra_adapters": [RECEIVER_ADAPTER],
        "server": {"host": "127.0.0.1", "port": port},
        "store": store,
        "security": {
            "clients_file": str(tmp_path / "clients.toml"),
            "rate_limit": {"enabled": False},
        },
        "logging": {"level": "WARNING", "format": "json"},
        "jobs": {
            "workers": workers,
            "visibility_timeout": visibility,
            "poll_interval": 0.05,
            "grace_period": 3.0,
            "scheduler_enabled": tick_seconds is not None,
            "default_policy": TEST_POLICY,
        },
        "adapters": {"receiver": {"base_url": receiver_url, "tick_seconds": tick_seconds}},
    }


class Backend:
    """One store for the test process and the gateway processes it starts."""

    def __init__(self, name: str, tmp_path: Path, redis_url: str | None) -> None:
        self.name = name
        self.redis_url = redis_url
        self.prefix = f"dvcgw-test-{uuid.uuid4().hex[:12]}:"
        self.sqlite_path = tmp_path / "gateway.db"

    @property
    def settings(self) -> dict[str, Any]:
        if self.name == "redis":
            assert self.redis_url is not None
            return {"backend": "redis", "redis_url": self.redis_url, "key_prefix": self.prefix}
        return {"backend": "sqlite", "sqlite_path": str(self.sqlite_path)}

    def open_store(self) -> Store:
        if self.name == "redis":
            from gateway.store.redis import RedisStore

            assert self.redis_url is not None
            return RedisStore(self.redis_url, key_prefix=self.prefix)
        from gateway.store.sqlite import SqliteStore

        return SqliteStore(self.sqlite_path)

    def write_config(self, tmp_path: Path, name: str, **kw: Any) -> Path:
        settings = process_settings(self.settings, tmp_path, **kw)
        return write_config(tmp_path / f"{name}.toml", settings)


async def eventually(
    check: Callable[[], Any], *, within: float, message: str, every: float = 0.1
) -> None:
    """Await until ``check()`` (sync or async) is truthy."""
    deadline = time.monotonic() + within
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(message)
        await asyncio.sleep(every)
