"""``gateway demo`` steps of the national portal: one dossier from reception to return, what
the portal stored and the dossier's timeline, then one dossier received from the national side.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from datetime import datetime, timedelta
from typing import Any

from gateway.capabilities.dossiers import VN_TZ
from gateway.demo import DemoContext, DemoFailed, demo_step

__all__: list[str] = []

_UNIT = "000.00.19.H47"


async def _wait_job(ctx: DemoContext, job_id: str, *, within: float = 20.0) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while True:
        body: dict[str, Any] = (await ctx.http.get(f"/v1/jobs/{job_id}")).json()
        if body.get("state") in ("succeeded", "dead"):
            return body
        if time.monotonic() > deadline:
            raise DemoFailed(f"job {job_id} still {body.get('state')} after {within:g}s")
        await asyncio.sleep(0.1)


def _dossier(code: str, received: datetime, status: str, **extra: Any) -> dict[str, Any]:
    return {
        "procedure_code": "1.001612",
        "procedure_name": "Cấp Phiếu lý lịch tư pháp",
        "receipt_number": "BN-DEMO-0001",
        "applicant": {
            "kind": "citizen",
            "name": "Phạm Thị Dung",
            "id_number": "049190004321",
            "phone": "0905111222",
        },
        "summary": "Đề nghị cấp Phiếu lý lịch tư pháp số 1",
        "received_at": received.isoformat(),
        "due_at": (received + timedelta(days=10)).isoformat(),
        "status": status,
        "channel": "online",
        "online_payment": True,
        "fees": [{"name": "Phí cung cấp thông tin lý lịch tư pháp", "amount": 200000}],
        **extra,
    }


@demo_step(
    "National portal: a dossier from reception to return", order=60, adapter="national_portal"
)
async def dossier_life(ctx: DemoContext) -> None:
    received = datetime.now(VN_TZ).replace(microsecond=0) - timedelta(minutes=5)
    if received.date() != datetime.now(VN_TZ).date():  # just after midnight
        received = datetime.now(VN_TZ).replace(hour=0, minute=0, second=1, microsecond=0)
    code = f"{_UNIT}-{received:%y%m%d}-0001"
    ctx.state["national_portal_code"] = code
    ctx.say(f"The province received dossier {code} and tells the gateway (PUT, status received).")
    steps: list[tuple[str, dict[str, Any]]] = [
        ("PUT", _dossier(code, received, "received")),
        (
            "progress",
            {
                "records": [
                    {
                        "officer_name": "Lê Văn Cường",
                        "officer_title": "Chuyên viên",
                        "department": "Phòng Hành chính tư pháp",
                        "content": f"Thẩm định hồ sơ, bước {n}",
                        "processed_at": (received + timedelta(seconds=10 + n)).isoformat(),
                        "status": "processing",
                    }
                    for n in range(1, 13)
                ]
            },
        ),
        ("PUT", _dossier(code, received, "processed")),
        (
            "PUT",
            _dossier(
                code,
                received,
                "returned",
                returned_at=(received + timedelta(minutes=1)).isoformat(),
                results=[{"name": "Phiếu lý lịch tư pháp số 1"}],
            ),
        ),
    ]
    job_ids = []
    for verb, body in steps:
        if verb == "PUT":
            r = await ctx.http.put(f"/v1/dossiers/{code}", json=body)
            what = f"PUT status {body['status']}"
        else:
            r = await ctx.http.post(f"/v1/dossiers/{code}/progress", json=body)
            what = f"POST {len(body['records'])} progress records"
        ctx.check(r.status_code == 202, f"{what} answered {r.status_code}: {r.text[:200]}")
        job_ids.append(r.json()["job_id"])
        ctx.say(f"{what:<32} -> 202, job {r.json()['job_id']}")
    ctx.say("Workers deliver them in order: TraCuuHoSo, DongBoHoSoMC, CapNhatTienDoHoSoMC (≤10).")
    for job_id in job_ids:
        job = await _wait_job(ctx, job_id)
        ctx.check(
            job["state"] == "succeeded", f"job {job_id} is {job['state']}: {job['last_error']}"
        )
    r = await ctx.http.get(f"{ctx.sandbox_url}/national_portal/_state/dossiers/{code}")
    stored = r.json()["dossier"]
    ctx.check(stored is not None, "the portal has no record of the dossier")
    ctx.say(
        f"The portal stored: TrangThaiHoSo {stored['record']['TrangThaiHoSo']} (returned), "
        f"{len(stored['progress'])} progress records, history {' → '.join(stored['history'])}"
    )
    calls = (
        await ctx.http.get(f"{ctx.sandbox_url}/national_portal/_state/calls", params={"code": code})
    ).json()["items"]
    chunk_sizes = [c["chunk"] for c in calls if c["service"] == "CapNhatTienDoHoSoMC"]
    ctx.say(f"progress went in chunks of {sorted(set(chunk_sizes), reverse=True)} records")
    state = (await ctx.http.get(f"/v1/dossiers/{code}")).json()
    ctx.say(
        f"GET /v1/dossiers/{code}: confirmed status {state['confirmed']['status']}, "
        f"{state['progress_confirmed']} progress records confirmed, {len(state['pending'])} pending"
    )
    timeline = (await ctx.http.get(f"/v1/dossiers/{code}/timeline")).json()["items"]
    ctx.say(f"Its timeline ({len(timeline)} events):")
    for entry in timeline[:14]:
        ctx.say(f"  {entry['label']:<44} {entry['outcome']}")
    if len(timeline) > 14:
        ctx.say(f"  … and {len(timeline) - 14} more")


@demo_step("National portal: a dossier submitted nationally", order=61, adapter="national_portal")
async def dossier_received(ctx: DemoContext) -> None:
    ctx.say("A citizen submits a dossier on the national portal; the portal pushes it to the")
    ctx.say("gateway (HMAC-signed, attachments in base64) — and, its answer lost, pushes it again.")
    r = await ctx.http.post(
        f"{ctx.sandbox_url}/national_portal/_state/push",
        json={"seq": 1, "times": 2, "api_key": ctx.api_key, "gateway_url": ctx.gateway_url},
    )
    ctx.check(r.status_code == 200, f"the simulator's push answered {r.status_code}")
    push = r.json()
    code = push["maHoSo"]
    for n, answer in enumerate(push["answers"], 1):
        ctx.check(
            answer["status"] == 200, f"push {n} answered {answer['status']}: {answer['body']}"
        )
        ctx.say(f"push {n}: HTTP {answer['status']} {answer['body']}")
    delivery = await ctx.wait_for_event(
        "dossier.received", lambda p: p.get("data", {}).get("dossier", {}).get("code") == code
    )
    data = (delivery.payload or {}).get("data", {})
    [link] = data["attachments"]
    ctx.say(f"the province got one dossier.received webhook for {code} (the copy was recognised)")
    ctx.say(f"attachment {link['name']} ({link['size']} bytes), fetched by link, not inline:")
    ctx.say(f"  {link['url']}")
    r = await ctx.http.get(f"/v1/dossiers/{code}/attachments/{link['id']}")
    ctx.check(r.status_code == 200, f"the attachment answered {r.status_code}")
    ctx.check(
        hashlib.sha256(r.content).hexdigest() == link["sha256"], "the attachment's digest differs"
    )
    ctx.say(f"✔ SHA-256 {link['sha256'][:16]}… matches")
