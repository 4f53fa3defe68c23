"""``gateway sandbox``: every installed adapter's simulator on one port, with fault injection.

``gateway serve --sandbox`` starts this same command as a child process (see ``serve.py``);
``--parent-pid`` makes the child leave when its parent is gone, however it went.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path

import click
import uvicorn

from gateway.cli.common import EXIT_FAILED, EXIT_USAGE, config_option, fail, settings_from_context
from gateway.errors import ConfigurationError
from gateway.observability import configure_logging
from gateway.sandbox import SandboxApp, build_sandbox, quiet_dropped_connections, sandbox_url

__all__ = ["sandbox"]


async def _watch_parent(server: uvicorn.Server, parent_pid: int) -> None:
    while not server.should_exit:
        if os.getppid() != parent_pid:
            server.should_exit = True
            return
        await asyncio.sleep(0.5)


async def serve_sandbox(
    app: SandboxApp, host: str, port: int, *, parent_pid: int | None = None
) -> None:
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        lifespan="on",
        # a "timeout" fault hangs its request; shutting down must not wait for it
        timeout_graceful_shutdown=1,
    )
    server = uvicorn.Server(config)
    watcher = (
        asyncio.create_task(_watch_parent(server, parent_pid)) if parent_pid is not None else None
    )
    try:
        await server.serve()
    finally:
        if watcher is not None:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
    if not server.started:
        raise SystemExit(EXIT_FAILED)


@click.command("sandbox")
@config_option
@click.option("--host", default=None, help="Listen address (default: sandbox.host).")
@click.option("--port", type=int, default=None, help="Listen port (default: sandbox.port).")
@click.option(
    "--gateway-url",
    default=None,
    help="Where simulators push callbacks (default: the gateway's public URL).",
)
@click.option("--parent-pid", type=int, default=None, hidden=True)
@click.pass_context
def sandbox(
    ctx: click.Context,
    config: Path | None,
    host: str | None,
    port: int | None,
    gateway_url: str | None,
    parent_pid: int | None,
) -> None:
    """Serve every installed adapter's simulator under /<adapter>/, with faults settable
    in [sandbox.faults] or at run time through the local-only /_sandbox/faults."""
    section: dict[str, object] = {}
    if host:
        section["host"] = host
    if port is not None:
        section["port"] = port
    settings = settings_from_context(ctx, config, **({"sandbox": section} if section else {}))
    configure_logging(settings.logging)
    try:
        app = build_sandbox(settings, gateway_url=gateway_url)
    except ConfigurationError as exc:
        fail(f"invalid configuration: {exc.detail}", EXIT_USAGE)
    quiet_dropped_connections()
    base = sandbox_url(settings)
    if parent_pid is None:
        click.echo(f"sandbox on {base}  (faults: {base}/_sandbox/faults)")
        for name in sorted(app.simulators):
            click.echo(f"  {name:<20} {base}/{name}/")
    asyncio.run(
        serve_sandbox(app, settings.sandbox.host, settings.sandbox.port, parent_pid=parent_pid)
    )
