"""Webhook deliveries per second, end to end, beside the ceiling of the same receiver.

For each store backend: publish N events (one endpoint), then time from the first publish
until the receiver has verified all N deliveries. The reference, in the same run: the same
receiver (verifying every signature) hit by N signed POSTs straight from httpx with the same
concurrency as the gateway's workers, so the ratio shows what the durable path costs (store
writes for the event, the job, the lease, the ack and the audit record per delivery).

    .venv/bin/python bench/webhooks.py [--events 1000] [--workers 4]

Redis comes from GATEWAY_TEST_REDIS_URL (default redis://127.0.0.1:6379/0), under a
throw-away key prefix deleted afterwards.
"""

from __future__ import annotations

if not __package__:  # run as a file: keep bench/ (its queue.py) off sys.path, see _bootstrap
    import _bootstrap  # noqa: F401

import argparse
import asyncio
import base64
import os
import secrets
import socket
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from bench._common import drop_redis_prefix
from gateway.runtime import Runtime
from gateway.settings import Settings
from gateway.store.base import Event
from gateway.webhook_receiver import WebhookReceiver
from gateway.webhooks import event_body, sign_headers

PREFIX = f"dvcgw-bench-{uuid.uuid4().hex[:8]}:"


@asynccontextmanager
async def serving(app: Any) -> AsyncIterator[str]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(app, log_config=None, log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:  # noqa: ASYNC110 - uvicorn offers no event to wait on
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        await task
        sock.close()


async def ceiling(url: str, secret: str, n: int, concurrency: int) -> float:
    """Signed POSTs straight to the receiver: deliveries/s without the gateway."""
    receiver_queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(n):
        receiver_queue.put_nowait(i)
    async with httpx.AsyncClient(timeout=30) as http:

        async def worker() -> None:
            while not receiver_queue.empty():
                i = receiver_queue.get_nowait()
                event = Event(
                    id=f"ceiling-{i}", type="bench.ping", occurred_at=time.time(), data={"i": i}
                )
                body = event_body(event)
                headers = sign_headers(secret, event.id, body, time.time())
                headers["content-type"] = "application/json"
                response = await http.post(url, content=body, headers=headers)
                assert response.status_code == 204

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return n / (time.perf_counter() - started)


def gateway_settings(backend: str, url: str, secret: str, workers: int, tmp: Path) -> Settings:
    redis_url = os.environ.get("GATEWAY_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    store: dict[str, Any] = (
        {"backend": "redis", "redis_url": redis_url, "key_prefix": PREFIX}
        if backend == "redis"
        else {"backend": "sqlite", "sqlite_path": str(tmp / f"{backend}.db")}
    )
    return Settings.model_validate(
        {
            "store": store,
            "adapters": {},
            "capabilities": {},
            "security": {"clients_file": str(tmp / "clients.toml")},
            "jobs": {"workers": workers, "poll_interval": 0.01, "scheduler_enabled": False},
            "webhooks": {"endpoints": [{"id": "bench", "url": url, "secret": secret}]},
            "logging": {"level": "ERROR"},
        }
    )


async def through_gateway(
    backend: str, url: str, receiver: WebhookReceiver, n: int, workers: int, tmp: Path
) -> tuple[float, float]:
    """(events published/s, deliveries/s) for one backend, each measured on its own: first
    N events are published with no worker running, then the workers start and deliver."""
    publisher = Runtime.build(gateway_settings(backend, url, receiver.secret, 0, tmp))
    await publisher.start()
    try:
        started = time.perf_counter()
        for i in range(n):
            await publisher.events.publish("bench.ping", {"i": i})
        publish_rate = n / (time.perf_counter() - started)
    finally:
        await publisher.stop()
    before = len(receiver.verified)
    runtime = Runtime.build(gateway_settings(backend, url, receiver.secret, workers, tmp))
    started = time.perf_counter()
    await runtime.start()
    try:
        await receiver.wait_for(lambda d: sum(1 for x in d if x.verified) >= before + n, within=600)
        delivery_rate = n / (time.perf_counter() - started)
    finally:
        await runtime.stop()
        if backend == "redis":
            await drop_redis_prefix(
                os.environ.get("GATEWAY_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"), PREFIX
            )
    return publish_rate, delivery_rate


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()
    os.environ["GATEWAY_CONFIG"] = "/nonexistent/gateway.toml"  # only what this script says
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    receiver = WebhookReceiver(secret)
    rows: list[tuple[str, float, float | None]] = []
    with tempfile.TemporaryDirectory() as tmp:
        async with serving(receiver) as url:
            ref = await ceiling(url, secret, args.events, args.workers)
            rows.append(("signed POSTs, no gateway (ceiling)", ref, None))
            for backend in ("sqlite", "redis"):
                publish_rate, rate = await through_gateway(
                    backend, url, receiver, args.events, args.workers, Path(tmp)
                )
                name = f"gateway, {backend} (events published alone: {publish_rate:,.0f}/s)"
                rows.append((name, rate, ref))
    print(f"\nwebhook deliveries/s: {args.events} events, {args.workers} workers/concurrency\n")
    print(f"{'path':<56} {'deliveries/s':>13} {'vs ceiling':>11}")
    for name, rate, reference in rows:
        ratio = f"{rate / reference:.2f}x" if reference else "1.00x"
        print(f"{name:<56} {rate:>13,.0f} {ratio:>11}")


if __name__ == "__main__":
    asyncio.run(main())
