"""Citizen verification end to end: through the gateway, beside the same SOAP call made directly.

    direct   this process: zeep AsyncClient -> sandbox population_db simulator
             (bearer token, request signed with the gateway's key, answer's signature verified:
             the same SOAP call and the same cryptography the adapter does)
    gateway  this process: httpx -> POST /v1/citizens/verify -> gateway (auth, validation,
             rate limit, request id, audit record in SQLite, metrics) -> population_db adapter
             (token from the store, zeep, XML-DSig both ways, breaker, bulkhead) -> simulator

The gateway runs as ``gateway serve --sandbox`` (its own process, the sandbox in a child
process), configured with a temporary store, a development PKI and one bench client. Each path
is measured with one caller at a time (latency) and with ``--concurrency`` callers (throughput);
the last column is the gateway's added latency (p50 and p99 differences) or its share of the
direct throughput. Every answer is checked (200 and ``match: true``), so a fast error never
counts as a fast call.

Run: ``make bench`` or
``.venv/bin/python bench/identity.py [--calls 600 --concurrency 16 --store sqlite|redis]``.
"""

from __future__ import annotations

if not __package__:  # run as a file: keep bench/ (its queue.py) off sys.path, see _bootstrap
    import _bootstrap  # noqa: F401


import argparse
import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import zeep
from lxml import etree
from zeep.proxy import AsyncServiceProxy
from zeep.transports import AsyncTransport

from adapters.population_db.client import BINDING
from adapters.population_db.config import SANDBOX_CONSUMER_SECRET
from adapters.population_db.models import OPERATION, WSDL_PATH
from adapters.population_db.population import (
    LICENSED_PROCEDURES,
    PERMITTED_OFFICERS,
    population,
)
from adapters.population_db.soapsig import EnvelopeSigning, EnvelopeVerification
from bench._common import drop_redis_prefix, free_port, percentile
from gateway.security import generate_api_key, hash_api_key
from signing.keys import ensure_dev_pki
from signing.sign import XmlSigner
from signing.trust import TrustStore
from signing.verify import VerificationPolicy, XmlVerifier
from signing.xml import zeep_settings

GATEWAY_CLI = [sys.executable, "-c", "from gateway.cli import main; main()"]
SEED = 20260101


@dataclass(frozen=True)
class Result:
    calls: int
    seconds: float
    latencies_ms: list[float]

    @property
    def rps(self) -> float:
        return self.calls / self.seconds

    def pct(self, q: float) -> float:
        return percentile(self.latencies_ms, q)


Call = Callable[[int], Awaitable[None]]


async def measure(call: Call, *, calls: int, concurrency: int) -> Result:
    latencies: list[float] = []
    next_index = 0

    async def worker() -> None:
        nonlocal next_index
        while next_index < calls:
            i = next_index
            next_index += 1
            started = time.perf_counter()
            await call(i)
            latencies.append((time.perf_counter() - started) * 1000)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return Result(calls, time.perf_counter() - started, latencies)


# ---------------------------------------------------------------- the gateway process


def write_config(
    tmp: Path, *, gateway_port: int, sandbox_port: int, key: str, redis_url: str | None
) -> Path:
    store = [f'sqlite_path = "{tmp / "gateway.db"}"']
    if redis_url is not None:
        prefix = redis_prefix()
        store = ['backend = "redis"', f'redis_url = "{redis_url}"', f'key_prefix = "{prefix}"']
    config = tmp / "gateway.toml"
    config.write_text(
        "\n".join(
            [
                'environment = "sandbox"',
                "[server]",
                f"port = {gateway_port}",
                "[sandbox]",
                f"port = {sandbox_port}",
                f"seed = {SEED}",
                "[store]",
                *store,
                "[security]",
                f'clients_file = "{tmp / "clients.toml"}"',
                "[signing]",
                f'dev_pki_dir = "{tmp / "pki"}"',
                f'key_path = "{tmp / "pki" / "gateway.key.pem"}"',
                f'cert_path = "{tmp / "pki" / "gateway.cert.pem"}"',
                f'trust_paths = ["{tmp / "pki" / "ca.cert.pem"}"]',
                "[logging]",
                'level = "WARNING"',
                "[jobs]",
                "workers = 1",
                "[capabilities]",
                'identity = "population_db"',
                "[adapters.population_db]",
                f'base_url = "http://127.0.0.1:{sandbox_port}/population_db"',
                "[[clients]]",
                'id = "bench"',
                f'key_sha256 = "{hash_api_key(key)}"',
                'scopes = ["identity:verify"]',
                "rate_limit_per_minute = 100000000",
            ]
        )
        + "\n"
    )
    return config


def redis_prefix() -> str:
    return f"dvcgw-bench-identity-{os.getpid()}:"


@contextmanager
def gateway(config: Path, ready_url: str, log: Path) -> Iterator[None]:
    env = {**os.environ, "GATEWAY_CONFIG": str(config)}
    with log.open("w") as out:
        cmd = [*GATEWAY_CLI, "serve", "--sandbox"]
        proc = subprocess.Popen(cmd, env=env, cwd=config.parent, stdout=out, stderr=out)
        try:
            deadline = time.monotonic() + 90
            while True:
                if proc.poll() is not None:
                    raise SystemExit(f"gateway serve exited early; see {log}")
                try:
                    if httpx.get(ready_url, timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise SystemExit(f"{ready_url} never answered; see {log}")
                time.sleep(0.2)
            yield
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


# ---------------------------------------------------------------- the two paths


class _SignedSoap(zeep.Plugin):  # type: ignore[misc]
    """Plain zeep with the adapter's cryptography: sign the Body, verify the answer."""

    def __init__(self, signing: EnvelopeSigning, verification: EnvelopeVerification) -> None:
        self.signing = signing
        self.verification = verification

    def egress(self, envelope: Any, http_headers: Any, operation: Any, binding_options: Any) -> Any:
        return etree.fromstring(self.signing.sign(envelope)), http_headers

    def ingress(self, envelope: Any, http_headers: Any, operation: Any) -> Any:
        self.verification.verify(etree.tostring(envelope))
        return envelope, http_headers


def bodies() -> list[dict[str, Any]]:
    out = []
    for person in population(SEED).people[:500]:
        raw = person.NgayThangNamSinh
        out.append(
            {
                "id_number": person.SoDinhDanh,
                "full_name": person.HoVaTen.day_du(),
                "birth_date": raw if len(raw) == 4 else f"{raw[:4]}-{raw[4:6]}-{raw[6:]}",
                "purpose": {
                    "procedure_code": LICENSED_PROCEDURES[0],
                    "officer_id": PERMITTED_OFFICERS[0],
                },
                "_wire": {
                    "SoDinhDanh": person.SoDinhDanh,
                    "HoVaTen": person.HoVaTen.day_du(),
                    "NgayThangNamSinh": raw,
                },
            }
        )
    return out


async def direct_path(sandbox: str, pki_dir: Path, people: list[dict[str, Any]]) -> Call:
    pki = ensure_dev_pki(pki_dir, ["population_db"])
    signing = EnvelopeSigning(XmlSigner(pki.gateway.load()))
    verification = EnvelopeVerification(
        XmlVerifier(VerificationPolicy(trust=TrustStore.from_paths([pki.ca.cert_path])))
    )
    base = f"{sandbox}/population_db"
    http = httpx.AsyncClient(
        limits=httpx.Limits(max_connections=100, max_keepalive_connections=100)
    )
    answer = await http.post(
        f"{base}/token",
        data={"grant_type": "client_credentials"},
        auth=("dvc-gateway", SANDBOX_CONSUMER_SECRET),
    )
    token = answer.json()["access_token"]
    transport = AsyncTransport(client=http)
    # AsyncTransport replaces the client's headers with its User-Agent: add the token after
    http.headers["Authorization"] = f"Bearer {token}"
    client = zeep.AsyncClient(
        str(WSDL_PATH),
        transport=transport,
        settings=zeep_settings(),
        plugins=[_SignedSoap(signing, verification)],
    )
    service = AsyncServiceProxy(client, client.wsdl.bindings[BINDING], address=f"{base}/soap")
    operation = getattr(service, OPERATION)

    async def call(i: int) -> None:
        wire = people[i % len(people)]["_wire"]
        result = await operation(
            MaYeuCau=f"bench-{i}",
            MaDVC=LICENSED_PROCEDURES[0],
            MaTichHop="000000",
            MaDonVi="000.00.00.H47",
            MaCanBo=PERMITTED_OFFICERS[0],
            **wire,
        )
        if result.MaLoi != "000" or not result.CongdanCollection.CongDan:
            raise SystemExit(f"direct call {i} failed: {result.MaLoi}")

    return call


def gateway_path(url: str, key: str, people: list[dict[str, Any]]) -> Call:
    http = httpx.AsyncClient(
        base_url=url,
        headers={"Authorization": f"Bearer {key}"},
        limits=httpx.Limits(max_connections=100, max_keepalive_connections=100),
        timeout=30,
    )
    payloads = [{k: v for k, v in p.items() if k != "_wire"} for p in people]

    async def call(i: int) -> None:
        r = await http.post("/v1/citizens/verify", json=payloads[i % len(payloads)])
        if r.status_code != 200 or r.json().get("match") is not True:
            raise SystemExit(f"gateway call {i} failed: {r.status_code} {r.text[:200]}")

    return call


# ---------------------------------------------------------------- main


def line(name: str, r: Result, ref: Result | None, *, latency: bool) -> str:
    extra = ""
    if ref is not None and latency:
        extra = f"  {r.pct(0.5) - ref.pct(0.5):+8.2f}  {r.pct(0.99) - ref.pct(0.99):+8.2f}"
    elif ref is not None:
        extra = f"  {r.rps / ref.rps:8.0%}"
    return f"  {name:<28} {r.rps:9.0f} {r.pct(0.5):9.2f} {r.pct(0.99):9.2f}{extra}"


async def run(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="dvcgw-bench-identity-") as name:
        tmp = Path(name)
        key = generate_api_key()
        gateway_port, sandbox_port = free_port(), free_port()
        redis_url = None
        if args.store == "redis":
            redis_url = os.environ.get("GATEWAY_TEST_REDIS_URL") or "redis://127.0.0.1:6379/0"
        config = write_config(
            tmp, gateway_port=gateway_port, sandbox_port=sandbox_port, key=key, redis_url=redis_url
        )
        ensure_dev_pki(tmp / "pki", ["population_db"])
        people = bodies()
        gw_url = f"http://127.0.0.1:{gateway_port}"
        sandbox = f"http://127.0.0.1:{sandbox_port}"
        with gateway(config, f"{gw_url}/health/ready", tmp / "gateway.log"):
            paths = {
                "direct (zeep -> simulator)": await direct_path(sandbox, tmp / "pki", people),
                "gateway (POST /verify)": gateway_path(gw_url, key, people),
            }
            for call in paths.values():  # warm-up: connections, tokens, caches
                await measure(call, calls=50, concurrency=4)
            single = {
                n: await measure(c, calls=args.calls // 3, concurrency=1) for n, c in paths.items()
            }
            loaded = {
                n: await measure(c, calls=args.calls, concurrency=args.concurrency)
                for n, c in paths.items()
            }
        if redis_url is not None:
            await drop_redis_prefix(redis_url, redis_prefix())
    ref_name = next(iter(paths))
    header = f"  {'path':<28} {'calls/s':>9} {'p50 ms':>9} {'p99 ms':>9}"
    print(f"Citizen verification (TraCuuThongTinCongDan), signed both ways, {args.store} store")
    print(f"\n one caller at a time ({args.calls // 3} calls)")
    print(header + f"  {'+p50 ms':>8}  {'+p99 ms':>8}")
    for n, r in single.items():
        print(line(n, r, None if n == ref_name else single[ref_name], latency=True))
    print(f"\n {args.concurrency} concurrent callers ({args.calls} calls)")
    print(header + f"  {'vs direct':>8}")
    for n, r in loaded.items():
        print(line(n, r, None if n == ref_name else loaded[ref_name], latency=False))
    added = single["gateway (POST /verify)"].pct(0.5) - single[ref_name].pct(0.5)
    print(f"\n gateway's added latency at p50, one caller: {added:+.2f} ms")
    print(f" (on {os.cpu_count()} CPUs shared with the load generator and the simulator)")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=600, help="calls per loaded measurement")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--store", choices=["sqlite", "redis"], default="sqlite")
    return asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    raise SystemExit(main())
