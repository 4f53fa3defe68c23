"""``gateway audit verify | export``: check the exchange log's hash chain, export it.

``verify`` walks the whole chain in the configured store (or an export file with ``--file``)
and exits 1 naming the first broken record. ``export`` writes JSON Lines with every chain
field; the records it covers without a gap become purgeable by retention once older than
``retention.audit_days``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import TypeVar

import click

from gateway.audit import LOCAL_TZ, ExportResult, VerifyResult, export, parse_time, verify_chain
from gateway.audit import verify_export_file as verify_file
from gateway.cli.common import EXIT_FAILED, EXIT_USAGE, config_option, fail, settings_from_context
from gateway.errors import GatewayError
from gateway.settings import Settings
from gateway.store import create_store
from gateway.store.base import Store

__all__ = ["audit"]

T = TypeVar("T")


def _with_store(settings: Settings, action: Callable[[Store], Awaitable[T]]) -> T:
    async def run() -> T:
        store = create_store(settings)
        await store.open()
        try:
            return await action(store)
        finally:
            await store.close()

    try:
        return asyncio.run(run())
    except GatewayError as exc:
        fail(exc.detail)


def _when(option: str, value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return parse_time(value)
    except ValueError:
        fail(
            f"{option}: not a time; give a date or date-time, e.g. 2026-01-31 or "
            "2026-01-31T08:00 (Asia/Ho_Chi_Minh unless an offset is given)",
            EXIT_USAGE,
        )


def _report(result: VerifyResult, source: str) -> None:
    if result.ok:
        span = f" (up to seq {result.last_seq})" if result.checked else ""
        click.echo(f"audit chain intact: {result.checked} records checked{span} in {source}")
        return
    click.echo(
        f"audit chain BROKEN at record seq {result.first_broken_seq}: {result.reason} "
        f"({result.checked} records checked in {source})",
        err=True,
    )
    raise SystemExit(EXIT_FAILED)


@click.group()
def audit() -> None:
    """The exchange log: verify its hash chain, export it."""


@audit.command("verify")
@config_option
@click.option(
    "--file",
    "file",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    default=None,
    help="Verify an export file instead of the store.",
)
@click.pass_context
def verify(ctx: click.Context, config: Path | None, file: Path | None) -> None:
    """Walk the chain; exit 1 naming the first broken record."""
    if file is not None:
        try:
            result = verify_file(file)
        except (ValueError, KeyError) as exc:
            fail(f"{file}: not an audit export ({type(exc).__name__}: {exc})")
        _report(result, str(file))
        return
    settings = settings_from_context(ctx, config)
    result = _with_store(settings, verify_chain)
    _report(result, "the store")


def _default_out(settings: Settings, since: float | None, until: float | None) -> Path:
    def stamp(ts: float | None, fallback: str) -> str:
        if ts is None:
            return fallback
        return datetime.fromtimestamp(ts, LOCAL_TZ).strftime("%Y%m%dT%H%M%S")

    made = datetime.fromtimestamp(time.time(), LOCAL_TZ).strftime("%Y%m%dT%H%M%S")
    name = f"audit-{stamp(since, 'start')}-{stamp(until, 'now')}-{made}.jsonl"
    return settings.audit.export_dir / name


@audit.command("export")
@config_option
@click.option("--from", "since", default=None, help="From this time (inclusive).")
@click.option("--to", "until", default=None, help="Up to this time (exclusive).")
@click.option(
    "--out",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Output file (default: a new file in audit.export_dir).",
)
@click.pass_context
def export_(
    ctx: click.Context,
    config: Path | None,
    since: str | None,
    until: str | None,
    out: Path | None,
) -> None:
    """Write the records in [--from, --to) as JSON Lines, chain fields included.

    Times are dates or ISO 8601 date-times, Asia/Ho_Chi_Minh unless an offset is given."""
    start, end = _when("--from", since), _when("--to", until)
    if start is not None and end is not None and end <= start:
        fail("--to must be after --from", EXIT_USAGE)
    settings = settings_from_context(ctx, config)
    path = out or _default_out(settings, start, end)
    if path.exists():
        fail(f"{path} exists; choose another --out", EXIT_USAGE)

    async def run(store: Store) -> ExportResult:
        return await export(store, path, start, end)

    result = _with_store(settings, run)
    span = f" (seq {result.first_seq}..{result.last_seq})" if result.written else ""
    click.echo(f"exported {result.written} records{span} to {result.path}")
    if result.mark is not None:
        click.echo(f"exported without a gap up to seq {result.mark.seq} (retention may purge)")
