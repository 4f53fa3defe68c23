"""The OpenAPI document the provincial developers code against, and docs/api.md beside it.

The app is built with every installed adapter (pointed at a port nothing listens on: building
the document never calls a national system) and the document fetched over its own route.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

import gateway.errors as errors_module
from gateway.adapters import discover_adapters
from gateway.api.openapi import Problem
from gateway.app import create_app
from gateway.errors import PROBLEM_TYPE_BASE, GatewayError
from gateway.security import generate_api_key, hash_api_key
from gateway.settings import ClientSettings, Settings

pytestmark = pytest.mark.timeout(60)

API_MD = Path(__file__).resolve().parents[2] / "docs" / "api.md"
METHODS = ("get", "put", "post", "delete", "patch")


def _error_classes() -> Iterator[type[GatewayError]]:
    def walk(cls: type[GatewayError]) -> Iterator[type[GatewayError]]:
        yield cls
        for sub in cls.__subclasses__():
            if sub.__module__ == errors_module.__name__:
                yield from walk(sub)

    yield from walk(GatewayError)


@pytest.fixture
def reader_key() -> str:
    return generate_api_key()


@pytest.fixture
def app(tmp_path: Path, reader_key: str) -> Litestar:
    adapters = {name: {"base_url": "http://127.0.0.1:9"} for name in discover_adapters()}
    settings = Settings(
        store={"backend": "sqlite", "sqlite_path": tmp_path / "gateway.db"},
        security={"clients_file": tmp_path / "clients.toml"},
        adapters=adapters,
        clients=[
            ClientSettings(id="reader", key_sha256=hash_api_key(reader_key), scopes=["events:read"])
        ],
    )
    return create_app(settings)


@pytest.fixture
async def client(app: Litestar) -> AsyncIterator[AsyncTestClient[Litestar]]:
    async with AsyncTestClient(app) as c:
        yield c


@pytest.fixture
async def document(client: AsyncTestClient[Litestar]) -> dict[str, Any]:
    resp = await client.get("/schema/openapi.json")
    assert resp.status_code == 200, resp.text[:2000]
    doc: dict[str, Any] = resp.json()
    assert doc["openapi"].startswith("3.1")
    return doc


def _v1_operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, op)
        for path, item in doc["paths"].items()
        if path.startswith("/v1/")
        for method, op in item.items()
        if method in METHODS
    ]


def _scopes_of_routes(app: Litestar) -> dict[tuple[str, str], list[str]]:
    """(method, OpenAPI path) -> the scopes the route enforces (its opt)."""
    out: dict[tuple[str, str], list[str]] = {}
    for route in app.routes:
        path = re.sub(r"\{(\w+):\w+\}", r"{\1}", route.path)
        for handler in getattr(route, "route_handlers", ()):
            for method in getattr(handler, "http_methods", ()):
                if "scopes" in handler.opt:
                    out[(method, path)] = list(handler.opt["scopes"])
    return out


async def test_every_v1_operation_is_documented_with_its_problems_and_security(
    app: Litestar, document: dict[str, Any]
) -> None:
    operations = _v1_operations(document)
    assert len(operations) >= 13, [f"{m} {p}" for m, p, _ in operations]
    enforced = _scopes_of_routes(app)
    problems: list[str] = []
    for method, path, op in operations:
        where = f"{method} {path}"
        if not op.get("summary"):
            problems.append(f"{where}: no summary")
        if not op.get("description"):
            problems.append(f"{where}: no description")
        responses = op.get("responses", {})
        wanted = {"401", "403"} | ({"422", "400", "413"} if "requestBody" in op else set())
        for status in sorted(wanted):
            content = responses.get(status, {}).get("content", {})
            schema = content.get("application/problem+json", {}).get("schema", {})
            if schema.get("$ref") != "#/components/schemas/Problem":
                problems.append(f"{where}: {status} is not declared as a Problem")
        for status, response in responses.items():
            if status.startswith(("4", "5")) and "application/problem+json" not in response.get(
                "content", {}
            ):
                problems.append(f"{where}: {status} declared with another media type")
        # the declared security names the scopes the route really enforces
        security = op.get("security") or document.get("security")
        if not security:
            problems.append(f"{where}: no security requirement")
        elif (method, path) in enforced:
            declared = {tuple(sorted(scopes)) for req in security for scopes in req.values()}
            if declared != {tuple(sorted(enforced[(method, path)]))}:
                problems.append(
                    f"{where}: declares {declared}, enforces {enforced[(method, path)]}"
                )
        else:
            problems.append(f"{where}: the route declares no scopes")
    assert not problems, "\n".join(problems)


async def test_declared_problem_examples_are_the_gateway_s_own(document: dict[str, Any]) -> None:
    """Every example of a problem response is a real type of the tree, with its status."""
    slugs = {cls.slug: cls.status for cls in _error_classes()}
    seen = 0
    for _, _, op in _v1_operations(document):
        for status, response in op["responses"].items():
            media = response.get("content", {}).get("application/problem+json")
            if media is None:
                continue
            for example in media.get("examples", {}).values():
                value = example["value"]
                slug = value["type"].removeprefix(PROBLEM_TYPE_BASE)
                assert slugs.get(slug) == int(status) == value["status"], (status, value)
                Problem.model_validate(value)
                seen += 1
    assert seen > 50


async def test_a_real_problem_matches_the_documented_schema(
    client: AsyncTestClient[Litestar], reader_key: str
) -> None:
    unauthenticated = await client.get("/v1/events")
    invalid = await client.get("/v1/events?limit=0", headers={"X-API-Key": reader_key})
    for resp, status in ((unauthenticated, 401), (invalid, 422)):
        assert resp.status_code == status
        assert resp.headers["content-type"].startswith("application/problem+json")
        problem = Problem.model_validate(resp.json())
        assert problem.request_id == resp.headers["x-request-id"]
    assert Problem.model_validate(invalid.json()).errors[0].pointer == "/query/limit"  # type: ignore[index]


def test_every_problem_type_is_documented_in_api_md() -> None:
    text = API_MD.read_text(encoding="utf-8")
    # the table lists the slugs after the common prefix, stated once in its header
    assert PROBLEM_TYPE_BASE in text
    missing = [
        cls.slug
        for cls in _error_classes()
        if not re.search(rf"^\| `{re.escape(cls.slug)}` \| {cls.status} \|", text, re.MULTILINE)
    ]
    assert not missing, f"docs/api.md lacks a table row (slug, status) for: {missing}"


def test_api_md_names_every_v1_route() -> None:
    text = API_MD.read_text(encoding="utf-8")
    for route in (
        "POST /v1/citizens/verify",
        "POST /v1/citizens/lookup",
        "PUT /v1/dossiers/{code}",
        "POST /v1/dossiers/{code}/progress",
        "GET /v1/dossiers/{code}",
        "GET /v1/dossiers/{code}/timeline",
        "GET /v1/dossiers/{code}/attachments/{attachment_id}",
        "GET /v1/procedures",
        "GET /v1/jobs/{job_id}",
        "GET /v1/events",
        "POST /v1/signatures/xml",
        "POST /v1/signatures/xml/verify",
    ):
        assert f"`{route}" in text, route


async def test_every_command_route_declares_the_idempotency_key_header(
    app: Litestar, document: dict[str, Any]
) -> None:
    """POST/PUT/PATCH/DELETE under /v1 that the IdempotencyMiddleware serves (no opt-out)
    show the ``Idempotency-Key`` header; the routes that opt out do not."""
    from gateway.idempotency import COMMAND_METHODS

    commands: dict[tuple[str, str], bool] = {}
    for route in app.routes:
        path = re.sub(r"\{(\w+):\w+\}", r"{\1}", route.path)
        if not path.startswith("/v1/"):
            continue
        for handler in getattr(route, "route_handlers", ()):
            for method in set(getattr(handler, "http_methods", ())) & COMMAND_METHODS:
                commands[(method, path)] = not handler.opt.get("no_idempotency", False)
    assert ("PUT", "/v1/dossiers/{code}") in commands
    assert ("POST", "/v1/dossiers/{code}/progress") in commands
    wrong: list[str] = []
    for (method, path), served in sorted(commands.items()):
        op = document["paths"][path][method.lower()]
        headers = [
            p
            for p in op.get("parameters", [])
            if p["in"] == "header" and p["name"].lower() == "idempotency-key"
        ]
        if served and not (headers and headers[0].get("required") is False):
            wrong.append(f"{method} {path}: no optional Idempotency-Key header")
        if served and headers and "422" not in headers[0].get("description", ""):
            wrong.append(f"{method} {path}: the header's description says nothing of 422")
        if not served and headers:
            wrong.append(f"{method} {path}: opts out, yet declares Idempotency-Key")
    assert not wrong, wrong
