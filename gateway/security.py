"""Who is calling: clients, their credentials, scopes, networks and rate limits.

Every caller of the gateway is a configured :class:`Client` (the dossier system, an ops user,
a national system calling back). A client proves who it is with an API key, sent as
``Authorization: Bearer <key>``, ``X-API-Key: <key>`` or ``Authorization: Basic`` with the
client id as user name and the key as password (for national systems that only speak Basic),
or with a client certificate whose identity a TLS-terminating proxy passes in
``security.mtls_identity_header``; that header is believed only from ``server.trusted_proxies``.
Extra resolvers (the ops session cookie) register with :func:`register_credential_resolver`.

Only the SHA-256 of a key is kept. Keys are high-entropy random strings (``dvcgw_`` + 256 bits),
so a plain hash is enough: there is nothing to brute-force that a slow KDF would protect.

Routes declare what they need in ``opt``:

- ``opt={"anonymous": True}``: no authentication (health probes);
- ``opt={"scopes": ["identity:verify"]}``: the client must hold every listed scope. Every
  protected route declares ``scopes``; ``[]`` deliberately means "any authenticated client"
  (a resource the handler checks against its owner). ``tests/integration/test_auth.py`` walks
  every route and fails on one that declares nothing;
- ``opt={"login_redirect": "/ops/login"}``: a browser without credentials is redirected there
  instead of getting 401.

The authenticated client is ``request.user``. 401 (``Unauthenticated``) and 403
(``MissingScope``, ``NetworkNotAllowed``) are distinct problems. Per-client rate limits use
fixed one-minute windows counted with ``store.incr`` (claimed in small batches, see
:class:`RateLimiter`), so every instance sharing a Redis store shares the count.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import json
import math
import os
import re
import secrets
import time
import tomllib
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import structlog
from litestar.connection import ASGIConnection
from litestar.enums import ScopeType
from prometheus_client import Counter
from pydantic import ValidationError

from gateway.errors import (
    ConfigurationError,
    GatewayError,
    MissingScope,
    NetworkNotAllowed,
    RateLimited,
    StoreUnavailable,
    Unauthenticated,
    UnitNotAllowed,
)
from gateway.settings import ClientSettings, Settings

if TYPE_CHECKING:
    from litestar.types import ASGIApp, Receive, Scope, Send
    from litestar.types.asgi_types import (
        HTTPResponseBodyEvent,
        HTTPResponseStartEvent,
        WebSocketCloseEvent,
    )

    from gateway.store.base import Store

__all__ = [
    "API_KEY_PREFIX",
    "AuthMiddleware",
    "Client",
    "ClientDirectory",
    "CredentialResolver",
    "RateLimitMiddleware",
    "RateLimiter",
    "caller_address",
    "generate_api_key",
    "hash_api_key",
    "read_clients_file",
    "register_credential_resolver",
    "require_unit",
    "write_clients_file",
]

log = structlog.get_logger(__name__)

#: every generated key starts with this, so leaked keys are recognisable (and redacted in logs)
API_KEY_PREFIX = "dvcgw_"
#: scopes look like ``area:verb`` (``identity:verify``, ``callbacks:national_portal``)
SCOPE_PATTERN = re.compile(r"^[a-z][a-z0-9_.-]*:[a-z0-9_.*-]+$")
RATE_WINDOW_SECONDS = 60

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

AUTH_FAILURES = Counter(
    "gateway_auth_failures_total",
    "Requests refused by authentication or authorisation",
    ["reason"],
)
RATE_LIMITED = Counter(
    "gateway_rate_limited_total", "Requests refused by a client's rate limit", ["client"]
)


# ---------------------------------------------------------------- keys


def generate_api_key() -> str:
    """A new API key: the prefix and 256 random bits, URL-safe."""
    return API_KEY_PREFIX + secrets.token_urlsafe(32)


def hash_api_key(key: str) -> str:
    """Hex SHA-256 of a key, the only form in which keys are stored."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


# ---------------------------------------------------------------- clients


@dataclass(frozen=True, slots=True)
class Client:
    """An authenticated caller. ``request.user`` on every non-anonymous route."""

    id: str
    scopes: frozenset[str]
    #: empty = any unit
    allowed_units: frozenset[str] = frozenset()
    #: empty = any address
    allowed_networks: tuple[IPNetwork, ...] = ()
    #: requests per minute; None takes security.rate_limit.default_per_minute
    rate_limit_per_minute: int | None = None
    key_sha256: str | None = field(default=None, repr=False)
    mtls_identity: str | None = None
    description: str = ""
    #: where the client is defined: "config", "file", or a resolver's name
    source: str = "config"

    @classmethod
    def from_settings(cls, cs: ClientSettings, *, source: str = "config") -> Client:
        return cls(
            id=cs.id,
            scopes=frozenset(cs.scopes),
            allowed_units=frozenset(cs.allowed_units),
            allowed_networks=tuple(
                ipaddress.ip_network(n, strict=False) for n in cs.allowed_networks
            ),
            rate_limit_per_minute=cs.rate_limit_per_minute,
            key_sha256=cs.key_sha256,
            mtls_identity=cs.mtls_identity,
            description=cs.description,
            source=source,
        )

    def missing_scopes(self, required: Iterable[str]) -> list[str]:
        return [s for s in required if s not in self.scopes]

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes

    def may_call_from(self, address: IPAddress | None) -> bool:
        if not self.allowed_networks:
            return True
        return address is not None and any(address in net for net in self.allowed_networks)

    def may_act_for_unit(self, unit_code: str) -> bool:
        return not self.allowed_units or unit_code in self.allowed_units


def require_unit(client: Client, unit_code: str) -> None:
    """Raise ``UnitNotAllowed`` unless the client may act on dossiers of ``unit_code``."""
    if not client.may_act_for_unit(unit_code):
        raise UnitNotAllowed(f"client {client.id!r} may not act for unit {unit_code!r}")


# ---------------------------------------------------------------- the clients file


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        # JSON string escapes are a subset of TOML basic-string escapes
        return json.dumps(value, ensure_ascii=True)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} to the clients file")


def read_clients_file(path: Path) -> list[ClientSettings]:
    """The clients ``gateway clients add`` wrote; [] when the file does not exist."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise ConfigurationError(
            f"security.clients_file: cannot read {path}: {exc.strerror}"
        ) from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigurationError(
            f"security.clients_file: {path} is not valid TOML: {exc}"
        ) from None
    unknown = set(data) - {"clients"}
    if unknown:
        raise ConfigurationError(
            f"security.clients_file: {path}: unknown key {sorted(unknown)[0]!r} "
            "(only [[clients]] tables are allowed)"
        )
    out: list[ClientSettings] = []
    for i, item in enumerate(data.get("clients", [])):
        try:
            out.append(ClientSettings.model_validate(item))
        except ValidationError as exc:
            first = exc.errors()[0]
            loc = ".".join(str(p) for p in first["loc"])
            raise ConfigurationError(
                f"security.clients_file: {path}: clients[{i}].{loc}: {first['msg']}"
            ) from None
    return out


def write_clients_file(path: Path, clients: Sequence[ClientSettings]) -> None:
    """Replace the file atomically, readable by its owner only (0600)."""
    lines = [
        "# Written by `gateway clients add`; only SHA-256 hashes of keys, never the keys.",
        "",
    ]
    for cs in clients:
        lines.append("[[clients]]")
        for name, value in cs.model_dump(mode="json", exclude_none=True).items():
            if value in ([], ""):
                continue
            lines.append(f"{name} = {_toml_value(value)}")
        lines.append("")
    text = "\n".join(lines)
    tomllib.loads(text)  # never write a file we could not read back
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, text.encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


# ---------------------------------------------------------------- the directory


class ClientDirectory:
    """Every configured client: ``[[clients]]`` of the settings plus ``security.clients_file``.

    The file is re-read when its modification time changes (checked at most once a second), so
    ``gateway clients add`` and ``remove`` take effect without a restart.
    """

    RELOAD_CHECK_SECONDS = 1.0

    def __init__(
        self, configured: Sequence[ClientSettings] = (), clients_file: Path | None = None
    ) -> None:
        self._configured = list(configured)
        self._file = clients_file
        self._file_mtime: float | None = None
        self._next_check = 0.0
        self._by_id: dict[str, Client] = {}
        self._by_key: dict[str, Client] = {}
        self._by_identity: dict[str, Client] = {}
        self._load()

    @classmethod
    def from_settings(cls, settings: Settings) -> ClientDirectory:
        return cls(settings.clients, settings.security.clients_file)

    def _file_stamp(self) -> float | None:
        if self._file is None:
            return None
        try:
            return self._file.stat().st_mtime_ns / 1e9
        except FileNotFoundError:
            return None

    def _load(self) -> None:
        stamp = self._file_stamp()
        from_file = read_clients_file(self._file) if self._file is not None else []
        by_id: dict[str, Client] = {}
        by_key: dict[str, Client] = {}
        by_identity: dict[str, Client] = {}
        entries = [(cs, "config") for cs in self._configured] + [(cs, "file") for cs in from_file]
        for cs, source in entries:
            if cs.id in by_id:
                raise ConfigurationError(f"clients: the id {cs.id!r} is defined twice")
            for scope in cs.scopes:
                if not SCOPE_PATTERN.match(scope):
                    raise ConfigurationError(
                        f"clients: {cs.id!r} has a malformed scope {scope!r} (want area:verb)"
                    )
            client = Client.from_settings(cs, source=source)
            by_id[cs.id] = client
            if cs.key_sha256 is not None:
                if cs.key_sha256 in by_key:
                    raise ConfigurationError(f"clients: {cs.id!r} reuses another client's key")
                by_key[cs.key_sha256] = client
            if cs.mtls_identity is not None:
                by_identity[cs.mtls_identity] = client
        self._by_id, self._by_key, self._by_identity = by_id, by_key, by_identity
        self._file_mtime = stamp

    def refresh(self, *, now: float | None = None) -> None:
        """Re-read the clients file if it changed. A broken file keeps the last good set."""
        now = time.monotonic() if now is None else now
        if self._file is None or now < self._next_check:
            return
        self._next_check = now + self.RELOAD_CHECK_SECONDS
        if self._file_stamp() == self._file_mtime:
            return
        try:
            self._load()
            log.info("clients.reloaded", clients=len(self._by_id))
        except ConfigurationError as exc:
            log.error("clients.reload_failed", detail=exc.detail)

    def by_key(self, key: str) -> Client | None:
        """The client owning ``key``, compared in constant time.

        The dict lookup is on the SHA-256 of the presented key: its timing can only tell an
        attacker about the hash of a key they already hold, never about a stored key.
        """
        digest = hash_api_key(key)
        client = self._by_key.get(digest)
        if client is None or client.key_sha256 is None:
            return None
        return client if hmac.compare_digest(client.key_sha256, digest) else None

    def by_mtls_identity(self, identity: str) -> Client | None:
        return self._by_identity.get(identity)

    def get(self, client_id: str) -> Client | None:
        return self._by_id.get(client_id)

    def all(self) -> list[Client]:
        return sorted(self._by_id.values(), key=lambda c: c.id)

    def __len__(self) -> int:
        return len(self._by_id)


# ---------------------------------------------------------------- credential resolvers

#: an extra way to authenticate (the ops session cookie): returns the client or None when the
#: request does not carry this kind of credential; raises Unauthenticated when it carries a bad one
CredentialResolver = Callable[[ASGIConnection[Any, Any, Any, Any]], Awaitable[Client | None]]
_resolvers: list[CredentialResolver] = []


def register_credential_resolver(resolver: CredentialResolver) -> None:
    """Add a resolver tried after the API key headers (idempotent)."""
    if resolver not in _resolvers:
        _resolvers.append(resolver)


# ---------------------------------------------------------------- addresses


def _parse_ip(value: str | None) -> IPAddress | None:
    if not value:
        return None
    try:
        return ipaddress.ip_address(value.strip())
    except ValueError:
        return None


def _in_networks(address: IPAddress | None, networks: Sequence[IPNetwork]) -> bool:
    return address is not None and any(address in net for net in networks)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


def caller_address(scope: Scope, trusted_proxies: Sequence[IPNetwork]) -> IPAddress | None:
    """The caller's address: the peer, or, behind a trusted proxy, the nearest untrusted hop
    of ``X-Forwarded-For`` (read right to left, so a caller cannot forge its own entry)."""
    peer_info = scope.get("client")
    peer = _parse_ip(peer_info[0]) if peer_info else None
    if not _in_networks(peer, trusted_proxies):
        return peer
    forwarded = _header(scope, b"x-forwarded-for")
    if not forwarded:
        return peer
    for hop in reversed([h.strip() for h in forwarded.split(",")]):
        address = _parse_ip(hop)
        if address is None:
            return peer
        if not _in_networks(address, trusted_proxies):
            return address
    return peer


# ---------------------------------------------------------------- the middleware


async def _send_problem(
    scope: Scope, send: Send, error: GatewayError, headers: dict[str, str] | None = None
) -> None:
    # imported here: problems imports observability, which must not depend on security
    from gateway.api.problems import send_problem

    if scope["type"] == ScopeType.WEBSOCKET:
        # a refused handshake: the server answers 403 to the upgrade
        close: WebSocketCloseEvent = {"type": "websocket.close", "code": 1008, "reason": error.slug}
        await send(close)
        return
    await send_problem(scope, send, error, headers=headers)


def _is_docs_path(path: str, docs_prefix: str) -> bool:
    return path == docs_prefix or path.startswith(docs_prefix + "/")


class AuthMiddleware:
    """Authenticates every request of a non-anonymous route and checks its scopes.

    Sets ``scope["user"]`` (``request.user``, a :class:`Client`) and ``scope["auth"]`` (how:
    ``"api_key"``, ``"mtls"`` or the resolver's name). Never raises: refusals are sent as
    problem documents from here so the outer middlewares (request id, metrics) still see them.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        directory: ClientDirectory,
        settings: Settings,
        docs_prefix: str = "/schema",
    ) -> None:
        self.app = app
        self.directory = directory
        self.docs_prefix = docs_prefix
        self.trusted_proxies: tuple[IPNetwork, ...] = tuple(
            ipaddress.ip_network(n, strict=False) for n in settings.server.trusted_proxies
        )
        header = settings.security.mtls_identity_header
        self.mtls_header = header.lower().encode("latin-1") if header else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        opt = scope["route_handler"].opt
        if opt.get("anonymous") or _is_docs_path(scope["path"], self.docs_prefix):
            await self.app(scope, receive, send)
            return
        address = caller_address(scope, self.trusted_proxies)
        try:
            client, method = await self._authenticate(scope, receive)
        except Unauthenticated as exc:
            AUTH_FAILURES.labels("bad-credential").inc()
            await self._refuse_unauthenticated(scope, send, opt, exc)
            return
        if client is None:
            AUTH_FAILURES.labels("no-credential").inc()
            await self._refuse_unauthenticated(
                scope,
                send,
                opt,
                Unauthenticated(
                    "send the API key as 'Authorization: Bearer <key>' or 'X-API-Key: <key>'"
                ),
            )
            return
        if not client.may_call_from(address):
            AUTH_FAILURES.labels("network").inc()
            log.warning("auth.network_refused", client_id=client.id, address=str(address))
            await _send_problem(
                scope,
                send,
                NetworkNotAllowed(f"client {client.id!r} may not call from this address"),
            )
            return
        missing = client.missing_scopes(opt.get("scopes", ()))
        if missing:
            AUTH_FAILURES.labels("scope").inc()
            await _send_problem(
                scope,
                send,
                MissingScope(
                    f"this route needs scope {', '.join(missing)}; "
                    f"client {client.id!r} does not have it",
                    extra={"missing_scopes": missing},
                ),
            )
            return
        scope["user"] = client
        scope["auth"] = method
        structlog.contextvars.bind_contextvars(client_id=client.id)
        try:
            await self.app(scope, receive, send)
        finally:
            structlog.contextvars.unbind_contextvars("client_id")

    async def _authenticate(self, scope: Scope, receive: Receive) -> tuple[Client | None, str]:
        self.directory.refresh()
        key = self._presented_key(scope)
        if key is not None:
            presented, claimed_id = key
            client = self.directory.by_key(presented)
            if client is None or (claimed_id is not None and claimed_id != client.id):
                # a prefix of the hash helps ops match a caller's report; the key stays secret
                log.info("auth.unknown_key", key_hash_prefix=hash_api_key(presented)[:8])
                raise Unauthenticated("unknown or revoked API key")
            return client, "api_key"
        if self.mtls_header is not None:
            identity = _header(scope, self.mtls_header)
            if identity:
                peer_info = scope.get("client")
                peer = _parse_ip(peer_info[0]) if peer_info else None
                if not _in_networks(peer, self.trusted_proxies):
                    # anyone can send the header; only our TLS-terminating proxy may assert it
                    log.warning("auth.mtls_header_untrusted", peer=str(peer))
                    AUTH_FAILURES.labels("mtls-untrusted").inc()
                else:
                    client = self.directory.by_mtls_identity(identity.strip())
                    if client is None:
                        raise Unauthenticated("unknown client certificate identity")
                    return client, "mtls"
        if _resolvers:
            connection: ASGIConnection[Any, Any, Any, Any] = ASGIConnection(scope, receive)
            for resolver in _resolvers:
                client = await resolver(connection)
                if client is not None:
                    return client, getattr(resolver, "__name__", "resolver")
        return None, ""

    @staticmethod
    def _presented_key(scope: Scope) -> tuple[str, str | None] | None:
        """(key, claimed client id for Basic) from the headers, or None."""
        authorization = _header(scope, b"authorization")
        if authorization:
            kind, _, value = authorization.strip().partition(" ")
            value = value.strip()
            if kind.lower() == "bearer" and value:
                return value, None
            if kind.lower() == "basic" and value:
                try:
                    decoded = base64.b64decode(value, validate=True).decode("utf-8")
                except (binascii.Error, UnicodeDecodeError):
                    raise Unauthenticated("malformed Basic credentials") from None
                user, sep, password = decoded.partition(":")
                if sep and password:
                    return password, user
            raise Unauthenticated("unsupported Authorization scheme; use Bearer")
        api_key = _header(scope, b"x-api-key")
        if api_key is not None:
            return api_key.strip(), None
        return None

    async def _refuse_unauthenticated(
        self, scope: Scope, send: Send, opt: dict[str, Any], error: Unauthenticated
    ) -> None:
        target = opt.get("login_redirect")
        if target and scope["type"] == ScopeType.HTTP and scope.get("method") in ("GET", "HEAD"):
            path = scope["path"]
            query = scope.get("query_string", b"").decode("latin-1")
            following = path + ("?" + query if query else "")
            location = f"{target}?next={quote(following, safe='')}"
            start: HTTPResponseStartEvent = {
                "type": "http.response.start",
                "status": 303,
                "headers": [(b"location", location.encode("latin-1")), (b"content-length", b"0")],
            }
            end: HTTPResponseBodyEvent = {
                "type": "http.response.body",
                "body": b"",
                "more_body": False,
            }
            await send(start)
            await send(end)
            return
        await _send_problem(
            scope, send, error, headers={"WWW-Authenticate": 'Bearer realm="dvc-gateway"'}
        )


# ---------------------------------------------------------------- rate limits


@dataclass(slots=True)
class _Allowance:
    window: int
    #: requests this instance may still let through in the window without asking the store
    remaining: int


class RateLimiter:
    """Fixed one-minute windows per client, counted in the store.

    Windows are aligned to the epoch, so instances sharing a Redis store count into the same
    key. To keep the store off the hot path, an instance claims its allowance in batches of
    1% of the client's limit (``store.incr(key, batch)``) and spends it locally; a limit under
    100 is claimed one request at a time, so small limits are exact across instances. The
    cost: an instance's unspent claim is lost at the window's end, so with several instances
    a client may get slightly less than its limit (at most one batch per instance), and a
    burst straddling two windows can reach twice the limit.
    """

    BATCH_FRACTION = 100

    def __init__(self, store: Store, *, default_per_minute: int) -> None:
        self.store = store
        self.default_per_minute = default_per_minute
        self._allowances: dict[str, _Allowance] = {}

    def limit_for(self, client: Client) -> int:
        return client.rate_limit_per_minute or self.default_per_minute

    async def hit(self, client: Client, *, now: float | None = None) -> float | None:
        """Count one request; None if allowed, else the seconds until the window resets."""
        now = time.time() if now is None else now
        window = int(now // RATE_WINDOW_SECONDS)
        allowance = self._allowances.get(client.id)
        if allowance is not None and allowance.window == window and allowance.remaining > 0:
            allowance.remaining -= 1
            return None
        limit = self.limit_for(client)
        batch = max(1, limit // self.BATCH_FRACTION)
        key = f"ratelimit:{client.id}:{window}"
        claimed = await self.store.incr(key, batch, ttl=RATE_WINDOW_SECONDS * 2)
        granted = min(batch, limit - (claimed - batch))
        if granted <= 0:
            self._allowances[client.id] = _Allowance(window, 0)
            return max(1.0, math.ceil((window + 1) * RATE_WINDOW_SECONDS - now))
        self._allowances[client.id] = _Allowance(window, granted - 1)
        return None


class RateLimitMiddleware:
    """429 with ``Retry-After`` once a client exceeds its requests per minute.

    Runs after :class:`AuthMiddleware`; anonymous routes are not limited. If the store cannot be
    reached the request goes through (fail open): refusing all traffic because a counter is
    unavailable would turn a store hiccup into an outage of the read paths.
    """

    def __init__(self, app: ASGIApp, *, limiter: RateLimiter, enabled: bool = True) -> None:
        self.app = app
        self.limiter = limiter
        self.enabled = enabled

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        client = scope.get("user")
        if not self.enabled or scope["type"] != ScopeType.HTTP or not isinstance(client, Client):
            await self.app(scope, receive, send)
            return
        try:
            retry_after = await self.limiter.hit(client)
        except StoreUnavailable as exc:
            log.warning("ratelimit.store_unavailable", detail=exc.detail)
            retry_after = None
        if retry_after is not None:
            RATE_LIMITED.labels(client.id).inc()
            limit = self.limiter.limit_for(client)
            await _send_problem(
                scope,
                send,
                RateLimited(
                    f"client {client.id!r} is limited to {limit} requests per minute",
                    retry_after=retry_after,
                ),
            )
            return
        await self.app(scope, receive, send)
