"""``gateway check-config``: the effective configuration, secrets redacted.

Exit 0 with the configuration as JSON on standard output; exit 2 naming the key and the reason
when the file is not valid TOML, a key is unknown or has a bad value (from the file or from a
``GATEWAY_*`` variable), an adapter is unknown or its section does not validate, or the clients
file is broken.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import click

from gateway.adapters import AdapterRegistry
from gateway.cli.common import EXIT_USAGE, config_option, fail, settings_from_context
from gateway.errors import ConfigurationError
from gateway.security import ClientDirectory
from gateway.settings import CONFIG_ENV, Settings
from gateway.store import _redis_sentinel

__all__ = ["check_config", "redacted_config", "unknown_environment_variables"]

REDACTED = "**********"
#: GATEWAY_* variables that are not settings: the CLI's and the sandbox's, and every
#: GATEWAY_TEST* switch of the test suite (GATEWAY_TEST_REDIS_URL, GATEWAY_TESTING_...)
NON_SETTINGS_VARIABLES = frozenset({CONFIG_ENV, "GATEWAY_SANDBOX_URL"})
NON_SETTINGS_PREFIX = "GATEWAY_TEST"
#: key names whose values are credentials even when an adapter's model does not say so
_SECRET_NAME = re.compile(
    r"(?i)(^|_)(password|passwd|secret|token|api_?key|private_?key|credentials?)$"
)


def unknown_environment_variables(environ: dict[str, str] | None = None) -> list[str]:
    """``GATEWAY_*`` variables naming no top-level setting: pydantic-settings ignores those,
    which would hide a typo such as ``GATEWAY_STORE_BACKEND`` (one underscore)."""
    environ = dict(os.environ) if environ is None else environ
    known = {name.upper() for name in Settings.model_fields}
    out = []
    for name in sorted(environ):
        if not name.startswith("GATEWAY_") or name in NON_SETTINGS_VARIABLES:
            continue
        if name.startswith(NON_SETTINGS_PREFIX):
            continue
        top = name[len("GATEWAY_") :].split("__", 1)[0]
        if top not in known:
            out.append(name)
    return out


def _redact_url(url: str) -> str:
    if _redis_sentinel.is_sentinel_url(url):  # a host list, which urlsplit cannot read
        return _redis_sentinel.redact(url)
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}:{REDACTED}@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def _redact_by_name(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            k: (
                REDACTED
                if _SECRET_NAME.search(str(k)) and not str(k).endswith("_file") and v is not None
                else _redact_by_name(v)
            )
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_redact_by_name(v) for v in value]
    return value


def redacted_config(settings: Settings, registry: AdapterRegistry) -> dict[str, Any]:
    """The effective configuration as JSON data; secret values replaced by asterisks."""
    data: dict[str, Any] = settings.model_dump(mode="json")
    # the adapters' own models know which of their fields are SecretStr
    data["adapters"] = {
        name: config.model_dump(mode="json") for name, config in registry.configs.items()
    }
    data["store"]["redis_url"] = _redact_url(settings.store.redis_url.get_secret_value())
    result: dict[str, Any] = _redact_by_name(data)
    return result


@click.command("check-config")
@config_option
@click.pass_context
def check_config(ctx: click.Context, config: Path | None) -> None:
    """Print the effective configuration, secrets redacted; exit 2 naming a bad key."""
    unknown = unknown_environment_variables()
    if unknown:
        fail(
            f"invalid configuration: environment variable {unknown[0]}: names no setting "
            "(nested keys use a double underscore, e.g. GATEWAY_STORE__BACKEND)",
            EXIT_USAGE,
        )
    settings = settings_from_context(ctx, config)
    try:
        registry = AdapterRegistry.from_settings(settings)
        directory = ClientDirectory.from_settings(settings)
    except ConfigurationError as exc:
        fail(f"invalid configuration: {exc.detail}", EXIT_USAGE)
    click.echo(json.dumps(redacted_config(settings, registry), indent=2, ensure_ascii=False))
    adapters = ", ".join(sorted(registry.configs)) or "none"
    click.echo(
        f"configuration OK ({settings.config_path or 'defaults and environment'}): "
        f"adapters {adapters}; {len(directory)} clients; store {settings.store.backend}",
        err=True,
    )
