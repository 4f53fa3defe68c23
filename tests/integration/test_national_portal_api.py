"""``/v1/dossiers`` and ``/v1/procedures`` refusals over real HTTP: 422 naming the field
before anything is queued, 403 for another unit or a missing scope, 401 without a key."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from support.national_portal_rig import (
    NATIONAL,
    PROVINCE,
    READER,
    RESTRICTED,
    Rig,
    dossier_body,
    dossier_code,
    portal_rig,
    progress_record,
)

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(params=["sqlite", "redis"])
async def rig(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Rig]:
    # no workers: what is queued stays queued, so the tests see exactly what was accepted
    redis_url = request.getfixturevalue("redis_url") if request.param == "redis" else None
    async with portal_rig(request.param, tmp_path, redis_url, workers=0) as r:
        yield r


def _problem(resp: Any, status: int) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = resp.json()
    return body


async def _queued(rig: Rig) -> int:
    return sum(s.queued for s in await rig.runtime.store.jobs.stats(now=0))


@pytest.mark.parametrize(
    ("code", "body", "pointer"),
    [
        ("000.00.19.H47-260105-01", dossier_body(), "/code"),
        (dossier_code(1), dossier_body(procedure_code="1.1612"), "/procedure_code"),
        (dossier_code(1), dossier_body(received_at="2020-01-01T08:00:00+07:00"), "/received_at"),
        (dossier_code(1), dossier_body(due_at="2020-01-01T08:00:00+07:00"), "/due_at"),
        (dossier_code(1), dossier_body(status="returned"), "/status"),
        (dossier_code(1), dossier_body(status="shipped"), "/status"),
        (
            dossier_code(1),
            dossier_body(applicant={"name": "A", "id_number": "1"}),
            "/applicant/id_number",
        ),
        (
            dossier_code(1),
            {**dossier_body(), "fees": [{"name": "x", "amount": 1.5}]},
            "/fees/0/amount",
        ),
        (dossier_code(1), {**dossier_body(), "code": dossier_code(2)}, "/code"),
    ],
)
async def test_bad_commands_are_422_naming_the_field_and_queue_nothing(
    rig: Rig, code: str, body: dict[str, Any], pointer: str
) -> None:
    problem = _problem(await rig.put_dossier(code, body), 422)
    assert pointer in [e["pointer"] for e in problem["errors"]], problem
    assert await _queued(rig) == 0


async def test_impossible_transitions_are_422(rig: Rig) -> None:
    code = dossier_code(10)
    assert (await rig.put_dossier(code, dossier_body("received"))).status_code == 202
    assert (await rig.put_dossier(code, dossier_body("processing"))).status_code == 202
    # returned before processed
    problem = _problem(await rig.put_dossier(code, dossier_body("returned")), 422)
    assert [e["pointer"] for e in problem["errors"]] == ["/status"]
    # withdrawn, then nothing else
    r = await rig.post_progress(code, [progress_record("withdrawn", 1)])
    assert r.status_code == 202
    problem = _problem(await rig.post_progress(code, [progress_record("processing", 2)]), 422)
    assert [e["pointer"] for e in problem["errors"]] == ["/records/0/status"]
    problem = _problem(await rig.put_dossier(code, dossier_body("processed")), 422)
    assert "withdrawn" in problem["detail"]
    assert await _queued(rig) == 3
    # processed, then back to received: the portal would refuse it, so the gateway does
    other = dossier_code(11)
    assert (await rig.put_dossier(other, dossier_body("received"))).status_code == 202
    assert (await rig.post_progress(other, [progress_record("processed", 1)])).status_code == 202
    problem = _problem(await rig.put_dossier(other, dossier_body("received")), 422)
    assert [e["pointer"] for e in problem["errors"]] == ["/status"]
    assert await _queued(rig) == 5


async def test_a_client_restricted_to_other_units_gets_403(rig: Rig) -> None:
    code = dossier_code(20)  # unit 000.00.19.H47; the client may only act for 000.00.20.H47
    problem = _problem(await rig.put_dossier(code, dossier_body(), client=RESTRICTED), 403)
    assert problem["type"].endswith("unit-not-allowed")
    r = await rig.http.get(f"{rig.gateway}/v1/dossiers/{code}", headers=RESTRICTED.headers)
    _problem(r, 403)
    own = dossier_code(21, unit="000.00.20.H47")
    r = await rig.put_dossier(own, dossier_body(), client=RESTRICTED)
    assert r.status_code == 202, r.text


async def test_scopes_and_credentials(rig: Rig) -> None:
    code = dossier_code(30)
    _problem(await rig.http.put(f"{rig.gateway}/v1/dossiers/{code}", json=dossier_body()), 401)
    problem = _problem(await rig.put_dossier(code, dossier_body(), client=READER), 403)
    assert problem["type"].endswith("missing-scope")
    for path in (f"/v1/dossiers/{code}", f"/v1/dossiers/{code}/timeline", "/v1/procedures"):
        _problem(await rig.http.get(f"{rig.gateway}{path}", headers=NATIONAL.headers), 403)


async def test_accepted_command_and_pending_work(rig: Rig) -> None:
    code = dossier_code(40)
    _problem(await rig.http.get(f"{rig.gateway}/v1/dossiers/{code}", headers=READER.headers), 404)
    r = await rig.put_dossier(code, dossier_body())
    assert r.status_code == 202
    accepted = r.json()
    assert accepted["kind"] == "national_portal.sync_dossier"
    assert accepted["links"]["job"] == f"/v1/jobs/{accepted['job_id']}"
    job = await rig.http.get(f"{rig.gateway}{accepted['links']['job']}", headers=PROVINCE.headers)
    assert job.json()["state"] == "queued"
    state = (await rig.http.get(f"{rig.gateway}/v1/dossiers/{code}", headers=READER.headers)).json()
    assert state["confirmed"] is None  # no worker here: nothing reached the portal
    assert state["accepted_status"] == "received"
    assert [p["job_id"] for p in state["pending"]] == [accepted["job_id"]]
    timeline = (
        await rig.http.get(f"{rig.gateway}/v1/dossiers/{code}/timeline", headers=READER.headers)
    ).json()["items"]
    labels = [e["label"] for e in timeline]
    assert "dossier.accepted" in labels
    assert "national_portal.sync_dossier queued" in labels
    # personal data never in the audit detail
    assert "049190001234" not in str(timeline) and "Trần Thị Bình" not in str(timeline)


async def test_idempotency_key_returns_the_same_job(rig: Rig) -> None:
    code = dossier_code(50)
    headers = {**PROVINCE.headers, "Idempotency-Key": "put-50-a"}
    url = f"{rig.gateway}/v1/dossiers/{code}"
    first = await rig.http.put(url, json=dossier_body(), headers=headers)
    second = await rig.http.put(url, json=dossier_body(), headers=headers)
    assert first.status_code == second.status_code == 202
    assert first.json()["job_id"] == second.json()["job_id"]
    assert await _queued(rig) == 1


async def test_unknown_procedure_code_format_is_422_and_unknown_procedure_404(rig: Rig) -> None:
    problem = _problem(
        await rig.http.get(f"{rig.gateway}/v1/procedures/1.16", headers=READER.headers), 422
    )
    assert problem["errors"][0]["pointer"] == "/code"
    problem = _problem(
        await rig.http.get(f"{rig.gateway}/v1/procedures/9.999999", headers=READER.headers), 404
    )
