"""A redis-server of a test's own: restartable, killable, persisting every write to its AOF.

For tests that stop, kill or stall Redis: the shared server of ``GATEWAY_TEST_REDIS_URL``
must never be touched that way.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from support.uvicorn_server import free_port

__all__ = ["RedisServer", "private_redis_server"]


class RedisServer:
    """``start`` again after ``stop`` or ``kill``: same port, same append-only file."""

    def __init__(self, directory: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is not installed (scripts/install-system-deps.sh)")
        self.binary = binary
        self.dir = directory
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                self.binary,
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--dir", str(self.dir),
                "--save", "",
                "--appendonly", "yes",
                "--appendfsync", "always",  # an acknowledged write is on disk
                "--enable-debug-command", "local",  # DEBUG SLEEP, to stall it
                "--logfile", str(self.dir / "redis.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as conn:
                    conn.sendall(b"PING\r\n")
                    if conn.recv(64).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            time.sleep(0.02)
        pytest.fail("private redis-server did not start")

    def kill(self) -> None:
        """SIGKILL: only what the AOF already holds survives."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None


@contextmanager
def private_redis_server(directory: Path) -> Iterator[RedisServer]:
    """A started server in ``directory`` (created), stopped at the end of the block."""
    directory.mkdir(parents=True, exist_ok=True)
    server = RedisServer(directory)
    server.start()
    try:
        yield server
    finally:
        server.stop()
