"""``gateway clients add | list | remove | rotate``: the callers in ``security.clients_file``.

``add`` and ``rotate`` print the new key alone on standard output, once, so a script can capture
it (``KEY=$(gateway clients add dossier-system --scope dossiers:write)``); the file keeps only
its SHA-256. Clients declared under ``[[clients]]`` in the configuration are listed but changed
only by editing that file.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

import click
from pydantic import ValidationError

from gateway.cli.common import (
    EXIT_FAILED,
    EXIT_USAGE,
    config_option,
    describe_validation_error,
    fail,
    settings_from_context,
)
from gateway.errors import ConfigurationError
from gateway.security import (
    SCOPE_PATTERN,
    generate_api_key,
    hash_api_key,
    read_clients_file,
    write_clients_file,
)
from gateway.settings import ClientSettings, Settings

__all__ = ["clients"]


def _file_clients(settings: Settings) -> tuple[Path, list[ClientSettings]]:
    path = settings.security.clients_file
    try:
        return path, read_clients_file(path)
    except ConfigurationError as exc:
        fail(exc.detail, EXIT_USAGE)


def _refuse_configured(settings: Settings, name: str) -> None:
    if any(c.id == name for c in settings.clients):
        where = settings.config_path or "the configuration"
        fail(f"client {name!r} is declared in {where}; change it there", EXIT_FAILED)


@click.group()
def clients() -> None:
    """Manage the clients (callers) of the gateway and their API keys."""


@clients.command("add")
@config_option
@click.argument("name")
@click.option("--scope", "scopes", multiple=True, required=True, help="A scope; repeatable.")
@click.option("--network", "networks", multiple=True, help="Allowed CIDR; repeatable.")
@click.option("--unit", "units", multiple=True, help="Allowed unit code; repeatable.")
@click.option("--rate-limit", type=int, default=None, help="Requests per minute.")
@click.option("--description", default="", help="Who this client is.")
@click.pass_context
def add(
    ctx: click.Context,
    config: Path | None,
    name: str,
    scopes: tuple[str, ...],
    networks: tuple[str, ...],
    units: tuple[str, ...],
    rate_limit: int | None,
    description: str,
) -> None:
    """Create client NAME and print its new API key (only the key, only once)."""
    settings = settings_from_context(ctx, config)
    path, existing = _file_clients(settings)
    if any(c.id == name for c in [*settings.clients, *existing]):
        fail(f"client {name!r} already exists; use 'gateway clients rotate' for a new key")
    for scope in scopes:
        if not SCOPE_PATTERN.match(scope):
            fail(
                f"--scope {scope!r}: a scope looks like area:verb, e.g. identity:verify", EXIT_USAGE
            )
    for net in networks:
        try:
            ipaddress.ip_network(net, strict=False)
        except ValueError:
            fail(f"--network {net!r}: not an address or CIDR network", EXIT_USAGE)
    key = generate_api_key()
    try:
        client = ClientSettings(
            id=name,
            key_sha256=hash_api_key(key),
            scopes=sorted(set(scopes)),
            allowed_networks=list(networks),
            allowed_units=sorted(set(units)),
            rate_limit_per_minute=rate_limit,
            description=description,
        )
    except ValidationError as exc:
        fail(f"invalid client: {describe_validation_error(exc)}", EXIT_USAGE)
    write_clients_file(path, [*existing, client])
    click.echo(f"client {name!r} added to {path}; its key is printed once", err=True)
    click.echo(key)


@clients.command("rotate")
@config_option
@click.argument("name")
@click.pass_context
def rotate(ctx: click.Context, config: Path | None, name: str) -> None:
    """Give client NAME a new API key (the old one stops working) and print it."""
    settings = settings_from_context(ctx, config)
    _refuse_configured(settings, name)
    path, existing = _file_clients(settings)
    if not any(c.id == name for c in existing):
        fail(f"no client {name!r} in {path}")
    key = generate_api_key()
    updated = [
        c.model_copy(update={"key_sha256": hash_api_key(key)}) if c.id == name else c
        for c in existing
    ]
    write_clients_file(path, updated)
    click.echo(f"client {name!r} has a new key; the old one no longer works", err=True)
    click.echo(key)


@clients.command("remove")
@config_option
@click.argument("name")
@click.pass_context
def remove(ctx: click.Context, config: Path | None, name: str) -> None:
    """Delete client NAME; its key stops working at once."""
    settings = settings_from_context(ctx, config)
    _refuse_configured(settings, name)
    path, existing = _file_clients(settings)
    kept = [c for c in existing if c.id != name]
    if len(kept) == len(existing):
        fail(f"no client {name!r} in {path}")
    write_clients_file(path, kept)
    click.echo(f"client {name!r} removed", err=True)


@clients.command("list")
@config_option
@click.pass_context
def list_clients(ctx: click.Context, config: Path | None) -> None:
    """List every client: id, where it is declared, scopes, networks, units, rate limit."""
    settings = settings_from_context(ctx, config)
    _, from_file = _file_clients(settings)
    rows = [("ID", "SOURCE", "SCOPES", "NETWORKS", "UNITS", "PER MIN")]
    entries = [(c, "config") for c in settings.clients] + [(c, "file") for c in from_file]
    default_limit = settings.security.rate_limit.default_per_minute
    for c, source in sorted(entries, key=lambda e: e[0].id):
        rows.append(
            (
                c.id,
                source,
                ",".join(c.scopes) or "-",
                ",".join(c.allowed_networks) or "any",
                ",".join(c.allowed_units) or "any",
                str(c.rate_limit_per_minute or f"{default_limit} (default)"),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
