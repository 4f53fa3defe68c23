"""A test-only adapter with a tiny simulator, to show the outbound layer and the sandbox over
real HTTP without depending on any national system.

Enable it with ``extra_adapters = ["support.echo_adapter:EchoAdapter"]`` (``tests/`` on
the import path, as pytest puts it) and ``[adapters.echo]``. The simulator (plain ASGI, so
it costs next to nothing in benchmarks) serves, under ``/echo/``:

- ``GET /ping``: ``{"ok": true}`` (the probe)
- ``POST /echo``: the JSON body back, with the ``X-Request-ID`` it received
- ``POST /flaky``: body ``{"key", "failures", "status", "retry_after"}``: the first
  ``failures`` calls with that key answer ``status`` (default 503, with ``Retry-After`` when
  given), later ones 200
- ``POST /slow``: body ``{"seconds"}``: answers after that long
- ``POST /gzip``: the echo, gzip-encoded (``{"broken": true}``: a corrupt encoding)
- ``POST /status``: body ``{"status", "retry_after"}``: answers that status
- ``GET /calls/{key}``: ``{"count", "times"}`` of the calls seen with that key (flaky, slow,
  status, echo), so tests can count attempts and measure the gaps between them

On the gateway side, :func:`echo_routes` gives ``POST /v1/_echo/{operation}`` (scope
``echo:call``), which relays ``{"payload", "idempotent", "timeout"}`` (and the caller's
``Idempotency-Key``) through the adapter's OutboundClient. :func:`create_app_from_env` is the
uvicorn factory the benchmark and the multi-instance tests use.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, ClassVar

from litestar import Litestar, Request, post
from litestar.datastructures import State

from gateway.adapters import Adapter, AdapterConfig, ProbeResult, SimulatorContext
from gateway.outbound import OutboundClient
from gateway.runtime import Runtime

__all__ = [
    "ECHO_ADAPTER",
    "EchoAdapter",
    "EchoSimulator",
    "create_app_from_env",
    "echo_routes",
]

ECHO_ADAPTER = "support.echo_adapter:EchoAdapter"

Scope = MutableMapping[str, Any]
Message = dict[str, Any]


class EchoConfig(AdapterConfig):
    #: a credential the simulator insists on, as real systems do
    api_token: str = "echo-sandbox-token"


class EchoSimulator:
    """The echo system's fake: plain ASGI, state in memory."""

    def __init__(self, ctx: SimulatorContext) -> None:
        self.ctx = ctx
        config = ctx.config
        self.token = config.api_token if isinstance(config, EchoConfig) else None
        self.calls: dict[str, list[float]] = {}

    async def __call__(
        self,
        scope: Scope,
        receive: Callable[[], Awaitable[Message]],
        send: Callable[[Message], Awaitable[None]],
    ) -> None:
        if scope["type"] == "lifespan":
            message = await receive()
            await send({"type": "lifespan.startup.complete"})
            message = await receive()
            if message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        path = scope["path"][len(scope.get("root_path", "")) :]
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        status, answer, extra = await self.handle(scope["method"], path, body, headers)
        raw = answer if isinstance(answer, bytes) else json.dumps(answer).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(raw)).encode()),
                    *extra,
                ],
            }
        )
        await send({"type": "http.response.body", "body": raw})

    def _seen(self, key: str | None) -> int:
        if not key:
            return 0
        times = self.calls.setdefault(key, [])
        times.append(time.time())
        return len(times)

    async def handle(
        self, method: str, path: str, body: bytes, headers: dict[str, str]
    ) -> tuple[int, Any, list[tuple[bytes, bytes]]]:
        if path == "/ping":
            return 200, {"ok": True}, []
        if path.startswith("/calls/"):
            times = self.calls.get(path[len("/calls/") :], [])
            return 200, {"count": len(times), "times": times}, []
        if self.token and headers.get("authorization") != f"Bearer {self.token}":
            return 401, {"title": "bad token"}, []
        try:
            data = json.loads(body) if body else {}
        except ValueError:
            return 400, {"title": "body is not JSON"}, []
        key = data.get("key") if isinstance(data, dict) else None
        seen = self._seen(key)
        if path == "/echo":
            return 200, {"echo": data, "request_id": headers.get("x-request-id")}, []
        if path == "/headers":
            return 200, {"user_agent": headers.get("user-agent")}, []
        if path == "/gzip":
            packed = gzip.compress(json.dumps({"echo": data}).encode())
            if data.get("broken"):
                packed = packed[:10] + b"not gzip at all"
            return 200, packed, [(b"content-encoding", b"gzip")]
        if path == "/slow":
            await asyncio.sleep(float(data.get("seconds", 1.0)))
            return 200, {"slept": data.get("seconds", 1.0)}, []
        if path in ("/flaky", "/status"):
            failing = path == "/status" or seen <= int(data.get("failures", 1))
            if not failing:
                return 200, {"ok": True, "attempt": seen}, []
            status = int(data.get("status", 503))
            extra = []
            if data.get("retry_after") is not None:
                extra.append((b"retry-after", str(data["retry_after"]).encode()))
            return status, {"title": "simulated failure", "attempt": seen}, extra
        return 404, {"title": "no such operation"}, []


class EchoAdapter(Adapter):
    name: ClassVar[str] = "echo"
    title: ClassVar[str] = "Echo (test-only)"
    title_vi: ClassVar[str] = "Echo (chỉ dùng để kiểm thử)"
    config_model: ClassVar[type[AdapterConfig]] = EchoConfig

    client: OutboundClient

    async def start(self) -> None:
        self.client = self.context.outbound(None)

    def _headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        assert isinstance(self.config, EchoConfig)
        return {"Authorization": f"Bearer {self.config.api_token}", **(extra or {})}

    async def call(
        self,
        operation: str,
        payload: Any,
        *,
        idempotent: bool,
        idempotency_key: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - per-attempt limit
    ) -> tuple[int, Any]:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        response = await self.client.request(
            operation,
            "POST",
            f"/{operation}",
            idempotent=idempotent,
            json=payload,
            headers=self._headers(headers),
            timeout=timeout,
        )
        return response.status_code, response.json()

    async def probe(self) -> ProbeResult:
        started = time.perf_counter()
        response = await self.client.request("ping", "GET", "/ping", idempotent=True)
        return ProbeResult(
            ok=response.status_code == 200, latency_ms=(time.perf_counter() - started) * 1000
        )

    @classmethod
    def simulator(cls, ctx: SimulatorContext) -> Any:
        return EchoSimulator(ctx)


@post("/v1/_echo/{operation:str}", opt={"scopes": ["echo:call"]}, status_code=200)
async def relay(operation: str, request: Request[Any, Any, State], runtime: Runtime) -> Any:
    """Test-only: call the echo system through the adapter's OutboundClient."""
    data = await request.json()
    adapter = runtime.registry.instances["echo"]
    assert isinstance(adapter, EchoAdapter)
    status, body = await adapter.call(
        operation,
        data.get("payload", {}),
        idempotent=bool(data.get("idempotent", True)),
        idempotency_key=request.headers.get("idempotency-key"),
        timeout=data.get("timeout"),
    )
    return {"status": status, "body": body}


@post("/v1/_echo_local", opt={"scopes": ["echo:call"]}, status_code=200)
async def local(request: Request[Any, Any, State]) -> Any:
    """Test-only: the same route shape without the upstream call (splits the overhead)."""
    data = await request.json()
    return {"status": 200, "body": {"echo": data.get("payload", {}), "request_id": None}}


def echo_routes() -> list[Any]:
    return [relay, local]


def with_echo_routes(app: Litestar) -> Litestar:
    for route in echo_routes():
        app.register(route)
    return app


def create_app_from_env() -> Litestar:
    """uvicorn factory: the real gateway app (settings from GATEWAY_CONFIG and GATEWAY_*)
    plus the test-only relay route."""
    from gateway.app import create_app
    from gateway.settings import load_settings

    sandbox = os.environ.get("GATEWAY_SANDBOX_URL") or None
    return with_echo_routes(create_app(load_settings(), sandbox_url=sandbox))
