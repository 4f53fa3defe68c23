"""Every error leaves as an RFC 9457 problem: our own, Litestar's, and the unexpected ones.

The app is the real ``create_app`` with a SQLite store in tmp_path; a few test-only routes are
registered on it to provoke each kind of error through the real middleware stack.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any

import pytest
from litestar import Litestar, get, post
from litestar.params import Parameter
from litestar.testing import AsyncTestClient
from pydantic import BaseModel, Field

from gateway.app import create_app
from gateway.errors import (
    PROBLEM_TYPE_BASE,
    CircuitOpen,
    ClientError,
    GatewayError,
    UpstreamRateLimited,
    ValidationFailed,
)
from gateway.security import generate_api_key, hash_api_key
from gateway.settings import ClientSettings, Settings

KEY = generate_api_key()
AUTH = {"Authorization": f"Bearer {KEY}"}
PROBLEM_KEYS = {"type", "title", "status", "detail", "instance", "request_id"}


class Applicant(BaseModel):
    id_number: str = Field(pattern=r"^\d{12}$")
    name: str


class DossierIn(BaseModel):
    code: str
    applicants: list[Applicant]


@post("/_test/dossiers", opt={"scopes": ["test:use"]})
async def create_dossier(data: DossierIn) -> dict[str, str]:
    return {"code": data.code}


@get("/_test/items/{item_id:int}", opt={"scopes": ["test:use"]})
async def get_item(
    item_id: Annotated[int, Parameter(ge=1)], limit: Annotated[int, Parameter(ge=1, le=10)] = 5
) -> dict[str, int]:
    return {"id": item_id, "limit": limit}


@get("/_test/circuit", opt={"scopes": ["test:use"]})
async def circuit() -> None:
    raise CircuitOpen("population_db is failing", system="population_db", retry_after=12.4)


@get("/_test/field", opt={"scopes": ["test:use"]})
async def one_field() -> None:
    raise ValidationFailed.field("/purpose/procedure_code", "required for a lookup")


@get("/_test/crash", opt={"scopes": ["test:use"]})
async def crash() -> None:
    raise RuntimeError("secret-token-xyz in a traceback at /srv/gateway/internal.py")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        store={"sqlite_path": tmp_path / "gateway.db"},
        security={"clients_file": tmp_path / "clients.toml"},
        server={"max_body_bytes": 4096},
        clients=[ClientSettings(id="tester", key_sha256=hash_api_key(KEY), scopes=["test:use"])],
    )


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[AsyncTestClient[Litestar]]:
    app = create_app(settings)
    for handler in (create_dossier, get_item, circuit, one_field, crash):
        app.register(handler)
    async with AsyncTestClient(app, raise_server_exceptions=False) as c:
        yield c


def assert_problem(response: Any, status: int, slug: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert set(body) >= PROBLEM_KEYS, body
    assert body["type"] == PROBLEM_TYPE_BASE + slug
    assert body["status"] == status
    assert body["request_id"] == response.headers["x-request-id"]
    return body


async def test_body_validation_lists_a_pointer_per_bad_field(
    client: AsyncTestClient[Litestar],
) -> None:
    r = await client.post(
        "/_test/dossiers",
        headers=AUTH,
        json={"code": 5, "applicants": [{"id_number": "123", "name": "A"}, {"name": "B"}]},
    )
    body = assert_problem(r, 422, "validation-failed")
    pointers = {e["pointer"]: e["message"] for e in body["errors"]}
    assert set(pointers) == {"/code", "/applicants/0/id_number", "/applicants/1/id_number"}
    assert all(message for message in pointers.values())
    assert body["instance"] == "/_test/dossiers"


async def test_parameter_validation_names_where_the_parameter_lives(
    client: AsyncTestClient[Litestar],
) -> None:
    r = await client.get("/_test/items/3?limit=99", headers=AUTH)
    body = assert_problem(r, 422, "validation-failed")
    assert [e["pointer"] for e in body["errors"]] == ["/query/limit"]
    # Litestar's own detail would echo the query string; ours does not
    assert "limit=99" not in r.text
    both = await client.get("/_test/items/0?limit=0", headers=AUTH)
    pointers = sorted(
        e["pointer"] for e in assert_problem(both, 422, "validation-failed")["errors"]
    )
    assert pointers == ["/path/item_id", "/query/limit"]


async def test_malformed_json_is_a_400_problem(client: AsyncTestClient[Litestar]) -> None:
    r = await client.post(
        "/_test/dossiers",
        headers={**AUTH, "content-type": "application/json"},
        content=b'{"code": ',
    )
    assert_problem(r, 400, "invalid-request")


async def test_body_over_the_limit_is_413(client: AsyncTestClient[Litestar]) -> None:
    r = await client.post(
        "/_test/dossiers",
        headers={**AUTH, "content-type": "application/json"},
        content=b'{"code": "' + b"x" * 8000 + b'", "applicants": []}',
    )
    assert_problem(r, 413, "payload-too-large")


async def test_unknown_route_and_wrong_method_are_problems_with_request_ids(
    client: AsyncTestClient[Litestar],
) -> None:
    missing = await client.get("/no/such/thing", headers={"X-Request-ID": "caller-id-1"})
    body = assert_problem(missing, 404, "not-found")
    assert body["request_id"] == "caller-id-1"
    wrong = await client.delete("/metrics", headers=AUTH)
    assert_problem(wrong, 405, "method-not-allowed")
    assert "GET" in wrong.headers["allow"]


async def test_gateway_errors_keep_retry_after_and_extra_members(
    client: AsyncTestClient[Litestar],
) -> None:
    r = await client.get("/_test/circuit", headers=AUTH)
    body = assert_problem(r, 503, "circuit-open")
    assert r.headers["retry-after"] == "12"
    assert body["system"] == "population_db"
    assert body["retry_after"] == 12
    field = await client.get("/_test/field", headers=AUTH)
    assert assert_problem(field, 422, "validation-failed")["errors"] == [
        {"pointer": "/purpose/procedure_code", "message": "required for a lookup"}
    ]


async def test_unexpected_exception_is_a_bare_500_without_trace(
    client: AsyncTestClient[Litestar],
) -> None:
    r = await client.get("/_test/crash", headers=AUTH)
    body = assert_problem(r, 500, "internal-error")
    assert body["detail"] == "an unexpected error occurred"
    for leak in ("secret-token-xyz", "Traceback", "internal.py", "RuntimeError"):
        assert leak not in r.text


async def test_caller_request_id_is_echoed_and_a_bad_one_replaced(
    client: AsyncTestClient[Litestar],
) -> None:
    ok = await client.get("/health/live", headers={"X-Request-ID": "abc-123"})
    assert ok.headers["x-request-id"] == "abc-123"
    forged = await client.get("/health/live", headers={"X-Request-ID": "x\tinjected line"})
    assert forged.headers["x-request-id"] not in ("x\tinjected line", "")
    fresh = await client.get("/health/live")
    assert len(fresh.headers["x-request-id"]) == 26  # a ULID


def test_every_error_class_has_a_unique_stable_type() -> None:
    def walk(cls: type[GatewayError]) -> list[type[GatewayError]]:
        return [cls, *(c for sub in cls.__subclasses__() for c in walk(sub))]

    classes = [c for c in walk(GatewayError) if c.__module__ == "gateway.errors"]
    slugs = [c.slug for c in classes]
    assert len(slugs) == len(set(slugs)), "two error classes share a problem type"
    for cls in classes:
        assert 400 <= cls.status <= 599
        if issubclass(cls, ClientError) and cls is not ClientError:
            assert cls.status < 500, cls
    assert UpstreamRateLimited.retryable
    assert not ValidationFailed.retryable
