"""The reliability tests' receiver and the test adapter whose jobs call it.

:class:`Receiver` is a tiny HTTP server (``http.server`` in a thread of the test process)
recording every ``POST /hit`` and ``POST /tick`` body in arrival order. :class:`ReceiverAdapter`
(``extra_adapters = ["support.receiver:ReceiverAdapter"]``, ``[adapters.receiver] base_url``)
gives the handlers: ``receiver.hit`` posts the job id and payload, ``receiver.tick`` the
scheduled tick; ``tick_seconds`` in its config declares the periodic job.

:func:`write_config` writes a gateway TOML file for the worker and server processes the tests
start with :func:`start_gateway`.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import httpx

from gateway.adapters import Adapter, AdapterConfig, ScheduledJob
from gateway.errors import UpstreamUnavailable
from gateway.store.base import Job

__all__ = [
    "HIT_KIND",
    "RECEIVER_ADAPTER",
    "TICK_KIND",
    "GatewayProcess",
    "Receiver",
    "ReceiverAdapter",
    "start_gateway",
    "write_config",
]

RECEIVER_ADAPTER = "support.receiver:ReceiverAdapter"
HIT_KIND = "receiver.hit"
TICK_KIND = "receiver.tick"
TESTS_DIR = Path(__file__).resolve().parents[1]
REPO_DIR = TESTS_DIR.parent


class Receiver:
    """Records what the jobs deliver. Thread-safe; ``hits`` in arrival order."""

    def __init__(self) -> None:
        self.hits: list[dict[str, Any]] = []
        self.ticks: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                # headers and body leave in two writes: without this, Nagle plus the
                # client's delayed ACK stall every answer by 40 ms
                self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                try:
                    body = json.loads(self.rfile.read(length) or b"{}")
                except ValueError:
                    body = None
                # on a shared machine another test's client may land on this port: record
                # only what our jobs send
                ours = isinstance(body, dict) and "job_id" in body
                if ours and self.path in ("/hit", "/tick"):
                    with receiver._lock:
                        (receiver.ticks if self.path == "/tick" else receiver.hits).append(body)
                self.send_response(200 if ours else 400)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, format: str, *args: Any) -> None:
                return

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                # a killed worker resets its connections: expected here, not worth a trace
                return

        self._server = Server(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def hit_ids(self) -> set[str]:
        with self._lock:
            return {h["job_id"] for h in self.hits}

    def snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.hits)


class ReceiverConfig(AdapterConfig):
    #: declare the periodic job receiver.tick with this interval
    tick_seconds: float | None = None


class ReceiverAdapter(Adapter):
    name: ClassVar[str] = "receiver"
    title: ClassVar[str] = "Test receiver"
    title_vi: ClassVar[str] = "Máy nhận thử nghiệm"
    config_model: ClassVar[type[AdapterConfig]] = ReceiverConfig

    _http: httpx.AsyncClient | None = None

    async def start(self) -> None:
        self._http = httpx.AsyncClient(
            base_url=self.config.base_url,
            timeout=10.0,
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=64),
        )

    async def stop(self) -> None:
        if self._http is not None:
            await self._http.aclose()

    def job_handlers(self) -> dict[str, Any]:
        return {HIT_KIND: self.hit, TICK_KIND: self.tick}

    def scheduled_jobs(self) -> Sequence[ScheduledJob]:
        assert isinstance(self.config, ReceiverConfig)
        if self.config.tick_seconds is None:
            return ()
        return [
            ScheduledJob(name="tick", kind=TICK_KIND, interval_seconds=self.config.tick_seconds)
        ]

    async def _post(self, path: str, body: dict[str, Any]) -> None:
        assert self._http is not None
        try:
            response = await self._http.post(path, json=body)
        except httpx.TransportError as exc:
            raise UpstreamUnavailable(
                f"receiver: {type(exc).__name__}", system="receiver"
            ) from None
        if response.status_code != 200:
            raise UpstreamUnavailable(
                f"receiver answered {response.status_code}", system="receiver"
            )

    async def hit(self, job: Job) -> None:
        await self._post("/hit", {"job_id": job.id, "pid": os.getpid(), **job.payload})

    async def tick(self, job: Job) -> None:
        await self._post("/tick", {"job_id": job.id, "tick": job.dedupe_key, "pid": os.getpid()})


# ---------------------------------------------------------------- processes


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {_toml(v)}" for k, v in value.items()) + "}"
    raise TypeError(type(value))


def _key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


def _emit(lines: list[str], name: str, table: dict[str, Any]) -> None:
    if name:
        lines.append(f"\n[{name}]")
    for key, value in table.items():
        if value is not None and not isinstance(value, dict):
            lines.append(f"{_key(key)} = {_toml(value)}")
    for key, value in table.items():
        if isinstance(value, dict):
            _emit(lines, f"{name}.{_key(key)}" if name else _key(key), value)


def write_config(path: Path, settings: dict[str, Any]) -> Path:
    """Write nested dicts as a TOML file (sub-dicts become tables)."""
    lines: list[str] = []
    _emit(lines, "", settings)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


class GatewayProcess:
    """A ``gateway`` subprocess (worker or serve) with its output in a log file."""

    def __init__(self, args: Sequence[str], log_path: Path) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(TESTS_DIR), env.get("PYTHONPATH", "")])
        env.pop("GATEWAY_CONFIG", None)
        self.log_path = log_path
        self._log = log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from gateway.cli import main; main()", *args],
            cwd=REPO_DIR,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as when a machine dies."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def terminate(self, timeout: float = 30.0) -> int:
        """SIGTERM and wait: the graceful path."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        finally:
            self._log.close()

    def ensure_stopped(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        if not self._log.closed:
            self._log.close()

    def output(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")[-4000:]


def start_gateway(command: str, config: Path, log_path: Path, *extra: str) -> GatewayProcess:
    return GatewayProcess([command, "--config", str(config), *extra], log_path)


def wait_until(predicate: Any, *, within: float, message: str, every: float = 0.05) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(message)
        time.sleep(every)
