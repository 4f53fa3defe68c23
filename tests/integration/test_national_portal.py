"""The national portal adapter end to end over real HTTP, on SQLite and on Redis.

The provincial system calls the gateway (uvicorn); the gateway's workers call the strict
portal simulator behind the sandbox's fault injector (uvicorn); assertions read what the
portal stored through its ``/_state`` endpoints and what the gateway kept in its store.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from support.national_portal_rig import (
    NATIONAL,
    OPERATOR,
    PROVINCE,
    READER,
    Rig,
    dossier_body,
    dossier_code,
    portal_rig,
    progress_record,
)

from gateway.store.base import JobState

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(params=["sqlite", "redis"])
async def rig(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Rig]:
    redis_url = request.getfixturevalue("redis_url") if request.param == "redis" else None
    async with portal_rig(request.param, tmp_path, redis_url) as r:
        yield r


#: one dossier's life: (command, status); each becomes one job; the wire code expected
LIFE: list[tuple[str, str, str]] = [
    ("put", "received", "2"),
    ("progress", "processing", "4"),
    ("put", "processing", "4"),
    ("progress", "supplement_requested", "5"),
    ("progress", "processing", "4"),
    ("put", "payment_requested", "6"),
    ("progress", "processing", "4"),
    ("progress", "processed", "9"),
    ("put", "processed", "9"),
    ("put", "returned", "10"),
]


async def _send_life(
    rig: Rig, code: str, steps: list[tuple[str, str, str]], *, pause: float = 0.0
) -> list[str]:
    """The province sends one dossier's commands one after the other (each answered 202)."""
    job_ids = []
    for n, (command, status, _) in enumerate(steps):
        await asyncio.sleep(pause)
        if command == "put":
            r = await rig.put_dossier(code, dossier_body(status, receipt_number=f"BN-{n}"))
        else:
            r = await rig.post_progress(code, [progress_record(status, n)])
        assert r.status_code == 202, r.text
        assert r.json()["dossier_code"] == code
        job_ids.append(r.json()["job_id"])
    return job_ids


async def test_100_updates_for_10_dossiers_reach_the_portal_in_order(rig: Rig) -> None:
    codes = [dossier_code(100 + i) for i in range(10)]
    batches = await asyncio.gather(*(_send_life(rig, code, LIFE) for code in codes))
    job_ids = [j for batch in batches for j in batch]
    assert len(job_ids) == 100
    await rig.wait_jobs(job_ids, timeout=90)

    for code in codes:
        calls = await rig.portal_calls(code)
        services = ["put" if c["service"] == "DongBoHoSoMC" else "progress" for c in calls]
        assert services == [cmd for cmd, _, _ in LIFE], code
        assert [c["TrangThai"] for c in calls] == [wire for _, _, wire in LIFE], code
        # the first sync created it, every later one updated it
        assert [c.get("isUpdating") for c in calls if "isUpdating" in c] == [
            "False",
            "True",
            "True",
            "True",
            "True",
        ]
        stored = await rig.portal_dossier(code)
        assert stored is not None
        assert stored["record"]["TrangThaiHoSo"] == "10"
        assert len(stored["progress"]) == 5

        state = (
            await rig.http.get(f"{rig.gateway}/v1/dossiers/{code}", headers=READER.headers)
        ).json()
        assert state["confirmed"]["status"] == "returned"
        assert state["accepted_status"] == "returned"
        assert state["progress_confirmed"] == 5
        assert state["pending"] == []


async def test_session_expiring_mid_run_is_renewed_without_losing_a_job(rig: Rig) -> None:
    codes = [dossier_code(200 + i) for i in range(4)]
    first = await asyncio.gather(*(_send_life(rig, c, LIFE[:3]) for c in codes))
    await rig.wait_jobs([j for b in first for j in b])
    logins_before = (await rig.portal_summary())["logins"]

    # the portal ends every session; the next calls are refused with the session code
    r = await rig.http.post(f"{rig.portal}/_state/sessions/expire")
    assert r.json()["expired"] >= 1
    rest = await asyncio.gather(*(_send_life(rig, c, LIFE[3:]) for c in codes))
    jobs = await rig.wait_jobs([j for b in rest for j in b])

    summary = await rig.portal_summary()
    assert summary["logins"] > logins_before
    # no job needed a second attempt: the renewal happened inside the call
    assert all(j.attempt_count == 1 for j in jobs)
    for code in codes:
        calls = await rig.portal_calls(code)
        assert [c["TrangThai"] for c in calls] == [wire for _, _, wire in LIFE]


async def test_sessions_expiring_all_the_time_lose_no_job(rig: Rig) -> None:
    r = await rig.http.post(f"{rig.portal}/_state/session-ttl", json={"seconds": 0.1})
    assert r.status_code == 200
    codes = [dossier_code(250 + i) for i in range(5)]
    # commands spread over ~1.5 s: the portal ends the session many times meanwhile
    batches = await asyncio.gather(*(_send_life(rig, c, LIFE, pause=0.15) for c in codes))
    await rig.wait_jobs([j for b in batches for j in b], timeout=60)
    assert (await rig.portal_summary())["logins"] >= 3
    for code in codes:
        calls = await rig.portal_calls(code)
        assert [c["TrangThai"] for c in calls] == [wire for _, _, wire in LIFE]


async def test_health_probe(rig: Rig) -> None:
    adapter = rig.runtime.registry.instances["national_portal"]
    assert (await adapter.probe()).ok
    await rig.fault("TraCuuHoSo", {"error_rate": 1.0, "status": 503})
    result = await adapter.probe()
    assert not result.ok and result.detail


async def test_business_rejection_dead_letters_then_succeeds_after_replay(rig: Rig) -> None:
    code = dossier_code(300)
    unknown_procedure = "2.999901"
    r = await rig.put_dossier(code, dossier_body("received", procedure_code=unknown_procedure))
    assert r.status_code == 202, r.text
    rejected = r.json()["job_id"]
    # a later command of the same dossier waits behind the dead letter
    r = await rig.post_progress(code, [progress_record("processing", 1)])
    held = r.json()["job_id"]

    [dead] = await rig.wait_jobs([rejected], until=[JobState.DEAD])
    assert dead.attempt_count == 1  # permanent: not retried
    assert "không tồn tại" in (dead.last_error or "")
    job = (await rig.http.get(f"{rig.gateway}/v1/jobs/{rejected}", headers=PROVINCE.headers)).json()
    assert job["state"] == "dead"
    assert unknown_procedure in job["last_error"]
    await asyncio.sleep(0.3)
    held_job = await rig.runtime.store.jobs.get(held)
    assert held_job is not None and held_job.state is JobState.QUEUED
    assert await rig.portal_dossier(code) is None

    # the cause is fixed on the national side: the procedure is published
    r = await rig.http.post(
        f"{rig.portal}/_state/procedures",
        json={"MaTTHC": unknown_procedure, "TenTTHC": "Thủ tục mới công bố"},
    )
    assert r.json()["error_code"] == 0
    r = await rig.http.post(
        f"{rig.gateway}/ops/api/dead-letters/{rejected}/replay", headers=OPERATOR.headers
    )
    assert r.status_code in (200, 202), r.text
    await rig.wait_jobs([rejected, held])
    stored = await rig.portal_dossier(code)
    assert stored is not None and stored["record"]["MaTTHC"] == unknown_procedure
    assert stored["record"]["TrangThaiHoSo"] == "4"

    timeline = (
        await rig.http.get(f"{rig.gateway}/v1/dossiers/{code}/timeline", headers=READER.headers)
    ).json()["items"]
    outcomes = [(e["label"], e["outcome"]) for e in timeline]
    assert ("DongBoHoSoMC", "rejected") in outcomes
    assert ("DongBoHoSoMC", "ok") in outcomes
    assert ("CapNhatTienDoHoSoMC", "ok") in outcomes
    assert any("replay" in label for label, _ in outcomes), outcomes
    assert ("dossier.accepted", "ok") in outcomes


async def test_a_discarded_command_is_forgotten_by_the_transition_checks(rig: Rig) -> None:
    code = dossier_code(350)
    r = await rig.put_dossier(code, dossier_body("received"))
    await rig.wait_jobs([r.json()["job_id"]])
    # "withdrawn" with a procedure the portal does not know: dead-lettered, never applied
    r = await rig.put_dossier(code, dossier_body("withdrawn", procedure_code="2.999902"))
    dead = r.json()["job_id"]
    await rig.wait_jobs([dead], until=[JobState.DEAD])
    refused = await rig.put_dossier(code, dossier_body("processing"))
    assert refused.status_code == 422  # withdrawn is still pending: nothing may follow it
    r = await rig.http.delete(
        f"{rig.gateway}/ops/api/dead-letters/{dead}", headers=OPERATOR.headers
    )
    assert r.status_code in (200, 204), r.text
    r = await rig.put_dossier(code, dossier_body("processing"))
    assert r.status_code == 202, r.text  # the discarded withdrawal never happened
    await rig.wait_jobs([r.json()["job_id"]])
    stored = await rig.portal_dossier(code)
    assert stored is not None and stored["history"] == ["received", "processing"]


async def test_progress_records_go_in_chunks_of_at_most_ten(rig: Rig) -> None:
    code = dossier_code(400)
    records = [progress_record("processing", n) for n in range(25)]
    r = await rig.put_dossier(code, {**dossier_body("received"), "progress": records})
    assert r.status_code == 202, r.text
    r2 = await rig.post_progress(code, [progress_record("processing", 30 + n) for n in range(12)])
    await rig.wait_jobs([r.json()["job_id"], r2.json()["job_id"]])

    calls = await rig.portal_calls(code)
    chunk_sizes = []
    for c in calls:
        if c["service"] == "CapNhatTienDoHoSoMC" and (
            not chunk_sizes or c["at"] != chunk_sizes[-1][0]
        ):
            chunk_sizes.append((c["at"], c["chunk"]))
    assert [size for _, size in chunk_sizes] == [10, 10, 5, 10, 2]
    stored = await rig.portal_dossier(code)
    assert stored is not None and len(stored["progress"]) == 37
    assert [p["NoiDungXuLy"] for p in stored["progress"]][:3] == [
        "Bước xử lý 0",
        "Bước xử lý 1",
        "Bước xử lý 2",
    ]


async def test_a_retried_job_does_not_send_confirmed_chunks_again(rig: Rig) -> None:
    code = dossier_code(450)
    # the portal fails the 2nd progress call once (HTTP 503): chunk 1 is confirmed by then
    r = await rig.http.post(
        f"{rig.portal}/_state/fail",
        json={"service": "CapNhatTienDoHoSoMC", "after": 1, "times": 1, "status": 503},
    )
    assert r.status_code == 200
    records = [progress_record("processing", n) for n in range(25)]
    r = await rig.put_dossier(code, {**dossier_body("received"), "progress": records})
    [job] = await rig.wait_jobs([r.json()["job_id"]])
    assert job.attempt_count == 2  # failed once, retried
    assert job.attempts[0].retryable is True
    stored = await rig.portal_dossier(code)
    assert stored is not None
    contents = [p["NoiDungXuLy"] for p in stored["progress"]]
    assert contents == [f"Bước xử lý {n}" for n in range(25)]  # each record once, in order
    # the retry did not send the dossier record again: the portal never went back to received
    assert stored["history"] == ["received", "processing"]
    services = [c["service"] for c in await rig.portal_calls(code)]
    assert services.count("DongBoHoSoMC") == 1


async def test_garbled_answers_and_proxy_4xx_are_retried_not_dead_lettered(rig: Rig) -> None:
    # the portal applies DongBoHoSoMC but its answer arrives garbled (HTTP 200, not JSON)
    await rig.fault("DongBoHoSoMC", {"malformed_rate": 1.0, "count": 1})
    code = dossier_code(460)
    r = await rig.put_dossier(code, dossier_body("received"))
    [job] = await rig.wait_jobs([r.json()["job_id"]])
    assert job.attempt_count == 2
    assert job.attempts[0].retryable is True
    assert "not the expected JSON" in (job.attempts[0].error or "")
    stored = await rig.portal_dossier(code)
    assert stored is not None and stored["history"] == ["received"]

    # a proxy in front of the portal answers 404 twice: a transport fault, not a rejection
    r = await rig.http.post(
        f"{rig.portal}/_state/fail",
        json={"service": "CapNhatTienDoHoSoMC", "after": 0, "times": 2, "status": 404},
    )
    assert r.status_code == 200
    r = await rig.post_progress(code, [progress_record("processing", 1)])
    [job] = await rig.wait_jobs([r.json()["job_id"]])
    assert job.attempt_count == 3
    assert all(a.retryable for a in job.attempts[:2])
    stored = await rig.portal_dossier(code)
    assert stored is not None and stored["history"] == ["received", "processing"]
    assert len(stored["progress"]) == 1


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
async def test_catalogue_is_served_stale_while_the_portal_is_down(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    redis_url = request.getfixturevalue("redis_url") if backend == "redis" else None
    async with portal_rig(
        backend, tmp_path, redis_url, adapter={"catalogue_ttl_seconds": 0.5}
    ) as rig:
        r = await rig.http.get(f"{rig.gateway}/v1/procedures", headers=READER.headers)
        assert r.status_code == 200, r.text
        fresh = r.json()
        assert fresh["stale"] is False
        assert len(fresh["items"]) >= 50
        r = await rig.http.get(f"{rig.gateway}/v1/procedures/1.001612", headers=READER.headers)
        detail = r.json()
        assert detail["stale"] is False
        assert detail["channels"][0]["fees"][0]["amount"] == 200000
        assert detail["channels"][0]["time_limit_days"] == 10

        await rig.fault("*", {"error_rate": 1.0, "status": 503})
        await asyncio.sleep(0.6)  # the cached copies are past their TTL
        r = await rig.http.get(f"{rig.gateway}/v1/procedures", headers=READER.headers)
        assert r.status_code == 200, r.text
        stale = r.json()
        assert stale["stale"] is True
        assert stale["items"] == fresh["items"]
        r = await rig.http.get(f"{rig.gateway}/v1/procedures/1.001612", headers=READER.headers)
        assert r.json()["stale"] is True
        assert r.json()["name"] == detail["name"]
        # never fetched, nothing to serve: the failure shows
        r = await rig.http.get(f"{rig.gateway}/v1/procedures/1.001193", headers=READER.headers)
        assert r.status_code in (502, 503, 504)
        assert r.headers["content-type"].startswith("application/problem+json")

        await rig.clear_faults()
        r = await rig.http.get(f"{rig.gateway}/v1/procedures", headers=READER.headers)
        assert r.json()["stale"] is False


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
async def test_a_refusal_other_than_not_found_serves_the_cached_procedure(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    redis_url = request.getfixturevalue("redis_url") if backend == "redis" else None
    async with portal_rig(
        backend, tmp_path, redis_url, adapter={"catalogue_ttl_seconds": 0.5}
    ) as rig:
        url = f"{rig.gateway}/v1/procedures"
        r = await rig.http.get(f"{url}/1.001612", headers=READER.headers)
        assert r.status_code == 200 and r.json()["stale"] is False
        await asyncio.sleep(0.6)  # the cached copy is past its TTL
        maintenance = {"service": "LayThuTuc", "times": 1, "error_code": "9"}
        assert (await rig.http.post(f"{rig.portal}/_state/fail", json=maintenance)).is_success
        r = await rig.http.get(f"{url}/1.001612", headers=READER.headers)
        assert r.status_code == 200, r.text
        assert r.json()["stale"] is True
        # nothing cached: the portal's refusal shows, it is not a 404
        assert (await rig.http.post(f"{rig.portal}/_state/fail", json=maintenance)).is_success
        r = await rig.http.get(f"{url}/1.001193", headers=READER.headers)
        assert r.status_code == 422, r.text
        assert r.json()["type"].endswith("upstream-rejected")
        # the portal's own "no such procedure" is a 404
        r = await rig.http.get(f"{url}/2.999903", headers=READER.headers)
        assert r.status_code == 404, r.text


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
async def test_scheduled_refresh_fills_the_catalogue_cache(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    redis_url = request.getfixturevalue("redis_url") if backend == "redis" else None
    async with portal_rig(backend, tmp_path, redis_url) as rig:
        job = await rig.runtime.jobs.enqueue("national_portal.refresh_catalogue", {})
        [done] = await rig.wait_jobs([job.id])
        assert done.result is not None and done.result["procedures"] >= 50
        assert done.result["failed"] == 0
        before = (await rig.portal_summary())["services"]
        for service in ("LayThuTuc", "LayDanhSachTTHC", "login"):
            await rig.fault(service, {"error_rate": 1.0, "status": 503})
        r = await rig.http.get(f"{rig.gateway}/v1/procedures/1.004227", headers=READER.headers)
        assert r.status_code == 200 and r.json()["stale"] is False
        assert (await rig.portal_summary())["services"] == before


async def test_inbound_dossier_pushed_twice_produces_one_event(rig: Rig) -> None:
    r = await rig.http.post(
        f"{rig.portal}/_state/push",
        json={"seq": 7, "times": 2, "api_key": NATIONAL.key, "gateway_url": rig.gateway},
    )
    assert r.status_code == 200, r.text
    push = r.json()
    code = push["maHoSo"]
    first, second = push["answers"]
    assert first["status"] == 200, first
    assert first["body"]["error_code"] == 0
    assert second == first  # the copy gets the stored answer

    events = [e for e in await rig.runtime.store.events.list_after(None, limit=100)]
    received = [e for e in events if e.type == "dossier.received"]
    assert len(received) == 1
    data: dict[str, Any] = received[0].data
    assert received[0].subject == code
    assert data["dossier"]["code"] == code
    assert data["dossier"]["status"] == "registered"
    [link] = data["attachments"]
    assert "noiDung" not in str(data)  # links, not the file inline

    r = await rig.http.get(
        link["url"].replace(rig.runtime.settings.public_url(), rig.gateway), headers=READER.headers
    )
    assert r.status_code == 200
    assert hashlib.sha256(r.content).hexdigest() == link["sha256"] == link["id"]
    assert r.headers["content-type"].startswith("application/pdf")
    # the attachment needs dossiers:read
    r = await rig.http.get(
        f"{rig.gateway}/v1/dossiers/{code}/attachments/{link['id']}", headers=NATIONAL.headers
    )
    assert r.status_code == 403

    state = (await rig.http.get(f"{rig.gateway}/v1/dossiers/{code}", headers=READER.headers)).json()
    assert state["received_from_national"]["code"] == code
    timeline = (
        await rig.http.get(f"{rig.gateway}/v1/dossiers/{code}/timeline", headers=READER.headers)
    ).json()["items"]
    assert [e["outcome"] for e in timeline if e["label"] == "dossier.received"] == [
        "ok",
        "duplicate",
    ]

    # the province receives it: the portal already holds it, so the sync is an update
    r = await rig.put_dossier(code, dossier_body("received"))
    assert r.status_code == 202, r.text
    await rig.wait_jobs([r.json()["job_id"]])
    syncs = [c for c in await rig.portal_calls(code) if c["service"] == "DongBoHoSoMC"]
    assert [c["isUpdating"] for c in syncs] == ["True"]
    stored = await rig.portal_dossier(code)
    assert stored is not None and stored["history"] == ["registered", "received"]


async def test_a_copy_with_another_body_changes_nothing_stored_and_forwards_nothing(
    rig: Rig,
) -> None:
    from adapters.national_portal.simulator import PortalSimulator

    sim = PortalSimulator(username="x", password="y", madonvi="000.00.00.H47")
    push = sim.sample_push(12, message_id="DVCQG-copy-12")
    r = await rig.http.post(
        f"{rig.portal}/_state/push",
        json={"push": push, "api_key": NATIONAL.key, "gateway_url": rig.gateway},
    )
    [first] = r.json()["answers"]
    assert first["status"] == 200, first
    code = push["maHoSo"]
    state_url = f"{rig.gateway}/v1/dossiers/{code}"
    before = (await rig.http.get(state_url, headers=READER.headers)).json()

    # the same maGiaoDich again, with another summary and another file
    other = dict(push, hoSo=dict(push["hoSo"], TrichYeuHoSo="Nội dung khác"))
    other_file = b"%PDF-1.4\n% another file\n%%EOF\n"
    other["tepDinhKem"] = [
        {
            "tenTep": "khac.pdf",
            "loaiTep": "application/pdf",
            "noiDung": base64.b64encode(other_file).decode(),
        }
    ]
    r = await rig.http.post(
        f"{rig.portal}/_state/push",
        json={"push": other, "api_key": NATIONAL.key, "gateway_url": rig.gateway},
    )
    [second] = r.json()["answers"]
    assert second == first  # the first copy's answer

    after = (await rig.http.get(state_url, headers=READER.headers)).json()
    assert after["received_from_national"] == before["received_from_national"]
    assert after["received_from_national"]["summary"] != "Nội dung khác"
    assert after["attachments"] == before["attachments"]
    other_digest = hashlib.sha256(other_file).hexdigest()
    assert await rig.runtime.store.get(f"national_portal:attachment:{other_digest}") is None
    events = await rig.runtime.store.events.list_after(None, limit=100)
    received = [e for e in events if e.type == "dossier.received"]
    assert len(received) == 1
    assert received[0].data["dossier"]["summary"] == before["received_from_national"]["summary"]


async def test_inbound_push_with_a_bad_signature_or_oversized_file_is_refused(rig: Rig) -> None:
    from adapters.national_portal.simulator import PortalSimulator

    sim = PortalSimulator(username="x", password="y", madonvi="000.00.00.H47")
    push = sim.sample_push(8)
    body = __import__("json").dumps(push).encode()
    r = await rig.http.post(
        f"{rig.gateway}/callbacks/national_portal/dossiers",
        content=body,
        headers={
            **NATIONAL.headers,
            "X-DVCQG-Signature": "00" * 32,
            "Content-Type": "application/json",
        },
    )
    assert r.status_code == 422
    assert r.json()["type"].endswith("signature-invalid")
    # without the callbacks scope the caller never gets that far
    r = await rig.http.post(
        f"{rig.gateway}/callbacks/national_portal/dossiers", content=body, headers=PROVINCE.headers
    )
    assert r.status_code == 403

    big = dict(push, maGiaoDich="big-1")
    big["tepDinhKem"] = [
        {"tenTep": "big.bin", "noiDung": base64.b64encode(b"x" * (2 * 1024 * 1024)).decode()}
    ]
    r = await rig.http.post(
        f"{rig.portal}/_state/push",
        json={"push": big, "api_key": NATIONAL.key, "gateway_url": rig.gateway},
    )
    answer = r.json()["answers"][0]
    assert answer["status"] == 413, answer
    events = await rig.runtime.store.events.list_after(None, limit=100)
    assert not [e for e in events if e.type == "dossier.received"]
