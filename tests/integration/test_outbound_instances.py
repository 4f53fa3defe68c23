"""Two gateway app instances sharing one Redis see one circuit, over real HTTP end to end:

caller -> gateway A or B (uvicorn, the real app, auth included) -> echo adapter's
OutboundClient -> sandbox (uvicorn) -> echo simulator.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.echo_adapter import ECHO_ADAPTER, EchoAdapter, with_echo_routes
from support.jobs_app import drop_redis_prefix
from support.uvicorn_server import serving

from gateway.adapters import AdapterRegistry
from gateway.app import create_app
from gateway.outbound import INSTANT_BACKOFF_ENV
from gateway.sandbox import build_sandbox
from gateway.security import generate_api_key, hash_api_key
from gateway.settings import Settings

CIRCUIT = {
    "retry": {"max_attempts": 1},
    "circuit": {"failure_threshold": 3, "open_duration": 0.8, "state_cache_seconds": 0},
}


@pytest.fixture(autouse=True)
def real_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(INSTANT_BACKOFF_ENV, raising=False)


@pytest.fixture
async def rig(tmp_path: Path, redis_url: str, redis_prefix: str) -> AsyncIterator[dict[str, Any]]:
    base = Settings(extra_adapters=[ECHO_ADAPTER], adapters={"echo": {}})
    sandbox_app = build_sandbox(base, registry=AdapterRegistry(base, {"echo": EchoAdapter}))
    key = generate_api_key()
    settings = Settings(
        extra_adapters=[ECHO_ADAPTER],
        adapters={"echo": {"outbound": CIRCUIT}},
        store={"backend": "redis", "redis_url": redis_url, "key_prefix": redis_prefix},
        clients=[{"id": "tester", "key_sha256": hash_api_key(key), "scopes": ["echo:call"]}],
        security={"clients_file": tmp_path / "clients.toml"},
        jobs={"workers": 0, "scheduler_enabled": False},
        # no health probes: they would call the echo system behind the test's back
        ops={"probe_interval_seconds": 3600},
    )
    try:
        async with serving(sandbox_app) as sandbox:
            gateway_a = with_echo_routes(create_app(settings, sandbox_url=sandbox))
            gateway_b = with_echo_routes(create_app(settings, sandbox_url=sandbox))
            async with serving(gateway_a) as a, serving(gateway_b) as b:
                yield {"sandbox": sandbox, "a": a, "b": b, "key": key}
    finally:
        await drop_redis_prefix(redis_url, redis_prefix)


async def relay(http: httpx.AsyncClient, gateway: str, key: str) -> httpx.Response:
    return await http.post(
        f"{gateway}/v1/_echo/echo",
        json={"payload": {"n": 1}},
        headers={"Authorization": f"Bearer {key}"},
    )


async def sandbox_count(http: httpx.AsyncClient, sandbox: str) -> int:
    data = (await http.get(f"{sandbox}/_sandbox/requests")).json()
    return int(data["requests"].get("echo", {}).get("echo", 0))


async def test_two_app_instances_share_one_circuit(rig: dict[str, Any]) -> None:
    a, b, sandbox, key = rig["a"], rig["b"], rig["sandbox"], rig["key"]
    async with httpx.AsyncClient(timeout=10) as http:
        ok = await relay(http, a, key)
        assert ok.status_code == 200, ok.text
        assert ok.json() == {
            "status": 200,
            "body": {"echo": {"n": 1}, "request_id": ok.headers["x-request-id"]},
        }

        await http.put(f"{sandbox}/_sandbox/faults/echo/echo", json={"error_rate": 1.0})
        failures = [await relay(http, gw, key) for gw in (a, b, a)]
        assert [r.status_code for r in failures] == [503, 503, 503]
        assert {r.json()["type"] for r in failures} == {
            "urn:dvc-gateway:problem:upstream-unavailable"
        }

        seen = await sandbox_count(http, sandbox)
        for gw in (b, a):  # both fail fast, B although it saw only one failure itself
            refused = await relay(http, gw, key)
            assert refused.status_code == 503
            assert refused.json()["type"] == "urn:dvc-gateway:problem:circuit-open"
            assert refused.headers["retry-after"] == "1"  # the pause left, rounded up
        assert await sandbox_count(http, sandbox) == seen

        await http.delete(f"{sandbox}/_sandbox/faults")
        await asyncio.sleep(0.85)
        probe = await relay(http, b, key)  # B's probe closes it for both
        assert probe.status_code == 200
        assert (await relay(http, a, key)).status_code == 200
        assert await sandbox_count(http, sandbox) == seen + 2
