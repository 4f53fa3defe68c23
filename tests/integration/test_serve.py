"""``gateway serve`` as a real subprocess: with the sandbox beside it, with several processes,
and refusing a bad configuration with exit code 2."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import httpx
import pytest
from support.echo_adapter import ECHO_ADAPTER
from support.uvicorn_server import free_port

REPO = Path(__file__).resolve().parents[2]
GATEWAY = [sys.executable, "-c", "from gateway.cli import main; main()"]


def write_config(tmp_path: Path, gateway_port: int, sandbox_port: int, extra: str = "") -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text(
        f"""
environment = "sandbox"
extra_adapters = ["{ECHO_ADAPTER}"]
[server]
port = {gateway_port}
[sandbox]
port = {sandbox_port}
[store]
sqlite_path = "{tmp_path / "gateway.db"}"
[security]
clients_file = "{tmp_path / "clients.toml"}"
[signing]
dev_pki_dir = "{tmp_path / "pki"}"
[jobs]
workers = 1
[ops]
probe_interval_seconds = 0.5
[adapters.echo]
{extra}
"""
    )
    return path


class Running:
    """A child process whose output is collected line by line."""

    def __init__(self, args: list[str]) -> None:
        env = {**os.environ, "PYTHONPATH": str(REPO / "tests")}
        env.pop("GATEWAY_CONFIG", None)
        self.proc = subprocess.Popen(
            args,
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_for_line(self, needle: str, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if needle in line:
                    return line
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"{needle!r} never printed; output:\n" + "\n".join(self.lines))

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=30)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()


@pytest.fixture
def running() -> Iterator[list[Running]]:
    started: list[Running] = []
    yield started
    for r in started:
        r.stop()


def wait_live(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} never answered")


def port_closed(port: int) -> bool:
    try:
        httpx.get(f"http://127.0.0.1:{port}/", timeout=0.5)
    except httpx.ConnectError:
        return True
    return False


def test_serve_with_sandbox_comes_up_points_adapters_and_prints_a_key(
    tmp_path: Path, running: list[Running]
) -> None:
    gw_port, sb_port = free_port(), free_port()
    config = write_config(tmp_path, gw_port, sb_port)
    server = Running([*GATEWAY, "--config", str(config), "serve", "--sandbox"])
    running.append(server)
    base, sandbox = f"http://127.0.0.1:{gw_port}", f"http://127.0.0.1:{sb_port}"

    wait_live(f"{base}/health/live")
    curl = server.wait_for_line("curl -H")
    key = curl.split("Bearer ", 1)[1].split('"', 1)[0]
    for url in ("/schema/swagger", "/health/ready", "/metrics", "/ops"):
        server.wait_for_line(f"{base}{url}", timeout=1)

    # the key works, has broad scopes, and only its hash was written
    auth = {"Authorization": f"Bearer {key}"}
    assert httpx.get(f"{base}/metrics", headers=auth).status_code == 200
    clients_file = (tmp_path / "clients.toml").read_text()
    assert 'id = "sandbox"' in clients_file and key not in clients_file

    # the echo adapter was pointed at the sandbox: the health probes reach its simulator
    deadline = time.monotonic() + 10
    pings = 0
    while time.monotonic() < deadline and not pings:
        counters = httpx.get(f"{sandbox}/_sandbox/requests").json()
        pings = counters["requests"].get("echo", {}).get("ping", 0)
        time.sleep(0.2)
    assert pings >= 1
    deadline = time.monotonic() + 10
    while True:  # the probe's result is stored just after the simulator saw the ping
        health = httpx.get(f"{base}/health/adapters", headers=auth).json()
        assert [s["name"] for s in health["systems"]] == ["echo"]
        echo = health["systems"][0]
        if echo["probe_at"] is not None or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    # times as everywhere in the API: RFC 3339 UTC
    for name in ("probe_at", "last_success"):
        assert datetime.fromisoformat(echo[name].replace("Z", "+00:00")).tzinfo is not None
        assert echo[name].endswith("Z")

    assert server.stop() == 0
    assert port_closed(gw_port) and port_closed(sb_port)  # the sandbox child went too


def test_serve_runs_several_processes_on_one_port(tmp_path: Path, running: list[Running]) -> None:
    gw_port, sb_port = free_port(), free_port()
    # no sandbox: the echo adapter needs its own base URL (nothing needs to listen there)
    config = write_config(tmp_path, gw_port, sb_port, f'base_url = "http://127.0.0.1:{sb_port}"')
    server = Running([*GATEWAY, "--config", str(config), "serve", "--processes", "2"])
    running.append(server)
    wait_live(f"http://127.0.0.1:{gw_port}/health/live")
    children = [
        p for p in Path("/proc").iterdir() if p.name.isdigit() and _ppid(p) == server.proc.pid
    ]
    assert len(children) >= 2
    assert server.stop() == 0


def test_metrics_of_several_processes_are_merged(tmp_path: Path, running: list[Running]) -> None:
    """``serve --processes 2`` switches on prometheus_client's multiprocess mode: /metrics
    shows the figures of both processes (whichever answers), from a folder of this run that
    is removed at exit."""
    from gateway.security import generate_api_key, hash_api_key, write_clients_file
    from gateway.settings import ClientSettings

    gw_port, sb_port = free_port(), free_port()
    config = write_config(tmp_path, gw_port, sb_port, f'base_url = "http://127.0.0.1:{sb_port}"')
    key = generate_api_key()
    write_clients_file(
        tmp_path / "clients.toml",
        [ClientSettings(id="scraper", key_sha256=hash_api_key(key), scopes=["ops:read"])],
    )
    server = Running([*GATEWAY, "--config", str(config), "serve", "--processes", "2"])
    running.append(server)
    base = f"http://127.0.0.1:{gw_port}"
    wait_live(f"{base}/health/live")
    children = [
        p for p in Path("/proc").iterdir() if p.name.isdigit() and _ppid(p) == server.proc.pid
    ]
    folders = {_environ(child).get("PROMETHEUS_MULTIPROC_DIR") for child in children}
    folders.discard(None)
    assert len(folders) == 1, folders  # one folder for every server process of this run
    folder = Path(str(folders.pop()))
    assert folder.is_dir()

    pings = 40
    for _ in range(pings):  # a connection each, so both processes answer some
        assert httpx.get(f"{base}/health/live", timeout=5).status_code == 200
    headers = {"Authorization": f"Bearer {key}"}
    for _ in range(6):  # whichever process answers the scrape, it shows both
        text = httpx.get(f"{base}/metrics", headers=headers, timeout=5).text
        live = [
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("gateway_http_requests_total{")
            and 'route="/health/live"' in line
            and 'status="200"' in line
        ]
        assert sum(live) >= pings, text
        # a gauge written by each process keeps one series per process id
        pids = set(re.findall(r'^gateway_http_requests_in_flight\{pid="(\d+)"\}', text, re.M))
        assert len(pids) >= 2, text
    assert server.stop() == 0
    assert not folder.exists()  # removed at exit: the next run starts from nothing


def _environ(proc_dir: Path) -> dict[str, str]:
    try:
        raw = (proc_dir / "environ").read_bytes()
    except OSError:
        return {}
    pairs = (item.split(b"=", 1) for item in raw.split(b"\0") if b"=" in item)
    return {k.decode(errors="replace"): v.decode(errors="replace") for k, v in pairs}


def _ppid(proc_dir: Path) -> int | None:
    try:
        stat = (proc_dir / "stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])


@pytest.mark.parametrize(
    ("extra", "flags", "named"),
    [
        # found when the adapters are built: caught before the sandbox or any server starts
        ("outbound = {retry = {max_attempts = 0}}", ["--sandbox"], "adapters.echo.outbound"),
        # found when the adapter starts: without the sandbox the echo system has no URL
        ("", ["--processes", "2"], "adapters.echo.base_url"),
    ],
)
def test_serve_refuses_a_bad_configuration_with_exit_2(
    tmp_path: Path, extra: str, flags: list[str], named: str
) -> None:
    gw_port = free_port()
    config = write_config(tmp_path, gw_port, free_port(), extra)
    result = subprocess.run(
        [*GATEWAY, "--config", str(config), "serve", *flags],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO / "tests")},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert named in result.stderr
    assert port_closed(gw_port)
