"""``gateway serve``: the HTTP server (and, with --sandbox, the simulators)."""

from __future__ import annotations

from pathlib import Path

import click
import uvicorn

from gateway.app import create_app
from gateway.cli.common import EXIT_USAGE, config_option, fail, settings_from_context
from gateway.errors import ConfigurationError


@click.command()
@config_option
@click.option("--sandbox", is_flag=True, help="Run the simulators beside the gateway.")
@click.option("--host", default=None, help="Listen address (default: server.host).")
@click.option("--port", type=int, default=None, help="Listen port (default: server.port).")
@click.option("--processes", type=int, default=None, help="Server processes on one port.")
@click.pass_context
def serve(
    ctx: click.Context,
    config: Path | None,
    sandbox: bool,
    host: str | None,
    port: int | None,
    processes: int | None,
) -> None:
    """Start the gateway (and, with --sandbox, the simulators)."""
    server: dict[str, object] = {}
    if host:
        server["host"] = host
    if port is not None:
        server["port"] = port
    if processes is not None:
        server["processes"] = processes
    overrides: dict[str, object] = {"server": server} if server else {}
    settings = settings_from_context(ctx, config, **overrides)
    try:
        app = create_app(settings)
    except ConfigurationError as exc:
        fail(exc.detail, EXIT_USAGE)
    uvicorn.run(app, host=settings.server.host, port=settings.server.port, log_config=None)
