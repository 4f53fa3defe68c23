"""``gateway worker``: a standalone worker process (no HTTP server).

It builds the same Runtime as ``gateway serve`` and runs ``--concurrency`` async workers (and
the scheduler, which only enqueues while this process holds the scheduler lock). SIGTERM or
SIGINT: stop leasing, finish in-flight jobs within ``jobs.grace_period``, defer the rest.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import click

from gateway.cli.common import EXIT_USAGE, config_option, fail, settings_from_context
from gateway.errors import ConfigurationError
from gateway.settings import Settings

__all__ = ["run_worker", "worker"]

#: workers when neither --concurrency nor jobs.workers (0 in a serve-only setup) says
DEFAULT_CONCURRENCY = 4


async def run_worker(settings: Settings, *, stop: asyncio.Event | None = None) -> None:
    """Run until SIGTERM/SIGINT (or ``stop`` is set), then shut down gracefully."""
    from gateway.runtime import Runtime

    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    runtime = Runtime.build(settings)
    await runtime.start()
    click.echo(
        f"worker running: {settings.jobs.workers} workers, store {settings.store.backend}",
        err=True,
    )
    try:
        await stop.wait()
        click.echo("stopping: finishing in-flight jobs", err=True)
    finally:
        await runtime.stop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


@click.command()
@config_option
@click.option(
    "--concurrency",
    type=click.IntRange(1, 256),
    default=None,
    help=f"Async workers in this process (default: jobs.workers, else {DEFAULT_CONCURRENCY}).",
)
@click.pass_context
def worker(ctx: click.Context, config: Path | None, concurrency: int | None) -> None:
    """Run job workers without the HTTP server (SIGTERM stops gracefully)."""
    settings = settings_from_context(ctx, config)
    count = concurrency or settings.jobs.workers or DEFAULT_CONCURRENCY
    settings = settings.model_copy(
        update={"jobs": settings.jobs.model_copy(update={"workers": count})}
    )
    try:
        asyncio.run(run_worker(settings))
    except ConfigurationError as exc:
        fail(exc.detail, EXIT_USAGE)
