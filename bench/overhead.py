"""What the gateway adds to a call: the same echo operation three ways, driven by wrk.

    direct   wrk -> sandbox echo simulator                      (the reference)
    nginx    wrk -> nginx proxy_pass -> sandbox echo simulator   (a bare reverse proxy)
    gateway  wrk -> gateway (auth, rate limit, request id, access log, metrics, routing)
                 -> echo adapter's OutboundClient (bulkhead, breaker, retries, stats)
                 -> sandbox echo simulator

The gateway route is the test-only ``POST /v1/_echo/echo`` of ``tests/support/echo_adapter``
(served through ``gateway serve --app-factory``), so the figures measure the gateway itself,
not SOAP or XML signatures. The issue suggested switching to a real query once real adapters
exist; we kept the echo here on purpose: a citizen verification signs its request and verifies
the answer's signature, which wrk's direct and nginx paths cannot do, so the rows would compare
cryptography with none. ``bench/identity.py`` measures that query end to end beside the same
SOAP call made directly with the same cryptography (zeep, XML-DSig both ways).

Two phases, each path in turn:

1. a moderate, paced rate (wrk's ``delay()``; plain wrk has no fixed-rate mode): latency
   p50/p99, compared with direct;
2. saturation (many connections, no pacing): requests per second, compared with nginx, and
   the CPU the server's processes spent per request (from /proc). On a shared machine the
   requests/s move with everyone else's load; the CPU per request barely does, so it is the
   figure to compare between runs.

The gateway runs with ``--processes 1`` and ``2``; the table says which is faster here.
Targets: +1 ms p50 and +5 ms p99 over direct at the moderate rate; >= 40 % of nginx's
throughput. Run: ``make bench`` or ``.venv/bin/python bench/overhead.py [--duration 8]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
# the script's own folder is not a package: its modules (bench/queue.py ...) must not shadow
# the standard library for the imports below
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))

from gateway.security import generate_api_key, hash_api_key  # noqa: E402

GATEWAY_CLI = [sys.executable, "-c", "from gateway.cli import main; main()"]
ECHO_TOKEN = "echo-sandbox-token"
PAYLOAD = {"case": "bench", "items": list(range(20)), "note": "xin chào"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Result:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int


@dataclass(frozen=True)
class Target:
    name: str
    url: str
    body: str
    headers: dict[str, str]


# ---------------------------------------------------------------- processes


def cpu_seconds(root: int) -> float:
    """User + system CPU of a process and all its descendants so far (Linux /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    stats: dict[int, tuple[int, float]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # after the command: state, ppid, ..., utime (12th), stime (13th)
        stats[int(entry.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / tick)
    total, frontier = 0.0, [root]
    while frontier:
        pid = frontier.pop()
        total += stats.get(pid, (0, 0.0))[1]
        frontier.extend(child for child, (parent, _) in stats.items() if parent == pid)
    return total


@contextmanager
def process(
    cmd: list[str], env: dict[str, str], ready_url: str, log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 60
            while True:
                if proc.poll() is not None:
                    raise SystemExit(f"{cmd[3:]} exited early; see {log}")
                try:
                    if httpx.get(ready_url, timeout=1).status_code < 500:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise SystemExit(f"{ready_url} never answered; see {log}")
                time.sleep(0.1)
            yield proc
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


NGINX_CONF = """
worker_processes {workers};
error_log stderr warn;
pid {tmp}/nginx.pid;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    upstream sandbox {{ server 127.0.0.1:{upstream}; keepalive 64; }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://sandbox;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"""


@contextmanager
def nginx(tmp: Path, upstream: int, port: int) -> Iterator[subprocess.Popen[bytes]]:
    (tmp / "nginx").mkdir()
    conf = tmp / "nginx" / "nginx.conf"
    conf.write_text(
        NGINX_CONF.format(
            workers=os.cpu_count() or 1, tmp=tmp / "nginx", upstream=upstream, port=port
        )
    )
    nginx_bin = shutil.which("nginx") or "/usr/sbin/nginx"
    cmd = [nginx_bin, "-p", str(tmp / "nginx"), "-c", str(conf), "-g", "daemon off;"]
    with process(
        cmd, dict(os.environ), f"http://127.0.0.1:{port}/echo/ping", tmp / "nginx.log"
    ) as proc:
        yield proc


# ---------------------------------------------------------------- wrk

LUA = """
wrk.method = "POST"
wrk.body = {body}
{headers}
{delay}
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "RESULT {{\\"requests\\": %d, \\"duration_us\\": %d, \\"errors\\": %d, "
    .. "\\"p50_us\\": %d, \\"p99_us\\": %d}}\\n",
    summary.requests, summary.duration, e.connect + e.read + e.write + e.status + e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""


def lua_string(text: str) -> str:
    return json.dumps(text)  # a JSON string literal is a valid Lua string literal here


def wrk(
    target: Target,
    tmp: Path,
    *,
    connections: int,
    duration: float,
    delay_ms: float | None = None,
) -> Result:
    script = tmp / "wrk.lua"
    headers = "\n".join(
        f"wrk.headers[{lua_string(k)}] = {lua_string(v)}"
        for k, v in {"Content-Type": "application/json", **target.headers}.items()
    )
    delay = f"function delay() return {delay_ms:.3f} end" if delay_ms else ""
    script.write_text(LUA.format(body=lua_string(target.body), headers=headers, delay=delay))
    threads = min(2, connections)
    cmd = [
        "wrk",
        "-t",
        str(threads),
        "-c",
        str(connections),
        "-d",
        f"{max(1, round(duration))}s",
        "--timeout",
        "10s",
        "-s",
        str(script),
        target.url,
    ]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"wrk failed on {target.url}: {done.stdout}{done.stderr}")
    out = done.stdout
    line = next(x for x in out.splitlines() if x.startswith("RESULT "))
    data = json.loads(line[len("RESULT ") :])
    seconds = data["duration_us"] / 1e6
    return Result(
        rps=data["requests"] / seconds,
        p50_ms=data["p50_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        requests=data["requests"],
        errors=data["errors"],
    )


# ---------------------------------------------------------------- the run


async def drop_keys(url: str, prefix: str) -> None:
    """Delete the keys this run wrote (and only those)."""
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(url)
    try:
        keys = [k async for k in client.scan_iter(match=prefix + "*", count=1000)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


def write_config(
    tmp: Path,
    *,
    gateway_port: int,
    sandbox_port: int,
    key: str,
    store: str,
    redis_url: str | None,
    prefix: str,
) -> Path:
    store_lines = [f'sqlite_path = "{tmp / "gateway.db"}"']
    if store == "redis":
        store_lines = [
            'backend = "redis"',
            f'redis_url = "{redis_url}"',
            f'key_prefix = "{prefix}"',
        ]
    config = tmp / "gateway.toml"
    config.write_text(
        "\n".join(
            [
                'environment = "sandbox"',
                'extra_adapters = ["support.echo_adapter:EchoAdapter"]',
                "[server]",
                f"port = {gateway_port}",
                "[sandbox]",
                f"port = {sandbox_port}",
                "[store]",
                *store_lines,
                "[security]",
                f'clients_file = "{tmp / "clients.toml"}"',
                "[signing]",
                f'dev_pki_dir = "{tmp / "pki"}"',
                "[logging]",
                'level = "WARNING"',
                "[adapters.echo]",
                f'base_url = "http://127.0.0.1:{sandbox_port}/echo"',
                "[[clients]]",
                'id = "bench"',
                f'key_sha256 = "{hash_api_key(key)}"',
                'scopes = ["echo:call"]',
                "rate_limit_per_minute = 100000000",
            ]
        )
        + "\n"
    )
    return config


def row(name: str, r: Result, ref: Result | None, *, vs: str, cpu_us: float | None = None) -> str:
    extra = ""
    if ref is not None and vs == "latency":
        extra = f"  {r.p50_ms - ref.p50_ms:+7.2f}  {r.p99_ms - ref.p99_ms:+7.2f}"
    elif vs == "throughput":
        extra = f"  {r.rps / ref.rps:8.0%}" if ref is not None else f"  {'':>8}"
        extra += f"  {cpu_us:10.0f}" if cpu_us is not None else ""
    errors = f"  ({r.errors} errors)" if r.errors else ""
    return f"  {name:<32} {r.rps:9.0f} {r.p50_ms:9.2f} {r.p99_ms:9.2f}{extra}{errors}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per measurement")
    parser.add_argument("--rate", type=float, default=200.0, help="the moderate rate, req/s")
    parser.add_argument("--connections", type=int, default=32, help="for the saturation phase")
    parser.add_argument("--processes", default="1,2", help="gateway process counts to try")
    parser.add_argument("--store", choices=["sqlite", "redis"], default="sqlite")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is not installed (apt-get install wrk)", file=sys.stderr)
        return 1
    redis_url = os.environ.get("GATEWAY_TEST_REDIS_URL") or "redis://127.0.0.1:6379/0"
    prefix = f"dvcgw-bench-{os.getpid()}:"
    counts = [int(p) for p in args.processes.split(",")]
    paced_connections = 4
    delay_ms = paced_connections * 1000.0 / args.rate

    with tempfile.TemporaryDirectory(prefix="dvcgw-bench-") as name:
        tmp = Path(name)
        key = generate_api_key()
        sandbox_port, gateway_port, nginx_port = free_port(), free_port(), free_port()
        config = write_config(
            tmp,
            gateway_port=gateway_port,
            sandbox_port=sandbox_port,
            key=key,
            store=args.store,
            redis_url=redis_url,
            prefix=prefix,
        )
        env = {
            **os.environ,
            "GATEWAY_CONFIG": str(config),
            "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), str(ROOT)]),
        }
        body = json.dumps(PAYLOAD)
        token = {"Authorization": f"Bearer {ECHO_TOKEN}"}
        direct = Target(
            "direct (simulator)", f"http://127.0.0.1:{sandbox_port}/echo/echo", body, token
        )
        proxied = Target(
            "nginx proxy_pass", f"http://127.0.0.1:{nginx_port}/echo/echo", body, token
        )
        through = Target(
            "gateway",
            f"http://127.0.0.1:{gateway_port}/v1/_echo/echo",
            json.dumps({"payload": PAYLOAD}),
            {"Authorization": f"Bearer {key}"},
        )

        inbound_only = Target(
            "gateway, no upstream",
            f"http://127.0.0.1:{gateway_port}/v1/_echo_local",
            through.body,
            through.headers,
        )
        paced: dict[str, Result] = {}
        saturated: dict[str, Result] = {}

        cpu_us: dict[str, float] = {}

        def measure(label: str, target: Target, server: subprocess.Popen[bytes]) -> None:
            wrk(target, tmp, connections=4, duration=1.0)  # warm-up: connections, caches
            paced[label] = wrk(
                target,
                tmp,
                connections=paced_connections,
                duration=args.duration,
                delay_ms=delay_ms,
            )
            before = cpu_seconds(server.pid)
            saturated[label] = wrk(
                target, tmp, connections=args.connections, duration=args.duration
            )
            # CPU the server spent per request: what the machine's load cannot distort much
            used = cpu_seconds(server.pid) - before
            cpu_us[label] = used / max(1, saturated[label].requests) * 1e6
            print(f"  measured {label}", file=sys.stderr)

        sandbox_cmd = [*GATEWAY_CLI, "sandbox"]
        with process(
            sandbox_cmd, env, f"http://127.0.0.1:{sandbox_port}/_sandbox/", tmp / "sandbox.log"
        ) as sandbox:
            measure(direct.name, direct, sandbox)
            with nginx(tmp, sandbox_port, nginx_port) as proxy:
                measure(proxied.name, proxied, proxy)
            for n in counts:
                serve_cmd = [
                    *GATEWAY_CLI,
                    "serve",
                    "--processes",
                    str(n),
                    "--app-factory",
                    "support.echo_adapter:create_app_from_env",
                ]
                with process(
                    serve_cmd,
                    env,
                    f"http://127.0.0.1:{gateway_port}/health/live",
                    tmp / f"gateway-{n}.log",
                ) as gateway:
                    label = f"gateway, {n} process{'es' if n > 1 else ''}"
                    measure(label, through, gateway)
                    if n == counts[0]:  # the split: the same route without the upstream call
                        measure(f"{label}, no upstream", inbound_only, gateway)

    ref_latency = paced[direct.name]
    ref_throughput = saturated[proxied.name]
    gateways = [k for k in paced if k.startswith("gateway") and "no upstream" not in k]
    print()
    print(
        f"bench/overhead.py: POST echo, {args.duration:g} s per run, store {args.store}, "
        f"{os.cpu_count()} cores (shared)"
    )
    print()
    print(
        f"Paced at ~{args.rate:g} req/s ({paced_connections} connections, wrk delay() "
        f"{delay_ms:.0f} ms)"
    )
    print(f"  {'path':<32} {'req/s':>9} {'p50 ms':>9} {'p99 ms':>9}  {'Δp50':>7}  {'Δp99':>7}")
    for label, r in paced.items():
        print(row(label, r, None if label == direct.name else ref_latency, vs="latency"))
    print()
    print(f"Saturated ({args.connections} connections, no pacing)")
    print(
        f"  {'path':<32} {'req/s':>9} {'p50 ms':>9} {'p99 ms':>9}  {'vs nginx':>8}"
        f"  {'CPU µs/req':>10}"
    )
    for label, r in saturated.items():
        ref = None if label == proxied.name else ref_throughput
        print(row(label, r, ref, vs="throughput", cpu_us=cpu_us.get(label)))
    fastest = max(gateways, key=lambda k: saturated[k].rps)
    best_latency = min(gateways, key=lambda k: paced[k].p50_ms)
    d50 = paced[best_latency].p50_ms - ref_latency.p50_ms
    d99 = paced[best_latency].p99_ms - ref_latency.p99_ms
    share = saturated[fastest].rps / ref_throughput.rps
    print()
    print(f"Fastest here: {fastest} ({saturated[fastest].rps:.0f} req/s)")
    print(
        f"Target +1 ms p50 / +5 ms p99 over direct ({best_latency}): "
        f"{d50:+.2f} ms / {d99:+.2f} ms -> {'met' if d50 <= 1 and d99 <= 5 else 'NOT met'}"
    )
    lean = min(gateways, key=lambda k: cpu_us[k])
    print(
        f"CPU per request (the server's processes only): {lean} {cpu_us[lean]:.0f} µs, "
        f"nginx {cpu_us[proxied.name]:.0f} µs: with the same cores to itself the gateway "
        f"would do {cpu_us[proxied.name] / cpu_us[lean]:.0%} of nginx's requests/s"
    )
    print(
        f"Target >= 40% of nginx's throughput: {share:.0%} -> "
        f"{'met' if share >= 0.4 else 'NOT met'}"
    )
    if args.store == "redis":
        asyncio.run(drop_keys(redis_url, prefix))
    failed = [k for k, r in {**paced, **saturated}.items() if r.errors > r.requests * 0.01]
    if failed:
        print(f"error: more than 1% failed requests in: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
