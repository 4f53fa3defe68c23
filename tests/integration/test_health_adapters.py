"""``GET /health/adapters``: the top-level ``status`` is the worst of the systems, and a
system nobody has probed yet (``unknown``) makes it ``degraded``, never ``up``."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from litestar import Litestar
from support.echo_adapter import ECHO_ADAPTER
from support.jobs_app import OPERATOR, gateway_settings, store_settings
from support.uvicorn_server import free_port, serving

from gateway.api.health_adapters import overall_status
from gateway.app import create_app
from gateway.runtime import Runtime


@pytest.fixture
def app(tmp_path: Path) -> Litestar:
    store, _ = store_settings("sqlite", tmp_path, None)
    settings = gateway_settings(
        store,
        tmp_path,
        clients=(OPERATOR,),
        extra_adapters=[ECHO_ADAPTER],
        # nothing listens there; the first probe comes only after an hour
        adapters={"echo": {"base_url": f"http://127.0.0.1:{free_port()}"}},
        ops={"probe_interval_seconds": 3600},
    )
    return create_app(settings)


async def test_an_unknown_system_makes_the_status_degraded(app: Litestar) -> None:
    async with serving(app) as url, httpx.AsyncClient(base_url=url) as client:
        runtime: Runtime = app.state.runtime
        assert [s.state for s in await runtime.health.snapshot()] == ["unknown"]
        body = (await client.get("/health/adapters", headers=OPERATOR.headers)).json()
        assert [s["state"] for s in body["systems"]] == ["unknown"]
        assert body["status"] == "degraded"


@pytest.mark.parametrize(
    ("states", "status"),
    [
        ([], "up"),
        (["up", "up"], "up"),
        (["up", "unknown"], "degraded"),
        (["degraded", "unknown"], "degraded"),
        (["unknown", "down", "up"], "down"),
    ],
)
def test_the_status_is_the_worst_state(states: list[str], status: str) -> None:
    assert overall_status(states) == status
