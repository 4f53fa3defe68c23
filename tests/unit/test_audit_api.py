"""``/ops/api/audit`` and ``/ops/api/audit/verify`` through the real app over HTTP (SQLite):
filters, the citizen-ID search by digest (never echoed), paging, scopes, chain status."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from litestar import Litestar
from support.jobs_app import gateway_settings, make_client, store_settings
from support.uvicorn_server import serving

from gateway.app import create_app
from gateway.observability import request_id_var
from gateway.runtime import Runtime

OPS = make_client("ops-carol", "ops:read")
FEED = make_client("province-feed", "events:read")
CITIZEN = "079012345678"


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[Litestar, httpx.AsyncClient]]:
    store, _ = store_settings("sqlite", tmp_path, None)
    app = create_app(gateway_settings(store, tmp_path, clients=(OPS, FEED)))
    async with serving(app) as url, httpx.AsyncClient(base_url=url, headers=OPS.headers) as http:
        runtime: Runtime = app.state.runtime
        for i in range(6):
            token = request_id_var.set(f"req-{i}")
            try:
                await runtime.audit.record(
                    direction="outbound",
                    actor="population_db" if i % 2 == 0 else "national_portal",
                    adapter="population_db" if i % 2 == 0 else "national_portal",
                    operation="verify_citizen" if i % 2 == 0 else "sync_dossier",
                    outcome="ok" if i < 4 else "error",
                    status=200 if i < 4 else 503,
                    dossier_code=f"H01.01-260101-{i:04d}",
                    subjects=[CITIZEN] if i in (0, 4) else ["001099000111"],
                )
            finally:
                request_id_var.reset(token)
        yield app, http


async def seqs(http: httpx.AsyncClient, **params: object) -> list[int]:
    response = await http.get("/ops/api/audit", params=params)
    assert response.status_code == 200, response.text
    return [item["seq"] for item in response.json()["items"]]


async def test_filters(served: tuple[Litestar, httpx.AsyncClient]) -> None:
    _, http = served
    assert await seqs(http) == [6, 5, 4, 3, 2, 1]
    assert await seqs(http, adapter="population_db") == [5, 3, 1]
    assert await seqs(http, system="national_portal") == [6, 4, 2]
    assert await seqs(http, outcome="error") == [6, 5]
    assert await seqs(http, request_id="req-2") == [3]
    assert await seqs(http, dossier_code="H01.01-260101-0004") == [5]
    assert await seqs(http, operation="sync_dossier", outcome="error") == [6]
    assert await seqs(http, since="2000-01-01", until="2000-01-02") == []
    assert await seqs(http, since="2000-01-01T00:00:00+07:00") == [6, 5, 4, 3, 2, 1]


async def test_citizen_id_search_by_digest_never_echoes_the_id(
    served: tuple[Litestar, httpx.AsyncClient],
) -> None:
    app, http = served
    # the ID only in a POST body, never in a URL: GET refuses it
    refused = await http.get("/ops/api/audit", params={"subject": CITIZEN})
    assert refused.status_code == 400
    assert CITIZEN not in refused.text
    response = await http.post("/ops/api/audit/search", json={"subject": "0790 1234 5678"})
    assert response.status_code == 200
    body = response.json()
    assert [item["seq"] for item in body["items"]] == [5, 1]
    assert CITIZEN not in response.text
    digest = app.state.runtime.audit.digest(CITIZEN)
    assert body["items"][0]["subject_digests"] == [digest]
    # from a record's digest to every record of that person
    assert await seqs(http, subject_digest=digest) == [5, 1]
    bad = await http.get("/ops/api/audit", params={"subject_digest": "not-a-digest"})
    assert bad.status_code in (400, 422)


async def test_paging(served: tuple[Litestar, httpx.AsyncClient]) -> None:
    _, http = served
    first = (await http.get("/ops/api/audit", params={"limit": 4})).json()
    assert [i["seq"] for i in first["items"]] == [6, 5, 4, 3]
    assert first["next_before_seq"] == 3
    rest = (
        await http.get(
            "/ops/api/audit", params={"limit": 4, "before_seq": first["next_before_seq"]}
        )
    ).json()
    assert [i["seq"] for i in rest["items"]] == [2, 1]
    assert rest["next_before_seq"] is None


async def test_bad_input_and_scope(served: tuple[Litestar, httpx.AsyncClient]) -> None:
    _, http = served
    bad = await http.get("/ops/api/audit", params={"since": "last tuesday"})
    assert bad.status_code == 400
    assert bad.json()["detail"].startswith("since: not a time")
    both = await http.get("/ops/api/audit", params={"adapter": "a", "system": "b"})
    assert both.status_code == 400
    forbidden = await http.get("/ops/api/audit", headers=FEED.headers)
    assert forbidden.status_code == 403
    assert (await http.get("/ops/api/audit/verify", headers=FEED.headers)).status_code == 403


async def test_chain_status(served: tuple[Litestar, httpx.AsyncClient], tmp_path: Path) -> None:
    _, http = served
    ok = (await http.get("/ops/api/audit/verify")).json()
    assert ok["ok"] is True
    assert ok["checked"] == 6 and ok["last_seq"] == 6
    assert ok["first_broken_seq"] is None

    conn = sqlite3.connect(tmp_path / "gateway.db")
    (body,) = conn.execute("SELECT body FROM audit WHERE seq = 2").fetchone()
    record = json.loads(body)
    record["outcome"] = "error"
    conn.execute("UPDATE audit SET body = ? WHERE seq = 2", (json.dumps(record),))
    conn.commit()
    conn.close()
    broken = (await http.get("/ops/api/audit/verify", params={"full": "true"})).json()
    assert broken["ok"] is False
    assert broken["first_broken_seq"] == 2
    assert "content" in broken["reason"]
    # the cached status now says broken too
    assert (await http.get("/ops/api/audit/verify")).json()["first_broken_seq"] == 2
