"""The health figures over one hour reach ``/health/adapters`` and the overview card, from
live-traffic figures another instance published in the store (as every instance does)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import asdict
from pathlib import Path

import pytest
from litestar import Litestar
from support.echo_adapter import ECHO_ADAPTER, EchoAdapter
from support.jobs_app import drop_redis_prefix
from support.uvicorn_server import serving
from test_ops_pages import READ_KEY, WRITE_KEY, _client, _settings, _sign_in

from gateway.adapters import AdapterRegistry
from gateway.app import create_app
from gateway.health import PASSIVE_KEY, PassiveFigures
from gateway.sandbox import build_sandbox
from gateway.settings import Settings


@pytest.fixture
async def echo_url(tmp_path: Path) -> AsyncIterator[str]:
    """The echo system's simulator over real HTTP: the monitor's probes of it succeed."""
    settings = Settings(
        extra_adapters=[ECHO_ADAPTER],
        adapters={"echo": {}},
        store={"sqlite_path": tmp_path / "sandbox.db"},
    )
    registry = AdapterRegistry(settings, {"echo": EchoAdapter})
    async with serving(build_sandbox(settings, registry=registry)) as url:
        yield f"{url}/echo"


@pytest.fixture(params=["sqlite", "redis"])
async def app(
    request: pytest.FixtureRequest, tmp_path: Path, redis_prefix: str, echo_url: str
) -> AsyncIterator[Litestar]:
    redis_url = request.getfixturevalue("redis_url") if request.param == "redis" else None
    settings = _settings(
        tmp_path,
        request.param,
        redis_url,
        redis_prefix,
        extra_adapters=[ECHO_ADAPTER],
        adapters={"echo": {"base_url": echo_url}},
    )
    application = create_app(settings)
    yield application
    if redis_url:
        await drop_redis_prefix(redis_url, redis_prefix)


async def _arrange(app: Litestar, figures: PassiveFigures) -> None:
    """The monitor's first probe done, and live-traffic figures as another instance's
    monitor publishes them."""
    runtime = app.state.runtime
    deadline = time.monotonic() + 10
    while (await runtime.health.snapshot())[0].probe_ok is None:
        assert time.monotonic() < deadline, "the health monitor never probed"
        await asyncio.sleep(0.05)
    await runtime.store.set(
        f"{PASSIVE_KEY}echo:other-instance", json.dumps(asdict(figures)).encode()
    )


def _card(page: str, name: str) -> str:
    start = page.index(f'data-system="{name}"')
    return page[start : page.index("</article>", start)]


FIGURES = PassiveFigures(
    calls_5m=10,
    calls_1h=600,
    errors_1h=30,
    p50_ms=80,
    p95_ms=300,
    p50_ms_1h=1200,
    p95_ms_1h=4200,
    last_success=time.time(),
)


async def test_latency_over_one_hour_is_in_the_json_and_on_the_card(app: Litestar) -> None:
    async with _client(app) as client:
        await _arrange(app, FIGURES)
        r = await client.get("/health/adapters", headers={"Authorization": f"Bearer {READ_KEY}"})
        assert r.status_code == 200
        system = {s["name"]: s for s in r.json()["systems"]}["echo"]
        assert system["state"] == "up", system["reason"]
        assert (system["p50_ms"], system["p95_ms"]) == (80, 300)
        assert (system["p50_ms_1h"], system["p95_ms_1h"]) == (1200, 4200)
        # this instance adds its own probe call or two to the other one's 600
        assert system["error_rate_1h"] == pytest.approx(0.05, abs=0.001)

        await _sign_in(client, WRITE_KEY)
        card = _card((await client.get("/ops/partials/overview")).text, "echo")
        assert '<dd class="latency-5m">80 / 300 ms</dd>' in card
        assert '<dd class="latency-1h">1.200 / 4.200 ms</dd>' in card
        assert '<dd class="error-rate-1h">5,0 %</dd>' in card
        assert "Độ trễ p50 / p95 (1 giờ)" in card
        english = _card((await client.get("/ops?lang=en")).text, "echo")
        assert "Latency p50 / p95 (1 h)" in english


async def test_a_reason_shows_its_numbers_the_vietnamese_way(app: Litestar) -> None:
    slow = PassiveFigures(calls_5m=10, calls_1h=10, p50_ms=900, p95_ms=4200, p95_ms_1h=4200)
    async with _client(app) as client:
        await _arrange(app, slow)
        r = await client.get("/health/adapters", headers={"Authorization": f"Bearer {READ_KEY}"})
        system = {s["name"]: s for s in r.json()["systems"]}["echo"]
        # the API keeps its English text and plain numbers
        assert (system["state"], system["reason"]) == ("degraded", "slow: p95 4200 ms")
        await _sign_in(client, READ_KEY)
        card = _card((await client.get("/ops/partials/overview")).text, "echo")
        assert "Chậm: p95 4.200 ms" in card
        english = _card((await client.get("/ops/partials/overview?lang=en")).text, "echo")
        assert "Slow: p95 4.200 ms" in english
