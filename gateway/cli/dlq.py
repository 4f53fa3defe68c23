"""``gateway dlq list | replay ID | discard ID``: the dead-letter queue from a shell.

Moves are audited like the ops API's, with the actor ``cli:<user name>``.
"""

from __future__ import annotations

import asyncio
import getpass
import json
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from pathlib import Path
from typing import TypeVar

import click

from gateway.api.jobs import iso, job_view
from gateway.audit import Auditor
from gateway.cli.common import config_option, fail, settings_from_context
from gateway.dead_letters import DeadLetter, DeadLetters
from gateway.errors import GatewayError
from gateway.settings import Settings
from gateway.store import create_store

__all__ = ["dlq"]

T = TypeVar("T")


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli:unknown"


async def _with_dead_letters(
    settings: Settings, action: Callable[[DeadLetters], Awaitable[T]]
) -> T:
    store = create_store(settings)
    await store.open()
    try:
        return await action(DeadLetters(store, Auditor(store, settings.digest_key())))
    finally:
        await store.close()


def _run(
    ctx: click.Context, config: Path | None, action: Callable[[DeadLetters], Awaitable[T]]
) -> T:
    settings = settings_from_context(ctx, config)
    try:
        return asyncio.run(_with_dead_letters(settings, action))
    except GatewayError as exc:
        fail(exc.detail)


@click.group()
def dlq() -> None:
    """The dead-letter queue: list, replay, discard."""


@dlq.command("list")
@config_option
@click.option("--system", default=None, help="Only this adapter's jobs (kind prefix).")
@click.option("--kind", default=None, help="Only this job kind.")
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON document per line.")
@click.pass_context
def list_(
    ctx: click.Context,
    config: Path | None,
    system: str | None,
    kind: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """Dead letters, newest first, with the jobs each one holds back."""

    async def action(d: DeadLetters) -> list[DeadLetter]:
        return await d.list(system=system, kind=kind, limit=limit)

    found = _run(ctx, config, action)
    if as_json:
        for item in found:
            doc = asdict(job_view(item.job))
            doc["held_back"] = [j.id for j in item.held_back]
            click.echo(json.dumps(doc, ensure_ascii=False))
        return
    if not found:
        click.echo("no dead letters")
        return
    for item in found:
        job = item.job
        click.echo(
            f"{job.id}  {job.kind}  dead since {iso(job.updated_at)}  "
            f"attempts {job.attempt_count}  key {job.ordering_key or '-'}"
        )
        click.echo(f"    error: {job.last_error or '-'}")
        if item.held_back:
            ids = ", ".join(j.id for j in item.held_back)
            click.echo(f"    holds back {len(item.held_back)}: {ids}")


@dlq.command()
@config_option
@click.argument("job_id")
@click.pass_context
def replay(ctx: click.Context, config: Path | None, job_id: str) -> None:
    """Put a dead letter back in the queue (its attempts are kept)."""
    job = _run(ctx, config, lambda d: d.replay(job_id, actor=_actor()))
    click.echo(f"{job.id} replayed: {job.state.value}")


@dlq.command()
@config_option
@click.argument("job_id")
@click.pass_context
def discard(ctx: click.Context, config: Path | None, job_id: str) -> None:
    """Discard a dead letter, unblocking the later jobs of its ordering key."""
    job = _run(ctx, config, lambda d: d.discard(job_id, actor=_actor()))
    click.echo(f"{job.id} discarded")
