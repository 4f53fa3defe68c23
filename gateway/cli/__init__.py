"""The ``gateway`` command. One module per command group; this file only assembles them.

Exit codes: 0 success, 1 the operation failed, 2 usage or configuration error.
"""

from __future__ import annotations

from pathlib import Path

import click

from gateway.cli.common import config_option

__all__ = ["main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@config_option
@click.version_option(package_name="dvc-gateway")
@click.pass_context
def main(ctx: click.Context, config: Path | None) -> None:
    """dvc-gateway: the province's integration gateway to the national systems."""
    ctx.ensure_object(dict)
    ctx.obj["config"] = config


def _register() -> None:
    # each command group lives in its own module; add one line per new group
    from gateway.cli import (
        audit,
        clients,
        config,
        demo,
        dlq,
        keys,
        sandbox,
        serve,
        signing,
        webhooks,
        worker,
    )

    main.add_command(serve.serve)
    main.add_command(sandbox.sandbox)
    main.add_command(config.check_config)
    main.add_command(clients.clients)
    main.add_command(audit.audit)
    main.add_command(demo.demo)
    main.add_command(webhooks.webhooks)
    main.add_command(keys.keys)
    main.add_command(signing.sign)
    main.add_command(signing.verify)
    main.add_command(worker.worker)
    main.add_command(dlq.dlq)


_register()
