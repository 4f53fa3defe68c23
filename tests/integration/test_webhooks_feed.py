"""The pull feed ``GET /v1/events`` through the real app (auth, problems) served by uvicorn in
the test's event loop (so the test can publish through the same runtime), on both backends."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from litestar import Litestar
from support.jobs_app import drop_redis_prefix, gateway_settings, make_client, store_settings
from support.uvicorn_server import serving

from gateway.app import create_app
from gateway.runtime import Runtime

READER = make_client("province-feed", "events:read")
OTHER = make_client("dossier-system", "dossiers:write")


@pytest.fixture(params=["sqlite", "redis"])
async def make_app(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Any]:
    redis_url = request.getfixturevalue("redis_url") if request.param == "redis" else None
    store, prefix = store_settings(request.param, tmp_path, redis_url)

    def make(settle: float = 0.0) -> Litestar:
        return create_app(
            gateway_settings(
                store,
                tmp_path,
                clients=(READER, OTHER),
                webhooks={"feed_settle_seconds": settle},
            )
        )

    yield make
    if redis_url is not None:
        await drop_redis_prefix(redis_url, prefix)


async def test_the_feed_pages_through_events_in_order(make_app: Any) -> None:
    app: Litestar = make_app()
    async with serving(app) as url, httpx.AsyncClient(base_url=url) as client:
        runtime: Runtime = app.state.runtime
        published = [
            await runtime.events.publish("dossier.received", {"n": i}, subject=f"D-{i}")
            for i in range(5)
        ]
        ids = [e.id for e in published]
        everything = await client.get("/v1/events", headers=READER.headers)
        assert everything.status_code == 200, everything.text
        body = everything.json()
        assert [item["id"] for item in body["items"]] == ids
        assert body["next_after"] == ids[-1]
        first = body["items"][0]
        assert set(first) == {"id", "type", "occurred_at", "subject", "request_id", "data"}
        assert first["data"] == {"n": 0}
        assert first["subject"] == "D-0"
        assert first["occurred_at"].endswith("Z")

        # page by page with the cursor
        seen: list[str] = []
        after: str | None = None
        while True:
            params: dict[str, Any] = {"limit": 2}
            if after:
                params["after"] = after
            page = (await client.get("/v1/events", params=params, headers=READER.headers)).json()
            if not page["items"]:
                assert page["next_after"] == after  # nothing new: keep the same cursor
                break
            seen += [item["id"] for item in page["items"]]
            after = page["next_after"]
        assert seen == ids

        # lower-case ids are accepted (ULIDs are case-insensitive)
        tail = await client.get(
            "/v1/events", params={"after": ids[2].lower()}, headers=READER.headers
        )
        assert [item["id"] for item in tail.json()["items"]] == ids[3:]


async def test_bad_cursor_limit_and_scope_are_problems(make_app: Any) -> None:
    app: Litestar = make_app()
    async with serving(app) as url, httpx.AsyncClient(base_url=url) as client:
        bad = await client.get("/v1/events", params={"after": "nope"}, headers=READER.headers)
        assert bad.status_code == 400
        assert bad.headers["content-type"].startswith("application/problem+json")
        assert "ULID" in bad.json()["detail"]
        too_many = await client.get("/v1/events", params={"limit": 5000}, headers=READER.headers)
        assert too_many.status_code in (400, 422)
        assert (await client.get("/v1/events")).status_code == 401
        forbidden = await client.get("/v1/events", headers=OTHER.headers)
        assert forbidden.status_code == 403
        assert forbidden.json()["type"].endswith(":missing-scope")


async def test_fresh_events_wait_out_the_settle_window(make_app: Any) -> None:
    app: Litestar = make_app(settle=0.5)
    async with serving(app) as url, httpx.AsyncClient(base_url=url) as client:
        event = await app.state.runtime.events.publish("payment.completed", {"amount": 1})
        now = (await client.get("/v1/events", headers=READER.headers)).json()
        assert now == {"items": [], "next_after": None}
        await asyncio.sleep(0.6)
        later = (await client.get("/v1/events", headers=READER.headers)).json()
        assert [item["id"] for item in later["items"]] == [event.id]
