"""The outbound layer over real HTTP: OutboundClient -> uvicorn -> sandbox -> echo simulator.

Every call crosses a real socket; the store is a real SQLite file (or the real Redis where
instances must agree). Attempts are counted on the far side (the simulator's own log and the
sandbox's request counters), never by instrumenting our client.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY
from support.echo_adapter import ECHO_ADAPTER, EchoAdapter
from support.jobs_app import drop_redis_prefix
from support.uvicorn_server import free_port, serving

from gateway.adapters import AdapterRegistry
from gateway.errors import (
    BulkheadFull,
    CircuitOpen,
    ConfigurationError,
    OutboundQuotaExhausted,
    UpstreamProtocolError,
    UpstreamRateLimited,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from gateway.observability import request_id_var
from gateway.outbound import INSTANT_BACKOFF_ENV, CircuitState, OutboundClient, OutboundPolicy
from gateway.sandbox import build_sandbox
from gateway.settings import Settings
from gateway.store.base import Store
from gateway.store.sqlite import SqliteStore

TOKEN = {"Authorization": "Bearer echo-sandbox-token"}


@pytest.fixture(autouse=True)
def real_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    # these tests measure real waits unless they ask for instant ones
    monkeypatch.delenv(INSTANT_BACKOFF_ENV, raising=False)


@pytest.fixture
async def sandbox_url(tmp_path: Path) -> AsyncIterator[str]:
    settings = Settings(
        extra_adapters=[ECHO_ADAPTER],
        adapters={"echo": {}},
        store={"sqlite_path": tmp_path / "sandbox.db"},
    )
    # only the test adapter: the installed national simulators are not needed here
    registry = AdapterRegistry(settings, {"echo": EchoAdapter})
    async with serving(build_sandbox(settings, registry=registry)) as url:
        yield url


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[Store]:
    store = SqliteStore(tmp_path / "gateway.db")
    await store.open()
    yield store
    await store.close()


@pytest.fixture
async def redis_store(redis_url: str, redis_prefix: str) -> AsyncIterator[Store]:
    from gateway.store.redis import RedisStore

    store = RedisStore(redis_url, key_prefix=redis_prefix)
    await store.open()
    yield store
    await store.close()
    await drop_redis_prefix(redis_url, redis_prefix)


@pytest.fixture
async def make_client(
    sandbox_url: str, sqlite_store: Store
) -> AsyncIterator[Callable[..., OutboundClient]]:
    made: list[OutboundClient] = []

    def make(store: Store | None = None, name: str = "echo", **policy: Any) -> OutboundClient:
        client = OutboundClient(
            name,
            f"{sandbox_url}/echo",
            OutboundPolicy.model_validate(policy),
            store or sqlite_store,
        )
        made.append(client)
        return client

    yield make
    for client in made:
        await client.aclose()


async def calls_seen(sandbox_url: str, key: str) -> list[float]:
    async with httpx.AsyncClient() as http:
        r = await http.get(f"{sandbox_url}/echo/calls/{key}")
        times: list[float] = r.json()["times"]
        return times


def samples(adapter: str, operation: str, outcome: str) -> float:
    value = REGISTRY.get_sample_value(
        "gateway_upstream_requests_total",
        {"adapter": adapter, "operation": operation, "outcome": outcome},
    )
    return value or 0.0


def key() -> str:
    return uuid.uuid4().hex


# ---------------------------------------------------------------- retries


@pytest.mark.parametrize("status", [503, 429])
async def test_retry_waits_for_retry_after(
    make_client: Callable[..., OutboundClient], sandbox_url: str, status: int
) -> None:
    client = make_client(retry={"backoff_initial": 0.01, "backoff_max": 0.02})
    k = key()
    response = await client.request(
        "flaky",
        "POST",
        "/flaky",
        idempotent=True,
        json={"key": k, "failures": 1, "status": status, "retry_after": 1},
        headers=TOKEN,
    )
    assert response.status_code == 200
    first, second = await calls_seen(sandbox_url, k)
    # the jittered backoff alone is at most 20 ms: only Retry-After explains a 1 s gap
    assert 0.95 <= second - first < 1.8


async def test_retries_are_bounded_by_attempts(
    make_client: Callable[..., OutboundClient], sandbox_url: str
) -> None:
    client = make_client(retry={"max_attempts": 3, "backoff_initial": 0.01, "backoff_max": 0.05})
    k = key()
    with pytest.raises(UpstreamUnavailable) as caught:
        await client.request(
            "flaky",
            "POST",
            "/flaky",
            idempotent=True,
            json={"key": k, "failures": 10, "status": 502},
            headers=TOKEN,
        )
    assert caught.value.retryable
    assert caught.value.status == 503
    assert len(await calls_seen(sandbox_url, k)) == 3


async def test_retry_after_beyond_the_cap_is_handed_to_the_caller(
    make_client: Callable[..., OutboundClient], sandbox_url: str
) -> None:
    client = make_client(retry={"retry_after_max": 2})
    k = key()
    started = time.monotonic()
    with pytest.raises(UpstreamRateLimited) as caught:
        await client.request(
            "flaky",
            "POST",
            "/flaky",
            idempotent=True,
            json={"key": k, "failures": 5, "status": 429, "retry_after": 120},
            headers=TOKEN,
        )
    assert time.monotonic() - started < 1.0
    assert caught.value.retry_after == 120
    assert len(await calls_seen(sandbox_url, k)) == 1


@pytest.mark.parametrize("status", [400, 404, 422, 500])
async def test_non_retryable_answer_is_not_retried(
    make_client: Callable[..., OutboundClient], sandbox_url: str, status: int
) -> None:
    client = make_client(retry={"backoff_initial": 0.01})
    k = key()
    response = await client.request(
        "status",
        "POST",
        "/status",
        idempotent=True,
        json={"key": k, "status": status},
        headers=TOKEN,
    )
    # the adapter interprets business answers and SOAP faults; nothing is retried
    assert response.status_code == status
    assert len(await calls_seen(sandbox_url, k)) == 1


async def test_non_idempotent_operation_is_not_retried(
    make_client: Callable[..., OutboundClient], sandbox_url: str
) -> None:
    client = make_client(retry={"backoff_initial": 0.01})
    k = key()
    with pytest.raises(UpstreamUnavailable):
        await client.request(
            "flaky",
            "POST",
            "/flaky",
            idempotent=False,
            json={"key": k, "failures": 1, "status": 503},
            headers=TOKEN,
        )
    assert len(await calls_seen(sandbox_url, k)) == 1


async def test_idempotency_key_makes_a_command_retryable(
    make_client: Callable[..., OutboundClient], sandbox_url: str
) -> None:
    client = make_client(retry={"backoff_initial": 0.01})
    k = key()
    response = await client.request(
        "flaky",
        "POST",
        "/flaky",
        idempotent=False,
        json={"key": k, "failures": 1, "status": 503},
        headers={**TOKEN, "Idempotency-Key": k},
    )
    assert response.status_code == 200
    assert len(await calls_seen(sandbox_url, k)) == 2


async def test_connection_refused_is_retried_even_for_commands(
    sqlite_store: Store,
) -> None:
    # nothing listens there: a connect error proves the request never left
    client = OutboundClient(
        "refused",
        f"http://127.0.0.1:{free_port()}/x",
        OutboundPolicy.model_validate({"retry": {"max_attempts": 3, "backoff_initial": 0.01}}),
        sqlite_store,
    )
    before = samples("refused", "submit", "unavailable")
    try:
        with pytest.raises(UpstreamUnavailable) as caught:
            await client.request("submit", "POST", "/submit", idempotent=False, json={})
    finally:
        await client.aclose()
    assert "cannot connect" in caught.value.detail
    assert samples("refused", "submit", "unavailable") - before == 3


async def test_instant_backoff_switch_skips_the_waits(
    make_client: Callable[..., OutboundClient],
    sandbox_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(INSTANT_BACKOFF_ENV, "1")
    client = make_client()
    k = key()
    started = time.monotonic()
    response = await client.request(
        "flaky",
        "POST",
        "/flaky",
        idempotent=True,
        json={"key": k, "failures": 2, "status": 503, "retry_after": 5},
        headers=TOKEN,
    )
    assert response.status_code == 200
    assert time.monotonic() - started < 1.0
    assert len(await calls_seen(sandbox_url, k)) == 3


# ---------------------------------------------------------------- timeouts, bulkhead


async def test_total_timeout_fires(
    make_client: Callable[..., OutboundClient], sandbox_url: str
) -> None:
    client = make_client(timeouts={"total": 0.3}, retry={"max_attempts": 1})
    started = time.monotonic()
    with pytest.raises(UpstreamTimeout) as caught:
        await client.request(
            "slow", "POST", "/slow", idempotent=True, json={"seconds": 1}, headers=TOKEN
        )
    assert 0.25 <= time.monotonic() - started < 1.0
    assert caught.value.status == 504


async def test_read_timeout_per_call_fires_and_is_retried(
    make_client: Callable[..., OutboundClient], sandbox_url: str
) -> None:
    client = make_client(retry={"max_attempts": 2, "backoff_initial": 0.01})
    k = key()
    with pytest.raises(UpstreamTimeout):
        await client.request(
            "slow",
            "POST",
            "/slow",
            idempotent=True,
            json={"key": k, "seconds": 1},
            headers=TOKEN,
            timeout=0.2,
        )
    assert len(await calls_seen(sandbox_url, k)) == 2


async def test_bulkhead_sheds_load_at_once(
    make_client: Callable[..., OutboundClient], sandbox_url: str
) -> None:
    client = make_client(bulkhead={"max_concurrent": 2})

    async def slow_call() -> tuple[str, float]:
        started = time.monotonic()
        try:
            await client.request(
                "slow", "POST", "/slow", idempotent=True, json={"seconds": 0.5}, headers=TOKEN
            )
        except BulkheadFull:
            return "shed", time.monotonic() - started
        return "ok", time.monotonic() - started

    results = await asyncio.gather(*(slow_call() for _ in range(6)))
    outcomes = sorted(r[0] for r in results)
    assert outcomes == ["ok", "ok", "shed", "shed", "shed", "shed"]
    assert all(elapsed < 0.2 for outcome, elapsed in results if outcome == "shed")
    # the slots come back: a later call goes through
    r = await client.request("echo", "POST", "/echo", idempotent=True, json={}, headers=TOKEN)
    assert r.status_code == 200
    assert client.stats().in_flight == 0


# ---------------------------------------------------------------- circuit breaker


async def put_fault(sandbox_url: str, operation: str, spec: dict[str, Any]) -> None:
    async with httpx.AsyncClient() as http:
        r = await http.put(f"{sandbox_url}/_sandbox/faults/echo/{operation}", json=spec)
        assert r.status_code == 200, r.text


async def clear_faults(sandbox_url: str) -> None:
    async with httpx.AsyncClient() as http:
        (await http.delete(f"{sandbox_url}/_sandbox/faults")).raise_for_status()


async def seen_by_sandbox(sandbox_url: str, operation: str) -> int:
    async with httpx.AsyncClient() as http:
        data = (await http.get(f"{sandbox_url}/_sandbox/requests")).json()
    return int(data["requests"].get("echo", {}).get(operation, 0))


CIRCUIT = {
    "retry": {"max_attempts": 1},
    "circuit": {"failure_threshold": 3, "open_duration": 0.6, "state_cache_seconds": 0},
}


async def echo(client: OutboundClient) -> int:
    r = await client.request("echo", "POST", "/echo", idempotent=True, json={}, headers=TOKEN)
    return r.status_code


async def test_circuit_opens_fails_fast_half_opens_with_one_probe_and_closes(
    make_client: Callable[..., OutboundClient], sandbox_url: str
) -> None:
    client = make_client(**CIRCUIT)
    await put_fault(sandbox_url, "echo", {"error_rate": 1.0, "status": 503})
    for _ in range(3):
        with pytest.raises(UpstreamUnavailable):
            await echo(client)
    assert await client.circuit_state() == CircuitState.OPEN
    seen = await seen_by_sandbox(sandbox_url, "echo")

    # open: fails fast, nothing reaches the system, the caller is told when to come back
    started = time.monotonic()
    with pytest.raises(CircuitOpen) as caught:
        await echo(client)
    assert time.monotonic() - started < 0.2
    assert caught.value.retry_after is not None and 0 < caught.value.retry_after <= 0.6
    assert await seen_by_sandbox(sandbox_url, "echo") == seen

    # the system recovers (slowly), the pause ends: exactly one probe goes through
    await clear_faults(sandbox_url)
    await put_fault(sandbox_url, "echo", {"latency_ms": 300})
    await asyncio.sleep(0.65)
    assert await client.circuit_state() == CircuitState.HALF_OPEN
    results = await asyncio.gather(*(echo(client) for _ in range(5)), return_exceptions=True)
    assert sum(1 for r in results if r == 200) == 1
    assert sum(1 for r in results if isinstance(r, CircuitOpen)) == 4
    assert await seen_by_sandbox(sandbox_url, "echo") == seen + 1

    # the probe succeeded: closed again, calls flow
    assert await client.circuit_state() == CircuitState.CLOSED
    await clear_faults(sandbox_url)
    assert [await echo(client) for _ in range(3)] == [200, 200, 200]


async def test_failed_probe_opens_the_circuit_again(
    make_client: Callable[..., OutboundClient], sandbox_url: str
) -> None:
    client = make_client(**CIRCUIT)
    await put_fault(sandbox_url, "echo", {"error_rate": 1.0, "status": 502})
    for _ in range(3):
        with pytest.raises(UpstreamUnavailable):
            await echo(client)
    await asyncio.sleep(0.65)
    with pytest.raises(UpstreamUnavailable):  # the probe, still failing
        await echo(client)
    assert await client.circuit_state() == CircuitState.OPEN
    with pytest.raises(CircuitOpen):
        await echo(client)
    await clear_faults(sandbox_url)


async def test_business_errors_do_not_open_the_circuit(
    make_client: Callable[..., OutboundClient], sandbox_url: str
) -> None:
    client = make_client(**CIRCUIT)
    for _ in range(5):
        r = await client.request(
            "status", "POST", "/status", idempotent=True, json={"status": 422}, headers=TOKEN
        )
        assert r.status_code == 422
    assert await client.circuit_state() == CircuitState.CLOSED


async def test_success_resets_the_failure_count(
    make_client: Callable[..., OutboundClient], sandbox_url: str
) -> None:
    client = make_client(**CIRCUIT)
    for _ in range(3):
        await put_fault(sandbox_url, "echo", {"error_rate": 1.0, "count": 2})
        for _ in range(2):
            with pytest.raises(UpstreamUnavailable):
                await echo(client)
        assert await echo(client) == 200
    # six failures in all, never three in a row
    assert await client.circuit_state() == CircuitState.CLOSED


async def test_clients_sharing_a_redis_store_see_one_circuit(
    make_client: Callable[..., OutboundClient], sandbox_url: str, redis_store: Store
) -> None:
    a = make_client(store=redis_store, **CIRCUIT)
    b = make_client(store=redis_store, **CIRCUIT)
    await put_fault(sandbox_url, "echo", {"error_rate": 1.0})
    with pytest.raises(UpstreamUnavailable):
        await echo(a)
    with pytest.raises(UpstreamUnavailable):
        await echo(b)
    with pytest.raises(UpstreamUnavailable):
        await echo(a)  # the third failure across both instances opens it
    seen = await seen_by_sandbox(sandbox_url, "echo")
    with pytest.raises(CircuitOpen):
        await echo(b)  # b never saw the threshold itself
    assert await seen_by_sandbox(sandbox_url, "echo") == seen
    await clear_faults(sandbox_url)
    await asyncio.sleep(0.65)
    assert await echo(b) == 200  # b's probe closes it for everyone
    assert await a.circuit_state() == CircuitState.CLOSED
    assert await echo(a) == 200


# ---------------------------------------------------------------- quota, request id, SSRF


async def test_outbound_quota_is_shared_by_instances(
    make_client: Callable[..., OutboundClient], store: Store
) -> None:
    # an hour-long window, and never its last seconds: the test cannot straddle two windows
    period = 3600.0
    if (left := period - time.time() % period) < 5:
        await asyncio.sleep(left + 0.1)
    # a generous retry policy: the quota's refusal must still not be waited out by retries
    # (in the last 30 s of a window it once was, and the call went through in the next one)
    policy = {
        "rate_limit": {"limit": 3, "period": period, "max_wait": 0},
        "retry": {"retry_after_max": 2 * period, "deadline": 2 * period},
    }
    name = f"quota-{key()[:8]}"  # its own counter, whatever ran before
    a = make_client(store=store, name=name, **policy)
    b = make_client(store=store, name=name, **policy)
    assert [await echo(client) for client in (a, b, a)] == [200, 200, 200]
    for client in (b, a):
        started = time.monotonic()
        with pytest.raises(OutboundQuotaExhausted) as caught:
            await echo(client)
        assert time.monotonic() - started < 1.0  # refused at once, not retried
        assert caught.value.retry_after is not None and 0 < caught.value.retry_after <= period
        assert caught.value.slug == "outbound-quota-exhausted"


async def test_the_gateway_names_itself_even_when_a_library_replaces_the_client_headers(
    make_client: Callable[..., OutboundClient],
) -> None:
    client = make_client()
    client.http.headers = httpx.Headers({"User-Agent": "Zeep/4.3"})  # as AsyncTransport does
    direct = await client.request("headers", "POST", "/headers", idempotent=True, headers=TOKEN)
    with client.operation("headers", idempotent=True):
        through_http = await client.http.post("/headers", headers=TOKEN)
    for response in (direct, through_http):
        assert response.json()["user_agent"].startswith("dvc-gateway")


async def test_request_id_travels_upstream(make_client: Callable[..., OutboundClient]) -> None:
    client = make_client()
    token = request_id_var.set("req-4711")
    try:
        r = await client.request(
            "echo", "POST", "/echo", idempotent=True, json={"a": 1}, headers=TOKEN
        )
    finally:
        request_id_var.reset(token)
    assert r.json() == {"echo": {"a": 1}, "request_id": "req-4711"}


async def test_only_the_configured_base_url_is_reachable(
    make_client: Callable[..., OutboundClient], sandbox_url: str
) -> None:
    client = make_client()
    with pytest.raises(ConfigurationError):
        await client.request("x", "GET", "http://169.254.169.254/latest", idempotent=True)
    with pytest.raises(ConfigurationError):
        await client.http.get(f"{sandbox_url}/other/ping")  # same host, another system
    assert (await client.http.get(f"{sandbox_url}/echo/ping")).json() == {"ok": True}


async def test_http_client_names_soap_operations_for_zeep(
    make_client: Callable[..., OutboundClient], sandbox_url: str
) -> None:
    client = make_client()
    before = samples("echo", "Echo", "ok")
    r = await client.http.post(
        f"{sandbox_url}/echo/echo",
        content=b"{}",
        headers={**TOKEN, "SOAPAction": '"http://example.vn/svc/Echo"'},
    )
    assert r.status_code == 200
    assert samples("echo", "Echo", "ok") - before == 1
    with client.operation("EchoQuery", idempotent=True):
        await client.http.post(f"{sandbox_url}/echo/echo", content=b"{}", headers=TOKEN)
    assert samples("echo", "EchoQuery", "ok") >= 1


async def test_stats_record_outcomes_and_latency(
    make_client: Callable[..., OutboundClient], sandbox_url: str
) -> None:
    client = make_client(retry={"max_attempts": 1})
    for _ in range(3):
        await echo(client)
    await put_fault(sandbox_url, "echo", {"error_rate": 1.0, "count": 1})
    with pytest.raises(UpstreamUnavailable):
        await echo(client)
    stats = client.stats()
    echo_stats = stats.operations["echo"]
    assert echo_stats.calls_5m == 4 and echo_stats.errors_5m == 1
    assert echo_stats.error_rate_5m == 0.25
    assert echo_stats.p50_ms is not None and 0 < echo_stats.p50_ms < 1000
    assert echo_stats.last_success is not None and echo_stats.last_failure is not None
    assert "503" in (echo_stats.last_failure_reason or "")
    assert stats.as_dict()["overall"]["calls_1h"] == 4


# ---------------------------------------------------------------- both connection pools


@pytest.mark.parametrize("transport", ["aiohttp", "httpx"])
async def test_both_pools_classify_faults_alike(
    make_client: Callable[..., OutboundClient],
    sandbox_url: str,
    sqlite_store: Store,
    transport: str,
) -> None:
    client = make_client(
        transport=transport,
        retry={"max_attempts": 2, "backoff_initial": 0.01},
        timeouts={"total": 0.3},
    )
    # a compressed answer is decoded; a corrupt encoding is a protocol error, not retried
    r = await client.request("gzip", "POST", "/gzip", idempotent=True, json={"a": 1}, headers=TOKEN)
    assert r.json() == {"echo": {"a": 1}}
    with pytest.raises(UpstreamProtocolError):
        await client.request(
            "gzip", "POST", "/gzip", idempotent=True, json={"broken": True}, headers=TOKEN
        )
    # a connection dropped mid-answer: the command may have run, so it is not retried
    await put_fault(sandbox_url, "echo", {"drop_rate": 1.0})
    with pytest.raises(UpstreamUnavailable) as dropped:
        await client.request("echo", "POST", "/echo", idempotent=False, json={}, headers=TOKEN)
    assert "dropped" in dropped.value.detail
    assert await seen_by_sandbox(sandbox_url, "echo") == 1
    # a hang hits the total limit on every attempt
    await put_fault(sandbox_url, "echo", {"timeout_rate": 1.0})
    with pytest.raises(UpstreamTimeout):
        await client.request("echo", "POST", "/echo", idempotent=True, json={}, headers=TOKEN)
    assert await seen_by_sandbox(sandbox_url, "echo") == 3
    await clear_faults(sandbox_url)
    # nothing listens there: never sent, so retried even for a command
    dead = OutboundClient(
        "dead",
        f"http://127.0.0.1:{free_port()}/x",
        OutboundPolicy.model_validate({"transport": transport, "retry": {"max_attempts": 2}}),
        sqlite_store,
    )
    before = samples("dead", "submit", "unavailable")
    try:
        with pytest.raises(UpstreamUnavailable):
            await dead.request("submit", "POST", "/submit", idempotent=False, json={})
    finally:
        await dead.aclose()
    assert samples("dead", "submit", "unavailable") - before == 2
