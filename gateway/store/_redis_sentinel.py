"""Redis Sentinel addresses for the Redis store (private).

``store.redis_url`` names a Sentinel-managed primary with::

    redis+sentinel://[[username]:password@]host1[:26379][,host2[:26379]...]/service[/db]
        [?sentinel_password=...&sentinel_username=...]

The user info is for the data nodes (the primary); the sentinels get a password only through
``sentinel_password`` (deployments often protect them differently). Values are percent-decoded.
Errors name the part that is wrong, never a secret.
"""

from __future__ import annotations

import dataclasses
from urllib.parse import parse_qsl, quote, unquote, urlencode

from gateway.errors import ConfigurationError

__all__ = ["SCHEME", "SentinelTarget", "is_sentinel_url", "parse_sentinel_url", "redact"]

SCHEME = "redis+sentinel"
DEFAULT_PORT = 26379
_QUERY_KEYS = ("sentinel_password", "sentinel_username")
_MASK = "**********"


@dataclasses.dataclass(frozen=True, slots=True)
class SentinelTarget:
    sentinels: tuple[tuple[str, int], ...]
    service_name: str
    db: int = 0
    username: str | None = None
    password: str | None = dataclasses.field(default=None, repr=False)
    sentinel_username: str | None = None
    sentinel_password: str | None = dataclasses.field(default=None, repr=False)


def is_sentinel_url(url: str) -> bool:
    return url[: len(SCHEME) + 3].lower() == SCHEME + "://"


def _bad(reason: str) -> ConfigurationError:
    return ConfigurationError(f"store.redis_url ({SCHEME}): {reason}")


def _split(url: str) -> tuple[str, str, str, str]:
    """(userinfo, hosts, path, query) by hand: ``urlsplit`` cannot read a host list."""
    rest = url[len(SCHEME) + 3 :]
    rest, _, query = rest.partition("?")
    rest = rest.partition("#")[0]
    netloc, slash, path = rest.partition("/")
    userinfo, at, hosts = netloc.rpartition("@")
    return (userinfo if at else ""), hosts, (slash + path), query


def _host(item: str) -> tuple[str, int]:
    if item.startswith("["):  # [IPv6]:port
        host, _, tail = item[1:].partition("]")
        port_text = tail.removeprefix(":")
    elif item.count(":") == 1:
        host, _, port_text = item.partition(":")
    else:
        host, port_text = item, ""
    if not host:
        raise _bad("a sentinel host is empty")
    try:
        port = int(port_text) if port_text else DEFAULT_PORT
    except ValueError:
        raise _bad(f"sentinel port {port_text!r} is not a number") from None
    if not 0 < port < 65536:
        raise _bad(f"sentinel port {port} is out of range")
    return host, port


def parse_sentinel_url(url: str) -> SentinelTarget:
    if not is_sentinel_url(url):
        raise _bad(f"the URL must start with {SCHEME}://")
    userinfo, hosts, path, query = _split(url)
    username: str | None = None
    password: str | None = None
    if userinfo:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    sentinels = tuple(_host(item.strip()) for item in hosts.split(",") if item.strip())
    if not sentinels:
        raise _bad("no sentinel host (host1:26379,host2:26379)")
    parts = [unquote(p) for p in path.strip("/").split("/")] if path.strip("/") else []
    if not parts or not parts[0]:
        raise _bad("no service name (the path: /<service_name>[/<db>])")
    if len(parts) > 2:
        raise _bad("the path is /<service_name>[/<db>]")
    try:
        db = int(parts[1]) if len(parts) == 2 else 0
    except ValueError:
        raise _bad("the database number is not a number") from None
    options: dict[str, str] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key not in _QUERY_KEYS:
            raise _bad(f"unknown query parameter {key!r} (known: {', '.join(_QUERY_KEYS)})")
        options[key] = value
    return SentinelTarget(
        sentinels=sentinels,
        service_name=parts[0],
        db=db,
        username=username,
        password=password,
        sentinel_username=options.get("sentinel_username") or None,
        sentinel_password=options.get("sentinel_password") or None,
    )


def redact(url: str) -> str:
    """The URL with its passwords masked (user info and ``sentinel_password``)."""
    userinfo, hosts, path, query = _split(url)
    netloc = hosts
    if userinfo:
        user, colon, _ = userinfo.partition(":")
        netloc = f"{user}{':' + _MASK if colon else ''}@{hosts}"
    pairs = [
        (k, _MASK if k == "sentinel_password" else v)
        for k, v in parse_qsl(query, keep_blank_values=True)
    ]
    tail = "?" + urlencode(pairs, quote_via=quote, safe="*") if pairs else ""
    return f"{SCHEME}://{netloc}{path}{tail}"
