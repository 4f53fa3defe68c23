"""Shared CLI plumbing: the --config option and settings loading with readable errors."""

from __future__ import annotations

import sys
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click
from pydantic import ValidationError

from gateway.errors import ConfigurationError
from gateway.settings import Settings, load_settings

F = TypeVar("F", bound=Callable[..., Any])

EXIT_FAILED = 1
EXIT_USAGE = 2


def config_option(func: F) -> F:
    return click.option(
        "--config",
        "config",
        type=click.Path(path_type=Path, dir_okay=False),
        default=None,
        help="Configuration file (default: config/gateway.toml, or $GATEWAY_CONFIG).",
    )(func)


def fail(message: str, code: int = EXIT_FAILED) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def describe_validation_error(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(root)"
        lines.append(f"{loc}: {err['msg']}")
    return "; ".join(lines)


def settings_from_context(
    ctx: click.Context, config: Path | None = None, **overrides: Any
) -> Settings:
    """Load settings for a command; exit 2 naming the bad key and the reason."""
    path = config or (ctx.find_root().obj or {}).get("config")
    try:
        return load_settings(path, **overrides)
    except FileNotFoundError as exc:
        fail(str(exc), EXIT_USAGE)
    except tomllib.TOMLDecodeError as exc:
        fail(f"invalid configuration: the file is not valid TOML: {exc}", EXIT_USAGE)
    except ValidationError as exc:
        fail(f"invalid configuration: {describe_validation_error(exc)}", EXIT_USAGE)
    except ConfigurationError as exc:
        fail(f"invalid configuration: {exc.detail}", EXIT_USAGE)
