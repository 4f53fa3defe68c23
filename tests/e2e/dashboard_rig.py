"""The dashboard's browser tests' rig: a real ``gateway serve --sandbox``, Debian's Chromium.

The gateway runs as a subprocess (the installed ``gateway`` command, as ops run it) with a
temporary configuration: free ports for the gateway and the sandbox, a temporary SQLite store,
a temporary development PKI, probes every second, job workers on. Its clients are created with
``gateway clients add``. Playwright drives the system Chromium (it cannot download its own
browser here); screenshots of every page go to ``artifacts/screenshots/`` on every run.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from playwright.sync_api import Locator, Page

REPO = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO / "artifacts" / "screenshots"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
#: seconds between health probes in the gateway under test
PROBE_INTERVAL = 1.0
START_TIMEOUT = 60.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def gateway_command() -> list[str]:
    """The ``gateway`` console script of this interpreter's environment (.venv/bin/gateway)."""
    script = Path(sys.executable).with_name("gateway")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from gateway.cli import main; main()"]


@dataclass
class Gateway:
    base: str
    sandbox: str
    ops_key: str
    api_key: str
    config: Path
    log: Path
    proc: subprocess.Popen[bytes]

    @property
    def api_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}

    @property
    def ops_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.ops_key}"}

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def write_config(root: Path, port: int, sandbox_port: int) -> Path:
    pki = root / "pki"
    config = root / "gateway.toml"
    config.write_text(
        f"""
environment = "sandbox"
[server]
host = "127.0.0.1"
port = {port}
[sandbox]
port = {sandbox_port}
[store]
backend = "sqlite"
sqlite_path = "{root / "gateway.db"}"
[security]
clients_file = "{root / "clients.toml"}"
[security.rate_limit]
enabled = false
[signing]
dev_pki_dir = "{pki}"
key_path = "{pki / "gateway.key.pem"}"
cert_path = "{pki / "gateway.cert.pem"}"
trust_paths = ["{pki / "ca.cert.pem"}"]
[jobs]
workers = 2
poll_interval = 0.1
[ops]
probe_interval_seconds = {PROBE_INTERVAL}
[logging]
level = "WARNING"
format = "json"
[capabilities]
dossiers = "national_portal"
identity = "population_db"
[adapters.national_portal]
base_url = "http://127.0.0.1:{sandbox_port}/national_portal"
madonvi = "000.00.00.H47"
[adapters.population_db]
base_url = "http://127.0.0.1:{sandbox_port}/population_db"
""",
        encoding="utf-8",
    )
    return config


def subprocess_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def add_client(config: Path, name: str, *scopes: str) -> str:
    args = [*gateway_command(), "--config", str(config), "clients", "add", name]
    for scope in scopes:
        args += ["--scope", scope]
    done = subprocess.run(
        args,
        cwd=REPO,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, f"gateway clients add {name}: {done.stderr}"
    key = done.stdout.strip()
    assert key.startswith("dvcgw_"), done.stdout
    return key


def wait_ready(gw: Gateway) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if gw.proc.poll() is not None:
            break
        try:
            if httpx.get(f"{gw.base}/health/ready", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"the gateway never became ready; its log:\n{gw.log_tail()}")


def sign_in(page: Page, gateway: Gateway, key: str | None = None) -> None:
    """Through the sign-in form, as an operator would."""
    page.goto("/ops")
    assert re.search(r"/ops/login\?next=%2Fops$", page.url), page.url
    page.fill("#api_key", key or gateway.ops_key)
    page.click("#sign-in")
    page.wait_for_url(f"{gateway.base}/ops")


def screenshot(page: Page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def reload_until(page: Page, url: str, selector: str, *, timeout: float = 20.0) -> Locator:
    """Open ``url`` again until ``selector`` is on it (work done by background workers)."""
    deadline = time.monotonic() + timeout
    while True:
        page.goto(url)
        found = page.locator(selector)
        if found.count():
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"{selector!r} never appeared on {url}")
        page.wait_for_timeout(300)
