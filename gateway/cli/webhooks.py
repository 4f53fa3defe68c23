"""``gateway webhooks status | enable ID | new-secret``: the provincial system's endpoints."""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
from datetime import datetime
from pathlib import Path

import click

from gateway.audit import LOCAL_TZ
from gateway.cli.common import EXIT_FAILED, config_option, fail, settings_from_context
from gateway.errors import GatewayError
from gateway.store import create_store
from gateway.webhooks import EndpointStatus, enable_endpoint, endpoint_statuses

__all__ = ["webhooks"]


def _when(ts: float | None) -> str:
    if ts is None:
        return "never"
    return datetime.fromtimestamp(ts, LOCAL_TZ).strftime("%Y-%m-%d %H:%M:%S")


@click.group()
def webhooks() -> None:
    """Webhook endpoints of the provincial system: state, re-enable, secrets."""


@webhooks.command("status")
@config_option
@click.option("--json", "as_json", is_flag=True, help="One JSON document per endpoint.")
@click.pass_context
def status(ctx: click.Context, config: Path | None, as_json: bool) -> None:
    """Each endpoint: delivering, failing or disabled; last success and failure."""
    settings = settings_from_context(ctx, config)

    async def run() -> list[EndpointStatus]:
        store = create_store(settings)
        await store.open()
        try:
            return await endpoint_statuses(store, settings.webhooks)
        finally:
            await store.close()

    try:
        found = asyncio.run(run())
    except GatewayError as exc:
        fail(exc.detail)
    if not found:
        click.echo("no webhook endpoints are configured ([[webhooks.endpoints]])")
    for endpoint in found:
        if as_json:
            click.echo(json.dumps(endpoint.as_dict(), ensure_ascii=False))
            continue
        click.echo(f"{endpoint.id}: {endpoint.state}  {endpoint.url}")
        click.echo(f"  last success {_when(endpoint.last_success)}")
        failure = _when(endpoint.last_failure)
        if endpoint.last_error:
            failure += f" ({endpoint.last_error})"
        click.echo(f"  last failure {failure}")
        if endpoint.disabled_reason:
            click.echo(f"  disabled: {endpoint.disabled_reason}")


@webhooks.command("enable")
@config_option
@click.argument("endpoint_id")
@click.pass_context
def enable(ctx: click.Context, config: Path | None, endpoint_id: str) -> None:
    """Re-enable an endpoint disabled by a 410 answer (then replay its dead letters)."""
    settings = settings_from_context(ctx, config)
    known = {e.id: e for e in settings.webhooks.endpoints}
    if endpoint_id not in known:
        fail(f"no webhook endpoint {endpoint_id!r}; configured: {', '.join(known) or 'none'}")
    if not known[endpoint_id].enabled:
        fail(f"{endpoint_id} is disabled in the configuration (enabled = false)", EXIT_FAILED)

    async def run() -> bool:
        store = create_store(settings)
        await store.open()
        try:
            return await enable_endpoint(store, endpoint_id)
        finally:
            await store.close()

    try:
        was_disabled = asyncio.run(run())
    except GatewayError as exc:
        fail(exc.detail)
    if was_disabled:
        click.echo(f"{endpoint_id} enabled; replay its dead letters with `gateway dlq replay`")
    else:
        click.echo(f"{endpoint_id} was not disabled")


@webhooks.command("new-secret")
def new_secret() -> None:
    """Print a fresh signing secret (whsec_ + 32 random bytes) for an endpoint's config."""
    click.echo("whsec_" + base64.b64encode(secrets.token_bytes(32)).decode())
