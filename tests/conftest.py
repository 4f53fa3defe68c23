"""Shared fixtures. Real parts only: a real SQLite file and a real Redis server.

The Redis URL comes from GATEWAY_TEST_REDIS_URL (``make test`` sets it, starting a
redis-server when none answers). Without it, the Redis-backed tests FAIL, never skip.
Each test run writes under its own key prefix and deletes only those keys.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from support.jobs_app import drop_redis_prefix

from gateway.store.base import Store

SHARED_TESTDATA = Path(__file__).resolve().parents[2] / "shared" / "testdata"


def redis_test_url() -> str:
    url = os.environ.get("GATEWAY_TEST_REDIS_URL") or "redis://127.0.0.1:6379/0"
    return url


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Browser tests run last: they start a real gateway and Chromium, the slowest part, and
    nothing of theirs should be live while the asyncio tests run."""
    items.sort(key=lambda item: item.get_closest_marker("browser") is not None)


@pytest.fixture(autouse=True)
def _hermetic_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Tests build their own Settings: the sandbox's config/gateway.toml (adapters, ports)
    must not leak into them through the default config path. A test that wants that file
    sets GATEWAY_CONFIG itself (its own fixture runs after this one)."""
    monkeypatch.setenv("GATEWAY_CONFIG", str(tmp_path / "no-config-file.toml"))


@pytest.fixture
def redis_url() -> str:
    import redis

    url = redis_test_url()
    try:
        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    except Exception as exc:  # pragma: no cover - the environment is broken, say so loudly
        pytest.fail(f"Redis-backed test needs a Redis server at {url}: {exc}")
    return url


@pytest.fixture
def redis_prefix() -> str:
    return f"dvcgw-test-{uuid.uuid4().hex[:12]}:"


@pytest.fixture(params=["sqlite", "redis"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """An opened store of each backend; the Redis one lives under a unique key prefix."""
    if request.param == "sqlite":
        from gateway.store.sqlite import SqliteStore

        s: Store = SqliteStore(tmp_path / "gateway.db")
        await s.open()
        yield s
        await s.close()
    else:
        from gateway.store.redis import RedisStore

        url = request.getfixturevalue("redis_url")
        prefix = f"dvcgw-test-{uuid.uuid4().hex[:12]}:"
        s = RedisStore(url, key_prefix=prefix)
        await s.open()
        yield s
        await s.close()
        await drop_redis_prefix(url, prefix)


@pytest.fixture
def shared_testdata() -> Path:
    if not SHARED_TESTDATA.is_dir():
        pytest.skip(f"external test vectors not found at {SHARED_TESTDATA} (../shared/testdata)")
    return SHARED_TESTDATA
