"""``gateway demo``: a narrated tour of the gateway against its sandbox (see gateway.demo).

Needs nothing running: it starts the gateway, the simulators and a webhook receiver itself,
on free loopback ports, with a temporary store. The configuration file (``--config``, default
``config/gateway.toml``) says which adapters take part; everything else is the demo's own.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import click

from gateway.cli.common import EXIT_USAGE, config_option, fail, settings_from_context
from gateway.errors import ConfigurationError
from gateway.settings import Settings

__all__ = ["demo"]


@click.command()
@config_option
@click.option(
    "--exit/--keep-running",
    "exit_after",
    default=False,
    help="Stop after the steps (default: keep the demo gateway up until Ctrl-C).",
)
@click.pass_context
def demo(ctx: click.Context, config: Path | None, exit_after: bool) -> None:
    """Run the gateway with its sandbox and narrate a command, a callback, a webhook and the
    audit chain (plus each configured adapter's own steps)."""
    from gateway.demo import run_demo

    base = settings_from_context(ctx, config)
    if base.environment == "production":
        fail("gateway demo runs in sandbox mode only; this configuration is production", EXIT_USAGE)

    def make_settings(overrides: dict[str, Any]) -> Settings:
        return settings_from_context(ctx, config, **overrides)

    try:
        code = asyncio.run(
            run_demo(make_settings, out=lambda line: click.echo(line), keep_running=not exit_after)
        )
    except ConfigurationError as exc:
        fail(f"invalid configuration: {exc.detail}", EXIT_USAGE)
    except KeyboardInterrupt:
        code = 0
    raise SystemExit(code)
