"""Fixtures of the reliability tests (multi-process runs over real stores)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from support.jobs_app import drop_redis_prefix
from support.reliability_rig import Backend


@pytest.fixture
async def backend_factory(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[Callable[[str], Backend]]:
    made: list[Backend] = []

    def make(name: str) -> Backend:
        url = request.getfixturevalue("redis_url") if name == "redis" else None
        backend = Backend(name, tmp_path, url)
        made.append(backend)
        return backend

    yield make
    for backend in made:
        if backend.redis_url is not None:
            await drop_redis_prefix(backend.redis_url, backend.prefix)
