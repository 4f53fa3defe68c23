"""The pull feed for a client restricted to some units: it sees its own units' dossier events
and events naming no dossier, never another unit's dossier (names, ID numbers), and its
cursor still moves past what it cannot see."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from litestar import Litestar
from support.jobs_app import drop_redis_prefix, gateway_settings, make_client, store_settings
from support.uvicorn_server import serving

from gateway.app import create_app
from gateway.runtime import Runtime
from gateway.settings import Settings

UNIT_A = "000.00.19.H47"
UNIT_B = "000.00.20.H47"
RESTRICTED = make_client("unit-a-feed", "events:read")
UNRESTRICTED = make_client("province-feed", "events:read")


def _restrict(settings: Settings) -> Settings:
    clients = [
        c.model_copy(update={"allowed_units": [UNIT_A]}) if c.id == RESTRICTED.id else c
        for c in settings.clients
    ]
    return settings.model_copy(update={"clients": clients})


@pytest.fixture(params=["sqlite", "redis"])
async def app(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Litestar]:
    redis_url = request.getfixturevalue("redis_url") if request.param == "redis" else None
    store, prefix = store_settings(request.param, tmp_path, redis_url)
    settings = gateway_settings(
        store,
        tmp_path,
        clients=(RESTRICTED, UNRESTRICTED),
        webhooks={"feed_settle_seconds": 0.0},
    )
    yield create_app(_restrict(settings))
    if redis_url is not None:
        await drop_redis_prefix(redis_url, prefix)


async def test_a_restricted_client_sees_only_its_units_events(app: Litestar) -> None:
    own = f"{UNIT_A}-260105-0001"
    other = f"{UNIT_B}-260105-0002"
    async with serving(app) as url, httpx.AsyncClient(base_url=url) as client:
        runtime: Runtime = app.state.runtime
        e_own = await runtime.events.publish(
            "dossier.received", {"dossier": {"code": own, "applicant": "A"}}, subject=own
        )
        # another unit's dossier, named by subject, by data.dossier.code or data.dossier_code
        await runtime.events.publish(
            "dossier.received", {"dossier": {"code": other, "applicant": "B"}}, subject=other
        )
        await runtime.events.publish("dossier.received", {"dossier": {"code": other}})
        await runtime.events.publish("payment.settled", {"dossier_code": other})
        e_none = await runtime.events.publish("endpoint.disabled", {"endpoint_id": "x"})
        last = await runtime.events.publish("job.succeeded", {"job_id": "J"}, subject=other)

        seen = (await client.get("/v1/events", headers=RESTRICTED.headers)).json()
        assert [item["id"] for item in seen["items"]] == [e_own.id, e_none.id]
        assert other not in str(seen)
        # the cursor moved past the hidden tail: no loop on the same page
        assert seen["next_after"] == last.id

        everything = (await client.get("/v1/events", headers=UNRESTRICTED.headers)).json()
        assert len(everything["items"]) == 6

        # a page of hidden events only is empty but still advances
        page = (
            await client.get(
                "/v1/events", params={"after": e_own.id, "limit": 2}, headers=RESTRICTED.headers
            )
        ).json()
        assert page["items"] == []
        assert page["next_after"] == everything["items"][2]["id"]
