"""Helpers for the job, idempotency and reliability tests: settings for one backend with
real clients (hashed API keys), and a unique Redis key prefix per test."""

from __future__ import annotations

import os
import secrets
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.security import hash_api_key
from gateway.settings import CONFIG_ENV, Settings


@dataclass(frozen=True)
class ApiClient:
    id: str
    key: str
    scopes: tuple[str, ...]

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


def make_client(client_id: str, *scopes: str) -> ApiClient:
    return ApiClient(client_id, "dvcgw_" + secrets.token_urlsafe(32), scopes)


DOSSIER_SYSTEM = make_client("dossier-system", "dossiers:write")
OTHER_SYSTEM = make_client("other-system", "dossiers:write")
OPERATOR = make_client("ops-alice", "ops:read", "ops:write")
VIEWER = make_client("ops-bob", "ops:read")


def store_settings(
    backend: str, tmp_path: Path, redis_url: str | None
) -> tuple[dict[str, Any], str]:
    """The [store] table for a backend, and the Redis key prefix (to drop afterwards)."""
    prefix = f"dvcgw-test-{uuid.uuid4().hex[:12]}:"
    if backend == "redis":
        assert redis_url is not None
        return {"backend": "redis", "redis_url": redis_url, "key_prefix": prefix}, prefix
    return {"backend": "sqlite", "sqlite_path": str(tmp_path / "gateway.db")}, prefix


def gateway_settings(
    store: dict[str, Any],
    tmp_path: Path,
    *,
    clients: tuple[ApiClient, ...] = (DOSSIER_SYSTEM, OTHER_SYSTEM, OPERATOR, VIEWER),
    jobs: dict[str, Any] | None = None,
    **extra: Any,
) -> Settings:
    # only what is given here: not config/gateway.toml of the working tree
    saved = os.environ.get(CONFIG_ENV)
    os.environ[CONFIG_ENV] = str(tmp_path / "no-such-config.toml")
    try:
        return _validate(store, tmp_path, clients, jobs, extra)
    finally:
        if saved is None:
            os.environ.pop(CONFIG_ENV, None)
        else:
            os.environ[CONFIG_ENV] = saved


def _validate(
    store: dict[str, Any],
    tmp_path: Path,
    clients: tuple[ApiClient, ...],
    jobs: dict[str, Any] | None,
    extra: dict[str, Any],
) -> Settings:
    return Settings.model_validate(
        {
            "store": store,
            "security": {
                "clients_file": str(tmp_path / "clients.toml"),
                "rate_limit": {"enabled": False},
            },
            "clients": [
                {"id": c.id, "key_sha256": hash_api_key(c.key), "scopes": list(c.scopes)}
                for c in clients
            ],
            "jobs": {"workers": 0, "scheduler_enabled": False, **(jobs or {})},
            "logging": {"level": "WARNING", "format": "json"},
            **extra,
        }
    )


async def drop_redis_prefix(url: str, prefix: str) -> None:
    """Delete the keys this test wrote (only under its own prefix)."""
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(url)
    try:
        keys = [k async for k in client.scan_iter(match=prefix + "*", count=1000)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()
