"""Authentication, scopes, networks, mTLS and rate limits, through the real app in-process.

The app is ``create_app(settings)`` with a SQLite store in tmp_path (and, for the shared rate
limit, two apps on the real Redis). Nothing of ours is mocked.
"""

from __future__ import annotations

import base64
import io
import json
import re
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from litestar import Litestar, Request, get
from litestar.routes import HTTPRoute
from litestar.testing import AsyncTestClient

from gateway.adapters import discover_adapters
from gateway.app import create_app
from gateway.observability import configure_logging
from gateway.security import Client, generate_api_key, hash_api_key
from gateway.settings import ClientSettings, LoggingSettings, Settings

REPO = Path(__file__).resolve().parents[2]


class Keys:
    """One key per test client."""

    def __init__(self) -> None:
        self.ops = generate_api_key()
        self.nobody = generate_api_key()  # authenticated, but with a scope no route needs
        self.limited = generate_api_key()
        self.office = generate_api_key()  # restricted to a network
        self.portal = generate_api_key()  # national system calling back, Basic-capable


def make_settings(tmp_path: Path, keys: Keys, **overrides: Any) -> Settings:
    clients = [
        ClientSettings(id="ops", key_sha256=hash_api_key(keys.ops), scopes=["ops:read"]),
        ClientSettings(id="nobody", key_sha256=hash_api_key(keys.nobody), scopes=["none:none"]),
        ClientSettings(
            id="limited",
            key_sha256=hash_api_key(keys.limited),
            scopes=["ops:read"],
            rate_limit_per_minute=3,
        ),
        ClientSettings(
            id="office",
            key_sha256=hash_api_key(keys.office),
            scopes=["ops:read"],
            allowed_networks=["10.20.0.0/16"],
        ),
        ClientSettings(
            id="national_portal",
            key_sha256=hash_api_key(keys.portal),
            scopes=["ops:read"],
            mtls_identity="CN=portal.gov.vn",
        ),
    ]
    values: dict[str, Any] = {
        "store": {"backend": "sqlite", "sqlite_path": tmp_path / "gateway.db"},
        "security": {
            "clients_file": tmp_path / "var" / "clients.toml",
            "mtls_identity_header": "X-Client-Cert-Subject",
        },
        "server": {"trusted_proxies": ["127.0.0.1/32"]},
        "clients": clients,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def keys() -> Keys:
    return Keys()


@pytest.fixture
def settings(tmp_path: Path, keys: Keys) -> Settings:
    return make_settings(tmp_path, keys)


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[AsyncTestClient[Litestar]]:
    async with AsyncTestClient(create_app(settings)) as c:
        yield c


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


# ---------------------------------------------------------------- every route, automatically


def _all_adapters_settings(tmp_path: Path, keys: Keys) -> Settings:
    """Every installed adapter, so their routes are walked too. Each points at a loopback port
    nothing listens on: walking routes for 401/403 never reaches the national system."""
    adapters: dict[str, dict[str, Any]] = {}
    for name, cls in discover_adapters().items():
        config = {"base_url": "http://127.0.0.1:9"}
        try:
            cls.config_model.model_validate(config)
        except Exception:
            continue
        adapters[name] = config
    return make_settings(tmp_path, keys, adapters=adapters)


def _sample(param_type: type) -> str:
    if param_type is int:
        return "1"
    if param_type is uuid.UUID:
        return str(uuid.uuid4())
    return "x1"


def _protected_endpoints(app: Litestar) -> list[tuple[str, str, dict[str, Any]]]:
    """(method, concrete path, opt) of every handler that is not anonymous and not the docs."""
    out = []
    for route in app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        if route.path == "/schema" or route.path.startswith("/schema/"):
            continue
        path = route.path_format.format(
            **{name: _sample(p.type) for name, p in route.path_parameters.items()}
        )
        for handler in route.route_handlers:
            if handler.opt.get("anonymous"):
                continue
            for method in sorted(handler.http_methods):
                # Litestar's automatic OPTIONS answer carries no data; it is still authenticated
                if method in ("OPTIONS", "HEAD") and handler.handler_name == "options_handler":
                    continue
                out.append((method, path, handler.opt))
    return out


async def test_every_protected_route_needs_credentials_and_its_scope(
    tmp_path: Path, keys: Keys
) -> None:
    app = create_app(_all_adapters_settings(tmp_path, keys))
    endpoints = _protected_endpoints(app)
    assert ("GET", "/metrics", {"scopes": ["ops:read"]}) in endpoints
    problems: list[str] = []
    async with AsyncTestClient(app) as c:
        for method, path, opt in endpoints:
            where = f"{method} {path}"
            # every protected route says which scopes it needs; [] deliberately means "any
            # authenticated client" (e.g. a resource checked against its owner)
            if "scopes" not in opt:
                problems.append(
                    f"{where} declares no scopes: add opt={{'scopes': [...]}} "
                    "(or opt={'anonymous': True} if it must be public)"
                )
                continue
            anonymous = await c.request(method, path, follow_redirects=False)
            if opt.get("login_redirect") and method == "GET":
                if anonymous.status_code != 303 or not anonymous.headers.get(
                    "location", ""
                ).startswith(opt["login_redirect"]):
                    problems.append(
                        f"{where} without credentials: {anonymous.status_code}, not 303"
                    )
            elif anonymous.status_code != 401 or not anonymous.json()["type"].endswith(
                ":unauthenticated"
            ):
                problems.append(f"{where} without credentials: {anonymous.status_code}, not 401")
            if not opt["scopes"]:
                continue
            wrong = await c.request(method, path, headers=bearer(keys.nobody))
            if wrong.status_code != 403:
                problems.append(f"{where} with the wrong scope: {wrong.status_code}, not 403")
                continue
            problem = wrong.json()
            if not problem["type"].endswith(":missing-scope") or problem["missing_scopes"] != list(
                opt["scopes"]
            ):
                problems.append(f"{where} with the wrong scope: {problem}")
    assert not problems, "\n".join(problems)


async def test_options_lists_every_method_a_path_serves(tmp_path: Path, keys: Keys) -> None:
    # Litestar 2 lists only some of them where several handlers share a path (#4169)
    app = create_app(_all_adapters_settings(tmp_path, keys))
    wrong: list[str] = []
    async with AsyncTestClient(app) as c:
        for route in app.routes:
            if not isinstance(route, HTTPRoute) or route.path.startswith("/schema"):
                continue
            path = route.path_format.format(
                **{name: _sample(p.type) for name, p in route.path_parameters.items()}
            )
            r = await c.options(path, headers=bearer(keys.nobody))
            allowed = {m.strip() for m in r.headers.get("allow", "").split(",") if m.strip()}
            if r.status_code != 204 or allowed != set(route.methods):
                wrong.append(f"OPTIONS {path}: {r.status_code} {sorted(allowed)}")
    assert "/v1/dossiers/{code:str}" in {route.path for route in app.routes}
    assert not wrong, "\n".join(wrong)


async def test_only_health_and_docs_are_anonymous(tmp_path: Path, keys: Keys) -> None:
    app = create_app(_all_adapters_settings(tmp_path, keys))
    anonymous = {
        route.path
        for route in app.routes
        for handler in route.route_handlers
        if handler.opt.get("anonymous")
    }
    allowed = {"/health/live", "/health/ready"}
    # the ops sign-in page and the static assets it needs before anyone has signed in
    sign_in = ("/ops/login", "/ops/static/")
    extra = {p for p in anonymous - allowed if not p.startswith(sign_in)}
    assert not extra, f"routes declared anonymous beyond health and sign-in: {sorted(extra)}"
    async with AsyncTestClient(app) as c:
        assert (await c.get("/health/live")).json() == {"status": "up"}
        ready = await c.get("/health/ready")
        assert ready.status_code == 200
        assert ready.json() == {"status": "ready"}
        assert (await c.get("/schema/openapi.json")).status_code == 200


# ---------------------------------------------------------------- credentials


async def test_bearer_and_x_api_key_both_work(
    client: AsyncTestClient[Litestar], keys: Keys
) -> None:
    by_bearer = await client.get("/metrics", headers=bearer(keys.ops))
    by_header = await client.get("/metrics", headers={"X-API-Key": keys.ops})
    assert by_bearer.status_code == by_header.status_code == 200
    assert "gateway_http_requests_total" in by_bearer.text


async def test_basic_auth_names_the_client_and_carries_the_key(
    client: AsyncTestClient[Litestar], keys: Keys
) -> None:
    good = base64.b64encode(f"national_portal:{keys.portal}".encode()).decode()
    impostor = base64.b64encode(f"ops:{keys.portal}".encode()).decode()
    assert (
        await client.get("/metrics", headers={"Authorization": f"Basic {good}"})
    ).status_code == 200
    refused = await client.get("/metrics", headers={"Authorization": f"Basic {impostor}"})
    assert refused.status_code == 401


async def test_unknown_key_and_unknown_scheme_are_401_with_challenge(
    client: AsyncTestClient[Litestar], keys: Keys
) -> None:
    for headers in (
        bearer(generate_api_key()),
        {"X-API-Key": keys.ops + "x"},
        {"Authorization": "Digest abc"},
        {"Authorization": "Bearer"},
    ):
        r = await client.get("/metrics", headers=headers)
        assert r.status_code == 401, headers
        assert r.headers["www-authenticate"].startswith("Bearer")
        assert r.headers["content-type"] == "application/problem+json"


async def test_scope_failure_is_403_not_401(client: AsyncTestClient[Litestar], keys: Keys) -> None:
    r = await client.get("/metrics", headers=bearer(keys.nobody))
    assert r.status_code == 403
    body = r.json()
    assert body["type"].endswith(":missing-scope")
    assert "ops:read" in body["detail"]


# ---------------------------------------------------------------- networks and mTLS


async def _request_from(
    app: Litestar, address: str, path: str, headers: dict[str, str]
) -> httpx.Response:
    transport = httpx.ASGITransport(app=app, client=(address, 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as c:
        return await c.get(path, headers=headers)


async def test_allowed_networks(settings: Settings, keys: Keys) -> None:
    app = create_app(settings)
    async with app.lifespan():
        inside = await _request_from(app, "10.20.3.4", "/metrics", bearer(keys.office))
        outside = await _request_from(app, "192.0.2.7", "/metrics", bearer(keys.office))
        # behind our proxy (127.0.0.1 is trusted) the forwarded address counts, not the proxy's
        via_proxy = await _request_from(
            app,
            "127.0.0.1",
            "/metrics",
            {**bearer(keys.office), "X-Forwarded-For": "10.20.9.9"},
        )
        forged = await _request_from(
            app,
            "192.0.2.7",
            "/metrics",
            {**bearer(keys.office), "X-Forwarded-For": "10.20.9.9"},
        )
    assert inside.status_code == 200
    assert outside.status_code == 403
    assert outside.json()["type"].endswith(":network-not-allowed")
    assert via_proxy.status_code == 200
    assert forged.status_code == 403, "X-Forwarded-For from an untrusted peer must be ignored"


async def test_mtls_identity_trusted_only_from_proxies(settings: Settings) -> None:
    app = create_app(settings)
    header = {"X-Client-Cert-Subject": "CN=portal.gov.vn"}
    async with app.lifespan():
        from_proxy = await _request_from(app, "127.0.0.1", "/metrics", header)
        from_elsewhere = await _request_from(app, "192.0.2.7", "/metrics", header)
        unknown_identity = await _request_from(
            app, "127.0.0.1", "/metrics", {"X-Client-Cert-Subject": "CN=stranger"}
        )
    assert from_proxy.status_code == 200
    assert from_elsewhere.status_code == 401
    assert unknown_identity.status_code == 401


# ---------------------------------------------------------------- rate limits


async def _away_from_window_edge() -> None:
    """Rate windows are whole minutes: do not start a count a moment before one ends."""
    import asyncio
    import time

    left = 60 - time.time() % 60
    if left < 3:
        await asyncio.sleep(left + 0.1)


async def test_rate_limit_answers_429_with_retry_after(
    client: AsyncTestClient[Litestar], keys: Keys
) -> None:
    await _away_from_window_edge()
    statuses = [
        (await client.get("/metrics", headers=bearer(keys.limited))).status_code for _ in range(4)
    ]
    assert statuses == [200, 200, 200, 429]
    r = await client.get("/metrics", headers=bearer(keys.limited))
    assert r.status_code == 429
    retry_after = int(r.headers["retry-after"])
    assert 1 <= retry_after <= 60
    assert r.json()["type"].endswith(":rate-limited")
    # another client is not affected
    assert (await client.get("/metrics", headers=bearer(keys.ops))).status_code == 200


@pytest.mark.redis
async def test_rate_limit_is_shared_by_instances_on_redis(
    tmp_path: Path, keys: Keys, redis_url: str, redis_prefix: str
) -> None:
    overrides = {"store": {"backend": "redis", "redis_url": redis_url, "key_prefix": redis_prefix}}
    first = create_app(make_settings(tmp_path / "a", keys, **overrides))
    second = create_app(make_settings(tmp_path / "b", keys, **overrides))
    try:
        async with AsyncTestClient(first) as a, AsyncTestClient(second) as b:
            await _away_from_window_edge()
            statuses = [
                (await a.get("/metrics", headers=bearer(keys.limited))).status_code,
                (await b.get("/metrics", headers=bearer(keys.limited))).status_code,
                (await a.get("/metrics", headers=bearer(keys.limited))).status_code,
                (await b.get("/metrics", headers=bearer(keys.limited))).status_code,
            ]
        assert statuses == [200, 200, 200, 429]
    finally:
        import redis.asyncio as aioredis

        r = aioredis.Redis.from_url(redis_url)
        found = [k async for k in r.scan_iter(match=redis_prefix + "*")]
        if found:
            await r.delete(*found)
        await r.aclose()


# ---------------------------------------------------------------- secrets stay out of logs


async def test_api_key_never_appears_in_logs(settings: Settings, keys: Keys) -> None:
    app = create_app(settings)
    buffer = io.StringIO()
    configure_logging(LoggingSettings(level="DEBUG", format="json"), stream=buffer)
    async with AsyncTestClient(app) as c:
        await c.get("/metrics", headers=bearer(keys.ops))
        await c.get("/metrics", headers={"X-API-Key": keys.nobody})
        await c.get("/metrics", headers=bearer(keys.ops + "tampered"))
        await c.get("/metrics", headers={"Authorization": f"Bearer {keys.limited}"})
        # a careless log line elsewhere in the code must not leak it either
        import structlog

        structlog.get_logger("careless").info(
            "calling upstream with " + keys.ops,
            headers={"Authorization": f"Bearer {keys.ops}", "X-API-Key": keys.nobody},
            url=f"https://example.invalid/x?api_key={keys.limited}",
        )
    output = buffer.getvalue()
    lines = [json.loads(line) for line in output.splitlines()]
    assert any(line.get("event") == "http.request" for line in lines)
    assert any(line.get("event") == "auth.unknown_key" for line in lines)
    for secret in (keys.ops, keys.nobody, keys.limited, keys.ops + "tampered"):
        assert secret not in output
        assert secret[len("dvcgw_") :] not in output
    assert "[REDACTED]" in output


# ---------------------------------------------------------------- the clients CLI


def _gateway(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(Path(sys.executable).parent / "gateway"), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def cli_config(tmp_path: Path) -> Path:
    config = tmp_path / "gateway.toml"
    config.write_text(
        '[store]\nsqlite_path = "var/gateway.db"\n[security]\nclients_file = "var/clients.toml"\n'
    )
    return config


def test_clients_add_prints_only_the_key_and_stores_only_its_hash(
    tmp_path: Path, cli_config: Path
) -> None:
    added = _gateway(
        "clients", "add", "dossier-system", "--scope", "dossiers:write", "--scope",
        "dossiers:read", "--unit", "H12", "--network", "10.0.0.0/8", "--rate-limit", "120",
        "--config", str(cli_config), cwd=tmp_path,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    key = added.stdout.strip()
    assert added.stdout == key + "\n", "stdout must hold the key alone"
    assert re.fullmatch(r"dvcgw_[A-Za-z0-9_-]{43}", key)
    clients_file = tmp_path / "var" / "clients.toml"
    assert clients_file.stat().st_mode & 0o777 == 0o600
    text = clients_file.read_text()
    assert key not in text
    assert key[len("dvcgw_") :] not in text
    assert hash_api_key(key) in text

    listed = _gateway("clients", "list", "--config", str(cli_config), cwd=tmp_path)
    assert listed.returncode == 0
    assert "dossier-system" in listed.stdout
    assert "dossiers:read,dossiers:write" in listed.stdout
    assert hash_api_key(key) not in listed.stdout

    again = _gateway(
        "clients", "add", "dossier-system", "--scope", "a:b", "--config", str(cli_config),
        cwd=tmp_path,
    )  # fmt: skip
    assert again.returncode == 1
    assert "already exists" in again.stderr

    removed = _gateway(
        "clients", "remove", "dossier-system", "--config", str(cli_config), cwd=tmp_path
    )
    assert removed.returncode == 0
    assert hash_api_key(key) not in clients_file.read_text()
    gone = _gateway(
        "clients", "remove", "dossier-system", "--config", str(cli_config), cwd=tmp_path
    )
    assert gone.returncode == 1


async def test_a_key_added_while_running_works_and_removal_revokes_it(
    settings: Settings, tmp_path: Path
) -> None:
    config = tmp_path / "cli.toml"
    clients_file = settings.security.clients_file
    config.write_text(f'[security]\nclients_file = "{clients_file}"\n')
    async with AsyncTestClient(create_app(settings)) as c:
        added = _gateway(
            "clients", "add", "late-comer", "--scope", "ops:read", "--config", str(config),
            cwd=tmp_path,
        )  # fmt: skip
        assert added.returncode == 0, added.stderr
        key = added.stdout.strip()
        await _wait_for_reload()
        assert (await c.get("/metrics", headers=bearer(key))).status_code == 200
        removed = _gateway("clients", "remove", "late-comer", "--config", str(config), cwd=tmp_path)
        assert removed.returncode == 0
        await _wait_for_reload()
        assert (await c.get("/metrics", headers=bearer(key))).status_code == 401


async def _wait_for_reload() -> None:
    import asyncio

    from gateway.security import ClientDirectory

    await asyncio.sleep(ClientDirectory.RELOAD_CHECK_SECONDS + 0.1)


def test_require_unit_helper_refuses_other_units() -> None:
    from gateway.errors import UnitNotAllowed
    from gateway.security import require_unit

    restricted = Client(id="district", scopes=frozenset(), allowed_units=frozenset({"H12.1"}))
    require_unit(restricted, "H12.1")
    with pytest.raises(UnitNotAllowed):
        require_unit(restricted, "H12.2")
    require_unit(Client(id="province", scopes=frozenset()), "anything")


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    yield
    configure_logging(LoggingSettings(), stream=sys.stderr)


@get("/_test/whoami", opt={"scopes": ["ops:read"]})
async def _whoami(request: Request[Client, Any, Any]) -> dict[str, Any]:
    user = request.user
    return {"id": user.id, "scopes": sorted(user.scopes), "auth": request.auth}


async def test_request_user_is_the_client(settings: Settings, keys: Keys) -> None:
    app = create_app(settings)
    app.register(_whoami)
    async with AsyncTestClient(app) as c:
        r = await c.get("/_test/whoami", headers={"X-API-Key": keys.ops})
    assert r.json() == {"id": "ops", "scopes": ["ops:read"], "auth": "api_key"}
