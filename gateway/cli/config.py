"""``gateway check-config``: the effective configuration, secrets redacted."""

from __future__ import annotations

import json
from pathlib import Path

import click

from gateway.cli.common import config_option, settings_from_context


@click.command("check-config")
@config_option
@click.pass_context
def check_config(ctx: click.Context, config: Path | None) -> None:
    """Print the effective configuration, secrets redacted; exit 2 naming a bad key."""
    settings = settings_from_context(ctx, config)
    click.echo(json.dumps(settings.model_dump(mode="json"), indent=2, ensure_ascii=False))
