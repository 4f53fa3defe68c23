"""The sandbox over real HTTP: faults set at run time (and in the configuration) take effect,
per system and operation, reproducibly; the control API is local-only."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest
from support.echo_adapter import ECHO_ADAPTER, EchoAdapter
from support.uvicorn_server import serving

from gateway.adapters import Adapter, AdapterRegistry
from gateway.errors import UpstreamTimeout, UpstreamUnavailable
from gateway.outbound import INSTANT_BACKOFF_ENV, OutboundClient, OutboundPolicy
from gateway.sandbox import SandboxApp, build_sandbox
from gateway.settings import Settings
from gateway.store.base import Store
from gateway.store.sqlite import SqliteStore

TOKEN = {"Authorization": "Bearer echo-sandbox-token"}


class BodyOperationAdapter(EchoAdapter):
    """Like SOAP: the operation travels in the body, not the path."""

    name: ClassVar[str] = "rpc"

    @classmethod
    def simulator_operation(cls, path: str, body: bytes) -> str:
        return body.split(b"op=", 1)[1].split(b";", 1)[0].decode() if b"op=" in body else "?"


def settings_for(tmp_path: Path, **extra: Any) -> Settings:
    return Settings(
        extra_adapters=[ECHO_ADAPTER],
        adapters={"echo": {}},
        store={"sqlite_path": tmp_path / "sandbox.db"},
        **extra,
    )


@pytest.fixture(autouse=True)
def real_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(INSTANT_BACKOFF_ENV, raising=False)


def echo_only(settings: Settings) -> SandboxApp:
    # only the test adapter: the installed national simulators are not needed here
    return build_sandbox(settings, registry=AdapterRegistry(settings, {"echo": EchoAdapter}))


@pytest.fixture
async def sandbox(tmp_path: Path) -> AsyncIterator[str]:
    async with serving(echo_only(settings_for(tmp_path))) as url:
        yield url


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = SqliteStore(tmp_path / "gateway.db")
    await s.open()
    yield s
    await s.close()


async def echo_raw(http: httpx.AsyncClient, base: str, operation: str = "echo") -> httpx.Response:
    return await http.post(f"{base}/echo/{operation}", json={"x": 1}, headers=TOKEN)


async def test_every_simulator_is_served_under_its_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GATEWAY_CONFIG", "config/gateway.toml")  # the national adapters too
    settings = settings_for(tmp_path)
    app = build_sandbox(settings)
    with_simulator = {
        name
        for name, cls in AdapterRegistry.from_settings(settings).available.items()
        if cls.simulator.__func__ is not Adapter.simulator.__func__  # type: ignore[attr-defined]
    }
    assert "echo" in with_simulator and len(with_simulator) > 1
    assert set(app.simulators) == with_simulator
    assert app.index()["simulators"]["echo"] == "http://127.0.0.1:8081/echo"


async def test_unknown_system_is_a_problem(sandbox: str) -> None:
    async with httpx.AsyncClient() as http:
        missing = await http.get(f"{sandbox}/nowhere/x")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"


async def test_runtime_latency_and_error_faults_per_operation(sandbox: str) -> None:
    async with httpx.AsyncClient() as http:
        r = await http.put(f"{sandbox}/_sandbox/faults/echo/echo", json={"latency_ms": 250})
        assert r.json()["faults"] == {"echo": {"echo": {"latency_ms": 250.0}}}
        r = await http.put(
            f"{sandbox}/_sandbox/faults/echo/status",
            json={"error_rate": 1, "status": 429, "retry_after": 7},
        )
        started = time.monotonic()
        slow = await echo_raw(http, sandbox)
        elapsed = time.monotonic() - started
        limited = await http.post(f"{sandbox}/echo/status", json={"status": 200}, headers=TOKEN)
        # another operation of the same system is untouched
        other = await http.get(f"{sandbox}/echo/ping")
        await http.delete(f"{sandbox}/_sandbox/faults/echo/echo")
        started = time.monotonic()
        fast = await echo_raw(http, sandbox)
        fast_elapsed = time.monotonic() - started
        counters = (await http.get(f"{sandbox}/_sandbox/requests")).json()
    assert slow.status_code == 200 and elapsed >= 0.25
    assert fast.status_code == 200 and fast_elapsed < 0.2
    assert limited.status_code == 429 and limited.headers["retry-after"] == "7"
    assert other.status_code == 200
    assert counters["requests"]["echo"]["echo"] == 2
    assert counters["faults"]["echo"]["status"] == {"error": 1}


async def test_count_limits_a_fault_to_the_next_requests(sandbox: str) -> None:
    async with httpx.AsyncClient() as http:
        await http.put(
            f"{sandbox}/_sandbox/faults/echo/*", json={"error_rate": 1, "status": 502, "count": 2}
        )
        statuses = [(await echo_raw(http, sandbox)).status_code for _ in range(4)]
        table = (await http.get(f"{sandbox}/_sandbox/faults")).json()
    assert statuses == [502, 502, 200, 200]
    assert table["faults"] == {}


async def test_malformed_dropped_and_hanging_answers(sandbox: str, store: Store) -> None:
    client = OutboundClient(
        "echo",
        f"{sandbox}/echo",
        OutboundPolicy.model_validate({"retry": {"max_attempts": 1}, "timeouts": {"total": 0.4}}),
        store,
    )
    try:
        async with httpx.AsyncClient() as http:
            await http.put(f"{sandbox}/_sandbox/faults/echo/echo", json={"malformed_rate": 1})
            garbled = await client.request(
                "echo", "POST", "/echo", idempotent=True, json={"a": 1}, headers=TOKEN
            )
            await http.put(f"{sandbox}/_sandbox/faults/echo/echo", json={"drop_rate": 1})
            with pytest.raises(UpstreamUnavailable) as dropped:
                await client.request(
                    "echo", "POST", "/echo", idempotent=True, json={}, headers=TOKEN
                )
            await http.put(f"{sandbox}/_sandbox/faults/echo/echo", json={"timeout_rate": 1})
            started = time.monotonic()
            with pytest.raises(UpstreamTimeout):
                await client.request(
                    "echo", "POST", "/echo", idempotent=True, json={}, headers=TOKEN
                )
            hung_for = time.monotonic() - started
            await http.delete(f"{sandbox}/_sandbox/faults")
            healthy = await client.request(
                "echo", "POST", "/echo", idempotent=True, json={"a": 1}, headers=TOKEN
            )
    finally:
        await client.aclose()
    assert garbled.status_code == 200
    assert garbled.headers["content-type"] == "application/json"
    with pytest.raises(ValueError):
        garbled.json()
    assert "dropped" in dropped.value.detail
    assert 0.35 <= hung_for < 1.5
    assert healthy.json()["echo"] == {"a": 1}


async def test_error_rate_is_reproducible_from_the_seed(sandbox: str) -> None:
    async def pattern(http: httpx.AsyncClient, seed: int) -> list[int]:
        await http.put(
            f"{sandbox}/_sandbox/faults",
            json={"seed": seed, "faults": {"echo": {"echo": {"error_rate": 0.5}}}},
        )
        return [(await echo_raw(http, sandbox)).status_code for _ in range(30)]

    async with httpx.AsyncClient() as http:
        first = await pattern(http, 7)
        again = await pattern(http, 7)
        other = await pattern(http, 8)
    assert first == again
    assert first != other
    assert 5 < first.count(503) < 25  # roughly half, not all or nothing


async def test_faults_from_the_configuration(tmp_path: Path) -> None:
    settings = settings_for(
        tmp_path,
        sandbox={"faults": {"echo": {"ping": {"error_rate": 1.0, "status": 500}}}},
    )
    async with serving(echo_only(settings)) as base, httpx.AsyncClient() as http:
        ping = await http.get(f"{base}/echo/ping")
        echoed = await echo_raw(http, base)
    assert ping.status_code == 500
    assert echoed.status_code == 200


async def test_operation_named_by_the_adapter_from_the_body(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    registry = AdapterRegistry(settings, {"echo": EchoAdapter, "rpc": BodyOperationAdapter})
    app = build_sandbox(settings, registry=registry)
    async with serving(app) as base, httpx.AsyncClient() as http:
        await http.put(f"{base}/_sandbox/faults/rpc/Lookup", json={"error_rate": 1})
        lookup = await http.post(f"{base}/rpc/echo", content=b"op=Lookup;", headers=TOKEN)
        submit = await http.post(f"{base}/rpc/echo", content=b"op=Submit;", headers=TOKEN)
        plain = await echo_raw(http, base)
    assert lookup.status_code == 503
    assert submit.status_code == 400  # reached the simulator (which wants JSON)
    assert plain.status_code == 200


async def test_invalid_fault_is_refused_with_the_reason(sandbox: str) -> None:
    async with httpx.AsyncClient() as http:
        bad_rate = await http.put(f"{sandbox}/_sandbox/faults/echo/echo", json={"error_rate": 2})
        too_much = await http.put(
            f"{sandbox}/_sandbox/faults/echo/echo", json={"error_rate": 0.7, "drop_rate": 0.7}
        )
        unknown = await http.put(f"{sandbox}/_sandbox/faults/echo/echo", json={"latency": 5})
    assert bad_rate.status_code == 422 and "error_rate" in bad_rate.json()["detail"]
    assert too_much.status_code == 422 and "<= 1" in too_much.json()["detail"]
    assert unknown.status_code == 422 and "latency" in unknown.json()["detail"]


async def test_control_api_refuses_remote_clients(tmp_path: Path) -> None:
    app = echo_only(settings_for(tmp_path))
    remote = httpx.ASGITransport(app=app, client=("203.0.113.9", 40000))
    local = httpx.ASGITransport(app=app, client=("127.0.0.1", 40000))
    async with httpx.AsyncClient(transport=remote, base_url="http://sandbox") as http:
        refused = await http.put("/_sandbox/faults/echo/echo", json={"error_rate": 1})
        listed = await http.get("/_sandbox/faults")
        simulator = await http.get("/echo/ping")
    async with httpx.AsyncClient(transport=local, base_url="http://sandbox") as http:
        allowed = await http.get("/_sandbox/faults")
    assert refused.status_code == 403 and listed.status_code == 403
    assert simulator.status_code == 200  # the simulators themselves are not restricted
    assert allowed.status_code == 200 and allowed.json()["faults"] == {}
