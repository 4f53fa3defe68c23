"""Fixtures of the dashboard's browser tests (see dashboard_rig.py for the arrangement)."""

from __future__ import annotations

import shutil
import signal
import subprocess
from collections.abc import Iterator

import pytest
from dashboard_rig import (
    CHROMIUM_ARGS,
    REPO,
    Gateway,
    add_client,
    free_port,
    gateway_command,
    subprocess_env,
    wait_ready,
    write_config,
)
from playwright.sync_api import Browser, Page, sync_playwright


@pytest.fixture(scope="session")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    root = tmp_path_factory.mktemp("dashboard-e2e")
    port, sandbox_port = free_port(), free_port()
    config = write_config(root, port, sandbox_port)
    ops_key = add_client(config, "ops-e2e", "ops:read", "ops:write")
    api_key = add_client(config, "dossier-system", "dossiers:write", "dossiers:read")
    log = root / "gateway.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*gateway_command(), "--config", str(config), "serve", "--sandbox"],
            cwd=REPO,
            env=subprocess_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    gw = Gateway(
        base=f"http://127.0.0.1:{port}",
        sandbox=f"http://127.0.0.1:{sandbox_port}",
        ops_key=ops_key,
        api_key=api_key,
        config=config,
        log=log,
        proc=proc,
    )
    try:
        wait_ready(gw)
        yield gw
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


# ---------------------------------------------------------------- the browser


# module scope, not session: Playwright's sync API runs an event loop in the main thread
# while it is open, and every asyncio test after it would find that loop still running
@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    executable = shutil.which("chromium")
    if executable is None:
        pytest.fail(
            "the dashboard's browser tests need Debian's Chromium ('chromium' on PATH); "
            "install it with scripts/install-system-deps.sh (apt-get install chromium)"
        )
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Browser, gateway: Gateway) -> Iterator[Page]:
    """A fresh browser context (no cookies) on the gateway, Vietnamese locale and time zone."""
    context = browser.new_context(
        base_url=gateway.base,
        locale="vi-VN",
        timezone_id="Asia/Ho_Chi_Minh",
        viewport={"width": 1280, "height": 900},
    )
    context.set_default_timeout(10_000)
    opened = context.new_page()
    try:
        yield opened
    finally:
        context.close()
