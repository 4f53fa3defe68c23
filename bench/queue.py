"""Jobs per second end to end (enqueue -> acknowledged), beside the raw ceiling of the store.

For each backend (SQLite file, Redis), in one process, with the workers running while a
producer enqueues: N no-op jobs, N jobs that each POST to a local HTTP receiver, and N
webhook deliveries (events published through the EventPublisher, one endpoint). The clock
runs from the first enqueue until the last job is acknowledged.

References measured in the same run:
- SQLite: a bare loop of INSERT and DELETE, one transaction each, on a WAL file with the
  store's pragmas; a job costs three write transactions (enqueue, lease, ack), so the job
  ceiling is that rate / 3;
- Redis: ``redis-benchmark`` for the operations the store uses (EVALSHA of a script, and the
  HSET / ZADD the scripts do), 50 clients; a job costs three script calls, so the job
  ceiling is the EVALSHA rate / 3;
- HTTP: the same receiver hit by plain httpx POSTs at the workers' concurrency.

    .venv/bin/python bench/queue.py [--jobs 5000] [--workers 16] [--backends sqlite,redis]

Targets on the project's 2-core machine: >= 2,000 no-op jobs/s on Redis, >= 1,000 on SQLite.
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
import re
import secrets
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx

from bench._common import drop_redis_prefix, free_port
from gateway.jobs import JobQueue, WorkerPool
from gateway.observability import configure_logging
from gateway.runtime import Runtime
from gateway.settings import JobSettings, LoggingSettings, Settings
from gateway.store.base import Job, Store

REDIS_URL = os.environ.get("GATEWAY_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
PREFIX = f"dvcgw-bench-{uuid.uuid4().hex[:8]}:"
NOOP, HTTP = "bench.noop", "bench.http"


# ---------------------------------------------------------------- the receiver (own process)


async def receiver_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Plain ASGI: read the body, answer 200. Costs next to nothing."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]}
    )
    await send({"type": "http.response.body", "body": b"{}"})


def start_receiver() -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve-receiver", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            httpx.post(f"http://127.0.0.1:{port}/", content=b"{}", timeout=0.5)
            return proc, f"http://127.0.0.1:{port}"
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("the receiver did not start")


# ---------------------------------------------------------------- references


def sqlite_ceiling(path: Path, n: int, *, per_transaction: int) -> float:
    """Rows inserted and deleted per second by a bare loop (an INSERT and a DELETE per row),
    ``per_transaction`` rows to a transaction, with the store's pragmas."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("CREATE TABLE IF NOT EXISTS t (id TEXT PRIMARY KEY, payload BLOB)")
    payload = b'{"n": 1}'
    started = time.perf_counter()
    for start in range(0, n, per_transaction):
        conn.execute("BEGIN IMMEDIATE")
        for i in range(start, min(n, start + per_transaction)):
            key = f"{i:012d}"
            conn.execute("INSERT INTO t (id, payload) VALUES (?, ?)", (key, payload))
            conn.execute("DELETE FROM t WHERE id = ?", (key,))
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - started
    conn.close()
    return n / elapsed


def redis_benchmark(n: int) -> dict[str, float]:
    """Requests/s of the operations the Redis store uses, by redis-benchmark (50 clients)."""
    binary = shutil.which("redis-benchmark")
    if binary is None:
        return {}
    url = urlparse(REDIS_URL)
    base = [binary, "-h", url.hostname or "127.0.0.1", "-p", str(url.port or 6379), "-q"]
    base += ["-n", str(n), "-c", "50", "-r", "100000"]
    if url.path and url.path.strip("/"):
        base += ["--dbnum", url.path.strip("/")]
    import redis

    sha = str(redis.Redis.from_url(REDIS_URL).script_load("return 1"))
    commands = {
        "EVALSHA (script call)": ["EVALSHA", sha, "0"],
        "HSET": ["HSET", f"{PREFIX}h:__rand_int__", "state", "queued"],
        "ZADD": ["ZADD", f"{PREFIX}z", "__rand_int__", "m:__rand_int__"],
    }
    rates: dict[str, float] = {}
    for name, command in commands.items():
        out = subprocess.run([*base, *command], capture_output=True, text=True, check=True)
        match = re.search(r"([\d.]+) requests per second", out.stdout)
        if match:
            rates[name] = float(match.group(1))
    return rates


async def httpx_ceiling(url: str, n: int, concurrency: int) -> float:
    async with httpx.AsyncClient(base_url=url) as client:
        for _ in range(100):  # warm the receiver and the connections
            await client.post("/hit", json={"job_id": "warm-up"})
        remaining = n

        async def worker() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                await client.post("/hit", json={"job_id": "x", "n": remaining})

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return n / (time.perf_counter() - started)


# ---------------------------------------------------------------- through the gateway


def open_store(backend: str, tmp: Path) -> Store:
    if backend == "redis":
        from gateway.store.redis import RedisStore

        return RedisStore(REDIS_URL, key_prefix=PREFIX)
    from gateway.store.sqlite import SqliteStore

    return SqliteStore(tmp / f"jobs-{uuid.uuid4().hex[:6]}.db")


async def drained(store: Store, kind: str) -> bool:
    stats = {s.kind: s for s in await store.jobs.stats(now=time.time())}
    s = stats.get(kind)
    return s is None or s.queued + s.in_flight == 0


async def until_drained(store: Store, kind: str) -> None:
    for _ in range(600_000):
        if await drained(store, kind):
            return
        await asyncio.sleep(0.002)


async def end_to_end(
    store: Store, kind: str, handler: Callable[[Job], Awaitable[None]], n: int, workers: int
) -> float:
    """Workers running, 4 producers enqueue n jobs; seconds until the last is acknowledged."""
    queue = JobQueue(JobSettings(poll_interval=0.01), store)
    done = 0
    finished = asyncio.Event()

    async def counted(job: Job) -> None:
        nonlocal done
        await handler(job)
        done += 1
        if done >= n:
            finished.set()

    queue.register_handler(kind, counted)
    pool = WorkerPool(queue, concurrency=workers)
    pool.start()
    per_producer = n // 4

    async def produce(offset: int) -> None:
        for i in range(per_producer):
            await queue.enqueue(kind, {"n": offset + i})

    started = time.perf_counter()
    await asyncio.gather(*(produce(p * per_producer) for p in range(4)))
    await asyncio.wait_for(finished.wait(), 600)
    await until_drained(store, kind)
    elapsed = time.perf_counter() - started
    await pool.stop()
    return (per_producer * 4) / elapsed


async def webhook_deliveries(backend: str, url: str, n: int, workers: int, tmp: Path) -> float:
    """Events published while the workers deliver them; until the last delivery is acked."""
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    store: dict[str, Any] = (
        {"backend": "redis", "redis_url": REDIS_URL, "key_prefix": PREFIX + "wh:"}
        if backend == "redis"
        else {"backend": "sqlite", "sqlite_path": str(tmp / "webhooks.db")}
    )
    settings = Settings.model_validate(
        {
            "store": store,
            "security": {"clients_file": str(tmp / "clients.toml")},
            "jobs": {"workers": workers, "poll_interval": 0.01, "scheduler_enabled": False},
            "webhooks": {"endpoints": [{"id": "bench", "url": url + "/webhook", "secret": secret}]},
            "logging": {"level": "ERROR"},
        }
    )
    runtime = Runtime.build(settings)
    await runtime.start()
    try:
        started = time.perf_counter()
        for i in range(n):
            await runtime.events.publish("bench.ping", {"i": i})
        from gateway.webhooks import DELIVER_KIND

        await until_drained(runtime.store, DELIVER_KIND)
        return n / (time.perf_counter() - started)
    finally:
        await runtime.stop()


# ---------------------------------------------------------------- main


async def run(args: argparse.Namespace) -> None:
    os.environ["GATEWAY_CONFIG"] = "/nonexistent/gateway.toml"  # only what this script says
    configure_logging(LoggingSettings(level="WARNING", format="console"))
    proc, url = start_receiver()
    rows: list[tuple[str, str, float, str, float | None]] = []
    raw: list[str] = []
    try:
        with tempfile.TemporaryDirectory() as tmp_dir:
            tmp = Path(tmp_dir)
            http_ref = await httpx_ceiling(url, args.jobs, args.workers)
            raw.append(
                f"httpx POSTs to the receiver, concurrency {args.workers}: {http_ref:,.0f}/s"
            )
            refs: dict[str, tuple[str, float | None]] = {}
            if "sqlite" in args.backends:
                single = sqlite_ceiling(tmp / "raw1.db", args.jobs, per_transaction=1)
                grouped = sqlite_ceiling(tmp / "raw2.db", args.jobs * 4, per_transaction=128)
                raw.append(
                    f"bare SQLite insert+delete, 1 row per transaction: {single:,.0f} rows/s"
                )
                raw.append(
                    f"bare SQLite insert+delete, 128 rows per transaction: {grouped:,.0f} rows/s"
                    " (the store's group commit batches up to 128 calls)"
                )
                refs["sqlite"] = ("bare insert+delete, grouped", grouped)
            if "redis" in args.backends:
                rates = redis_benchmark(100_000)
                for name, rate in rates.items():
                    raw.append(f"redis-benchmark {name}, 50 clients: {rate:,.0f}/s")
                evalsha = rates.get("EVALSHA (script call)")
                # a job is three script calls: enqueue, lease, ack
                refs["redis"] = ("redis-benchmark EVALSHA / 3", evalsha / 3 if evalsha else None)

            async with httpx.AsyncClient(
                base_url=url, limits=httpx.Limits(max_connections=args.workers * 2)
            ) as client:

                async def noop(job: Job) -> None:
                    return None

                async def post(job: Job) -> None:
                    response = await client.post("/hit", json={"job_id": job.id, **job.payload})
                    response.raise_for_status()

                for backend in args.backends:
                    store = open_store(backend, tmp)
                    await store.open()
                    try:
                        rate = await end_to_end(store, NOOP, noop, args.jobs, args.workers)
                        name, ref = refs[backend]
                        rows.append((backend, "no-op jobs", rate, name, ref))
                        rate = await end_to_end(store, HTTP, post, args.jobs, args.workers)
                        rows.append(
                            (backend, "jobs calling the receiver", rate, "httpx POSTs", http_ref)
                        )
                    finally:
                        await store.close()
                    rate = await webhook_deliveries(backend, url, args.events, args.workers, tmp)
                    rows.append((backend, "webhook deliveries", rate, "httpx POSTs", http_ref))
    finally:
        proc.terminate()
        proc.wait(10)
        if "redis" in args.backends:
            await drop_redis_prefix(REDIS_URL, PREFIX)

    print(f"\njobs/s end to end (enqueue -> ack), {args.jobs} jobs, {args.workers} workers\n")
    for line in raw:
        print(f"  reference: {line}")
    print()
    header = (
        f"{'store':<7} {'what':<27} {'per second':>11}   "
        f"{'reference':<28} {'ref/s':>10} {'ratio':>7}"
    )
    print(header)
    print("-" * len(header))
    for backend, what, rate, ref_name, ref in rows:
        ratio = f"{rate / ref:.2f}" if ref else "-"
        ref_text = f"{ref:,.0f}" if ref else "-"
        print(f"{backend:<7} {what:<27} {rate:>11,.0f}   {ref_name:<28} {ref_text:>10} {ratio:>7}")
    targets = {"redis": 2000.0, "sqlite": 1000.0}
    print()
    for backend, what, rate, _, _ in rows:
        if what == "no-op jobs":
            verdict = "meets" if rate >= targets[backend] else "MISSES"
            goal = targets[backend]
            print(f"target {backend}: >= {goal:,.0f} no-op jobs/s: {verdict} ({rate:,.0f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--backends", default="sqlite,redis")
    parser.add_argument("--serve-receiver", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_receiver is not None:
        import uvicorn

        uvicorn.run(
            receiver_app,
            host="127.0.0.1",
            port=args.serve_receiver,
            log_level="warning",
            access_log=False,
        )
        return
    args.backends = [b for b in args.backends.split(",") if b]
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
