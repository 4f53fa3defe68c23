"""Dossier status updates end to end: 202 accepted by the gateway -> confirmed by the portal.

For each store backend, ``gateway serve --sandbox`` runs as a subprocess (the gateway with its
workers, the portal simulator in its own child process) and this script plays the provincial
system over HTTP:

- throughput: D dossiers, U status updates each (``PUT /v1/dossiers/{code}``, processing <->
  supplement_requested), the dossiers in parallel, each dossier's updates one after the other
  (as a dossier system sends them); timed until the simulator has stored every update;
- latency at a moderate rate: updates at a fixed rate, from acceptance (the job's creation,
  ``GET /v1/jobs/{id}``) to confirmation (the time the simulator stored it, ``/_state/calls``).

Reference, in the same run: the same update sent straight to the simulator (``TraCuuHoSo`` +
``DongBoHoSoMC`` with a session), with the same concurrency and rate: what the gateway costs.

    .venv/bin/python bench/dossiers.py [--dossiers 40] [--updates 15] [--rate 20] [--seconds 10]
"""

from __future__ import annotations

if not __package__:  # run as a file: keep bench/ (its queue.py) off sys.path, see _bootstrap
    import _bootstrap  # noqa: F401

import argparse
import asyncio
import contextlib
import os
import secrets
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from adapters.national_portal.adapter import SANDBOX_PASSWORD
from adapters.national_portal.models import WireMapping
from bench._common import ROOT, free_port, percentile
from gateway.capabilities.dossiers import VN_TZ, Dossier
from gateway.security import hash_api_key

REDIS_URL = os.environ.get("GATEWAY_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
MADONVI = "000.00.00.H47"
STATUSES = ("processing", "supplement_requested")


def body(status: str, received: datetime, n: int) -> dict[str, Any]:
    return {
        "procedure_code": "1.001612",
        "receipt_number": f"BN-{n}",
        "applicant": {"kind": "citizen", "name": "Nguyễn Văn Bench", "id_number": "049090001234"},
        "summary": "Hồ sơ đo hiệu năng",
        "received_at": received.isoformat(),
        "status": status,
    }


def code_of(prefix: int, i: int, received: datetime) -> str:
    return f"000.00.19.H47-{received:%y%m%d}-{prefix * 100 + i:04d}"  # up to 99 dossiers


# ---------------------------------------------------------------- the gateway under test


@contextlib.contextmanager
def gateway_process(backend: str, workdir: Path) -> Iterator[tuple[str, str, str]]:
    """``gateway serve --sandbox`` with a temporary configuration; yields (gateway URL,
    simulator URL, API key)."""
    key = "dvcgw_" + secrets.token_urlsafe(32)
    port, sandbox_port = free_port(), free_port()
    prefix = f"dvcgw-bench-{uuid.uuid4().hex[:8]}:"
    store = (
        f'backend = "redis"\nredis_url = "{REDIS_URL}"\nkey_prefix = "{prefix}"'
        if backend == "redis"
        else f'backend = "sqlite"\nsqlite_path = "{workdir / "gateway.db"}"'
    )
    config = workdir / f"{backend}.toml"
    config.write_text(
        f"""
environment = "sandbox"
[server]
host = "127.0.0.1"
port = {port}
[store]
{store}
[security]
clients_file = "{workdir / "clients.toml"}"
[security.rate_limit]
enabled = false
[logging]
level = "WARNING"
format = "json"
[sandbox]
port = {sandbox_port}
[jobs]
workers = 8
# idle workers poll this often; a local enqueue wakes them at once
poll_interval = 0.1
scheduler_enabled = false
[[clients]]
id = "bench"
key_sha256 = "{hash_api_key(key)}"
scopes = ["dossiers:write", "dossiers:read"]
[capabilities]
dossiers = "national_portal"
[adapters.national_portal]
base_url = "http://127.0.0.1:9/unused"
madonvi = "{MADONVI}"
[adapters.national_portal.outbound.circuit]
failure_threshold = 1000
""",
        encoding="utf-8",
    )
    env = {**os.environ, "GATEWAY_CONFIG": str(config)}
    proc = subprocess.Popen(
        [str(ROOT / ".venv/bin/gateway"), "serve", "--sandbox", "--config", str(config)],
        cwd=workdir,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    gateway = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{gateway}/health/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"gateway serve ({backend}) did not start")
            time.sleep(0.2)
        yield gateway, f"http://127.0.0.1:{sandbox_port}/national_portal", key
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        if backend == "redis":
            import redis

            client = redis.Redis.from_url(REDIS_URL)
            keys = list(client.scan_iter(match=prefix + "*", count=1000))
            if keys:
                client.delete(*keys)


async def calls_count(http: httpx.AsyncClient, sim: str) -> int:
    return int((await http.get(f"{sim}/_state/summary")).json()["calls"])


async def wait_calls(http: httpx.AsyncClient, sim: str, expected: int, within: float) -> float:
    deadline = time.monotonic() + within
    while True:
        if await calls_count(http, sim) >= expected:
            return time.perf_counter()
        if time.monotonic() > deadline:
            raise RuntimeError(f"the simulator saw {await calls_count(http, sim)} of {expected}")
        await asyncio.sleep(0.01)


# ---------------------------------------------------------------- through the gateway


async def gateway_run(
    gateway: str, sim: str, key: str, args: argparse.Namespace, prefix: int
) -> dict[str, float]:
    headers = {"Authorization": f"Bearer {key}"}
    received = datetime.now(VN_TZ).replace(hour=0, minute=0, second=1, microsecond=0)
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    async with httpx.AsyncClient(headers=headers, timeout=60, limits=limits) as http:
        codes = [code_of(prefix, i, received) for i in range(args.dossiers)]

        async def put(code: str, status: str, n: int) -> httpx.Response:
            r = await http.put(f"{gateway}/v1/dossiers/{code}", json=body(status, received, n))
            if r.status_code != 202:
                raise RuntimeError(f"PUT answered {r.status_code}: {r.text[:300]}")
            return r

        # set-up: every dossier exists on the portal
        base = await calls_count(http, sim)
        await asyncio.gather(*(put(c, "received", 0) for c in codes))
        await wait_calls(http, sim, base + len(codes), 60)

        # throughput
        base = await calls_count(http, sim)

        async def life(code: str) -> None:
            for n in range(args.updates):
                await put(code, STATUSES[n % 2], n + 1)

        t0 = time.perf_counter()
        await asyncio.gather(*(life(c) for c in codes))
        accepted = time.perf_counter()
        total = args.dossiers * args.updates
        done = await wait_calls(http, sim, base + total, 300)
        throughput = total / (done - t0)
        accept_rate = total / (accepted - t0)

        # latency at a moderate rate, on fresh dossiers
        lat_codes = [code_of(prefix + 1, i, received) for i in range(args.dossiers)]
        base = await calls_count(http, sim)
        await asyncio.gather(*(put(c, "received", 0) for c in lat_codes))
        await wait_calls(http, sim, base + len(lat_codes), 60)
        sent: dict[str, list[str]] = {c: [] for c in lat_codes}
        count = int(args.rate * args.seconds)
        per_code: dict[str, int] = dict.fromkeys(lat_codes, 0)
        locks = {c: asyncio.Lock() for c in lat_codes}
        tasks = []

        async def one(code: str) -> None:
            async with locks[code]:  # one dossier's updates stay in order
                per_code[code] += 1
                r = await put(code, STATUSES[per_code[code] % 2], per_code[code])
                sent[code].append(r.json()["job_id"])

        start = time.perf_counter()
        for i in range(count):
            delay = start + i / args.rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(lat_codes[i % len(lat_codes)])))
        await asyncio.gather(*tasks)
        base_calls = base + len(lat_codes)
        await wait_calls(http, sim, base_calls + count, 120)
        latencies = []
        for code in lat_codes:
            calls = (await http.get(f"{sim}/_state/calls", params={"code": code})).json()["items"]
            syncs = [c for c in calls if c["service"] == "DongBoHoSoMC"][1:]  # after set-up
            for job_id, call in zip(sent[code], syncs, strict=True):
                job = (await http.get(f"{gateway}/v1/jobs/{job_id}")).json()
                created = datetime.fromisoformat(job["created_at"].replace("Z", "+00:00"))
                latencies.append((call["at"] - created.timestamp()) * 1000.0)
    return {
        "updates/s": throughput,
        "accepted/s": accept_rate,
        "p50": percentile(latencies, 0.5),
        "p99": percentile(latencies, 0.99),
        "n": float(len(latencies)),
    }


# ---------------------------------------------------------------- straight to the simulator


async def direct_run(sim: str, args: argparse.Namespace) -> dict[str, float]:
    """TraCuuHoSo + DongBoHoSoMC per update, as the gateway's job does, without the gateway."""
    received = datetime.now(VN_TZ).replace(hour=0, minute=0, second=1, microsecond=0)
    mapping = WireMapping()
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    async with httpx.AsyncClient(timeout=60, limits=limits) as http:
        login = await http.post(
            f"{sim}/login", json={"username": "dvc-gateway", "password": SANDBOX_PASSWORD}
        )
        session = login.json()["session"]

        async def update(code: str, status: str, n: int) -> None:
            env = {"session": session, "madonvi": MADONVI}
            found = await http.post(
                f"{sim}/service", json={**env, "service": "TraCuuHoSo", "mahoso": code}
            )
            exists = bool(found.json().get("result"))
            dossier = Dossier.model_validate({**body(status, received, n), "code": code})
            wire = mapping.dossier_to_wire(dossier).model_dump(exclude_none=True)
            r = await http.post(
                f"{sim}/service",
                json={
                    **env,
                    "service": "DongBoHoSoMC",
                    "isUpdating": "True" if exists else "False",
                    "data": [wire],
                },
            )
            if r.json()["error_code"] != 0:
                raise RuntimeError(r.text)

        codes = [code_of(7, i, received) for i in range(args.dossiers)]
        await asyncio.gather(*(update(c, "received", 0) for c in codes))

        async def life(code: str) -> None:
            for n in range(args.updates):
                await update(code, STATUSES[n % 2], n + 1)

        t0 = time.perf_counter()
        await asyncio.gather(*(life(c) for c in codes))
        throughput = args.dossiers * args.updates / (time.perf_counter() - t0)

        lat_codes = [code_of(8, i, received) for i in range(args.dossiers)]
        await asyncio.gather(*(update(c, "received", 0) for c in lat_codes))
        latencies: list[float] = []
        locks = {c: asyncio.Lock() for c in lat_codes}
        counter = dict.fromkeys(lat_codes, 0)

        async def one(code: str) -> None:
            async with locks[code]:
                counter[code] += 1
                t = time.perf_counter()
                await update(code, STATUSES[counter[code] % 2], counter[code])
                latencies.append((time.perf_counter() - t) * 1000.0)

        tasks = []
        start = time.perf_counter()
        for i in range(int(args.rate * args.seconds)):
            delay = start + i / args.rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(lat_codes[i % len(lat_codes)])))
        await asyncio.gather(*tasks)
    return {
        "updates/s": throughput,
        "accepted/s": float("nan"),
        "p50": percentile(latencies, 0.5),
        "p99": percentile(latencies, 0.99),
        "n": float(len(latencies)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dossiers", type=int, default=40)
    parser.add_argument("--updates", type=int, default=15, help="updates per dossier")
    parser.add_argument("--rate", type=float, default=20.0, help="updates/s for the latency run")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--backends", default="sqlite,redis")
    args = parser.parse_args()

    rows: list[tuple[str, dict[str, float]]] = []
    reference: dict[str, float] | None = None
    with tempfile.TemporaryDirectory(prefix="dvcgw-bench-") as tmp:
        for n, backend in enumerate(args.backends.split(",")):
            workdir = Path(tmp) / backend
            workdir.mkdir()
            with gateway_process(backend, workdir) as (gateway, sim, key):
                if reference is None:
                    reference = asyncio.run(direct_run(sim, args))
                    rows.append(("direct to the simulator (reference)", reference))
                result = asyncio.run(gateway_run(gateway, sim, key, args, 10 + 2 * n))
                rows.append((f"gateway, {backend} store (202 -> confirmed)", result))

    assert reference is not None
    total = args.dossiers * args.updates
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"\nmachine: {os.cpu_count()} cores, load average {load} (shared: compare rows, not runs)"
    )
    print(
        f"Dossier status updates: {args.dossiers} dossiers x {args.updates} updates = {total} "
        f"(throughput); {int(args.rate * args.seconds)} updates at {args.rate:g}/s (latency)"
    )
    print(f"{'path':<44}{'updates/s':>11}{'vs ref':>8}{'accepted/s':>12}{'p50 ms':>9}{'p99 ms':>9}")
    for name, r in rows:
        ratio = r["updates/s"] / reference["updates/s"]
        accepted = "-" if r["accepted/s"] != r["accepted/s"] else f"{r['accepted/s']:.0f}"
        print(
            f"{name:<44}{r['updates/s']:>11.0f}{ratio:>8.2f}{accepted:>12}"
            f"{r['p50']:>9.1f}{r['p99']:>9.1f}"
        )
    print(
        "latency: gateway rows from job creation (accepted) to the simulator storing the update;"
        "\n         the reference row is the two portal calls' round trip."
    )


if __name__ == "__main__":
    main()
