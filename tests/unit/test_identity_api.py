"""The /v1/citizens contract the provincial system codes against: names, scopes, problems.

In process (Litestar's ``AsyncTestClient``, no national system): the OpenAPI document keeps the
request and answer field names of issue 5, the routes declare their scopes, and bad bodies are
422 problems naming the field with a JSON pointer, before any adapter is asked.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from gateway.app import create_app
from gateway.security import hash_api_key
from gateway.settings import CONFIG_ENV, Settings

KEY = "dvcgw_test-identity-api-key-0000000000000000000"


def _settings(tmp_path: Path) -> Settings:
    return Settings.model_validate(
        {
            "store": {"sqlite_path": str(tmp_path / "gateway.db")},
            "security": {
                "clients_file": str(tmp_path / "clients.toml"),
                "rate_limit": {"enabled": False},
            },
            "clients": [
                {
                    "id": "dossier-system",
                    "key_sha256": hash_api_key(KEY),
                    "scopes": ["identity:verify", "identity:lookup"],
                }
            ],
            "jobs": {"workers": 0, "scheduler_enabled": False},
            "logging": {"level": "WARNING", "format": "json"},
            # the adapter is configured but never reached: every body here is refused first
            "adapters": {"population_db": {"base_url": "http://127.0.0.1:9/population_db"}},
            "capabilities": {"identity": "population_db"},
            "signing": {"dev_pki_dir": str(tmp_path / "pki"),
                        "key_path": str(tmp_path / "pki" / "gateway.key.pem"),
                        "cert_path": str(tmp_path / "pki" / "gateway.cert.pem"),
                        "trust_paths": [str(tmp_path / "pki" / "ca.cert.pem")]},
        }
    )  # fmt: skip


@pytest.fixture
def app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Litestar:
    # only the settings given here, not config/gateway.toml of the working tree
    monkeypatch.setenv(CONFIG_ENV, str(tmp_path / "no-such-config.toml"))
    return create_app(_settings(tmp_path))


@pytest.fixture
async def http(app: Litestar) -> AsyncIterator[AsyncTestClient[Litestar]]:
    async with AsyncTestClient(app=app) as client:
        client.headers["Authorization"] = f"Bearer {KEY}"
        yield client


def _schema(app: Litestar, ref_or_schema: dict[str, Any]) -> dict[str, Any]:
    document = app.openapi_schema.to_schema()
    if "$ref" in ref_or_schema:
        name = ref_or_schema["$ref"].rsplit("/", 1)[-1]
        resolved: dict[str, Any] = document["components"]["schemas"][name]
        return resolved
    return ref_or_schema


def _body_schema(app: Litestar, path: str) -> dict[str, Any]:
    operation = app.openapi_schema.to_schema()["paths"][path]["post"]
    return _schema(app, operation["requestBody"]["content"]["application/json"]["schema"])


def test_the_request_names_are_the_contract(app: Litestar) -> None:
    verify = _body_schema(app, "/v1/citizens/verify")
    assert set(verify["properties"]) == {
        "id_number",
        "legacy_id_number",
        "full_name",
        "birth_date",
        "purpose",
    }
    assert set(verify["required"]) == {"full_name", "birth_date", "purpose"}
    purpose = _schema(app, verify["properties"]["purpose"])
    assert set(purpose["properties"]) == {"procedure_code", "dossier_code", "officer_id"}
    assert set(purpose["required"]) == {"procedure_code", "officer_id"}
    lookup = _body_schema(app, "/v1/citizens/lookup")
    assert set(lookup["properties"]) == {"id_number", "legacy_id_number", "purpose", "fields"}
    assert set(lookup["required"]) == {"purpose", "fields"}


def test_the_verify_answer_is_the_contract(app: Litestar) -> None:
    operation = app.openapi_schema.to_schema()["paths"]["/v1/citizens/verify"]["post"]
    answer = _schema(app, operation["responses"]["200"]["content"]["application/json"]["schema"])
    assert set(answer["properties"]) == {"match", "checked", "mismatches", "reason"}


def test_routes_declare_their_scopes(app: Litestar) -> None:
    scopes = {
        route.path: handler.opt.get("scopes")
        for route in app.routes
        for handler in getattr(route, "route_handlers", ())
        if route.path.startswith("/v1/citizens") and "POST" in handler.http_methods
    }
    assert scopes == {
        "/v1/citizens/verify": ["identity:verify"],
        "/v1/citizens/lookup": ["identity:lookup"],
    }


@pytest.mark.parametrize(
    ("path", "body", "pointers"),
    [
        ("verify", {"full_name": "Lê Văn An", "birth_date": "1990"}, ["/id_number", "/purpose"]),
        (
            "verify",
            {
                "id_number": "049290000123",
                "full_name": "Lê Văn An",
                "birth_date": "17/05/1990",
                "purpose": {"procedure_code": "1.001612", "officer_id": "CB000001"},
            },
            ["/id_number"],
        ),
        (
            "lookup",
            {
                "id_number": "049090000123",
                "purpose": {"procedure_code": "1.001612"},
                "fields": ["gender", "salary"],
            },
            ["/purpose/officer_id", "/fields/1"],
        ),
    ],
)
async def test_bad_bodies_are_422_with_pointers(
    http: AsyncTestClient[Litestar], path: str, body: dict[str, Any], pointers: list[str]
) -> None:
    r = await http.post(f"/v1/citizens/{path}", json=body)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    problem = r.json()
    assert problem["type"].endswith(":validation-failed")
    assert sorted(e["pointer"] for e in problem["errors"]) == sorted(pointers)
    assert "049290000123" not in r.text and "049090000123" not in r.text
