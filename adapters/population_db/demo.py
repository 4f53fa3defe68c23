"""``gateway demo`` step of the population database: verify a citizen of the synthetic
population, look up two fields to pre-fill a form, see the registry refuse an unlicensed
procedure, and show the audit record: purpose and a keyed digest, no ID number, no name."""

from __future__ import annotations

import json
from typing import Any

from gateway.demo import DemoContext, demo_step

from .population import LICENSED_PROCEDURES, PERMITTED_OFFICERS, population

__all__: list[str] = []

_DOSSIER = "000.00.19.H47-260101-0042"


_SHOWN = ("actor", "operation", "outcome", "procedure_code", "dossier_code", "officer_id",
          "subject_digests", "extra")  # fmt: skip


@demo_step(
    "Population database: verify a citizen, pre-fill a form, audit without personal data",
    order=40,
    adapter="population_db",
)
async def verify_and_prefill(ctx: DemoContext) -> None:
    citizen = population(ctx.settings.sandbox.seed).pick(0)
    raw = citizen.NgayThangNamSinh
    purpose: dict[str, Any] = {
        "procedure_code": LICENSED_PROCEDURES[0],
        "dossier_code": _DOSSIER,
        "officer_id": PERMITTED_OFFICERS[0],
    }
    body = {
        "id_number": citizen.SoDinhDanh,
        "full_name": citizen.HoVaTen.day_du().upper(),  # as some peers type it
        "birth_date": f"{raw[6:8]}/{raw[4:6]}/{raw[:4]}" if len(raw) == 8 else raw,
        "purpose": purpose,
    }
    ctx.say(
        f"A citizen of the simulator's synthetic population (ID ending …{citizen.SoDinhDanh[-2:]}),"
    )
    ctx.say("name typed in capitals, birth date as DD/MM/YYYY.")
    response = await ctx.http.post("/v1/citizens/verify", json=body)
    ctx.check(response.status_code == 200, f"verify answered {response.status_code}")
    result = response.json()
    ctx.check(result["match"] is True, f"the registry did not confirm the citizen: {result}")
    ctx.say(f"POST /v1/citizens/verify -> 200 {json.dumps(result)}")
    ctx.say("(signed SOAP TraCuuThongTinCongDan to the registry, signed answer verified)")

    other = await ctx.http.post(
        "/v1/citizens/verify", json={**body, "full_name": "Trần Thị Không Khớp"}
    )
    ctx.check(other.status_code == 200, f"verify answered {other.status_code}")
    mismatch = other.json()
    ctx.check(mismatch["mismatches"] == ["full_name"], f"unexpected answer {mismatch}")
    ctx.say(f"Another name for the same ID -> match false, mismatches {mismatch['mismatches']}")

    lookup = await ctx.http.post(
        "/v1/citizens/lookup",
        json={
            "id_number": citizen.SoDinhDanh,
            "purpose": purpose,
            "fields": ["given_name", "permanent_address"],
        },
    )
    ctx.check(lookup.status_code == 200, f"lookup answered {lookup.status_code}")
    prefill = lookup.json()["citizen"]
    ctx.check(set(prefill) == {"given_name", "permanent_address"}, f"extra fields: {prefill}")
    ctx.say("POST /v1/citizens/lookup, fields [given_name, permanent_address] -> only those:")
    ctx.say(f"  {json.dumps(prefill, ensure_ascii=False)}")

    refused = await ctx.http.post(
        "/v1/citizens/verify", json={**body, "purpose": {**purpose, "procedure_code": "9.999999"}}
    )
    ctx.check(refused.status_code == 403, f"an unlicensed procedure got {refused.status_code}")
    ctx.say(
        f"An unlicensed procedure -> 403 {refused.json()['type'].rsplit(':', 1)[-1]} (code 004)"
    )

    page = await ctx.http.get(
        "/ops/api/audit", params={"adapter": "population_db", "dossier_code": _DOSSIER}
    )
    ctx.check(page.status_code == 200, f"GET /ops/api/audit answered {page.status_code}")
    records = sorted(page.json()["items"], key=lambda r: r["seq"])
    ctx.check(len(records) == 4, f"expected 4 audit records, found {len(records)}")
    text = json.dumps(records, ensure_ascii=False)
    for secret in (citizen.SoDinhDanh, citizen.HoVaTen.day_du(), citizen.HoVaTen.day_du().upper()):
        ctx.check(secret not in text, "an audit record holds personal data")
    ctx.say("Their audit records (GET /ops/api/audit?adapter=population_db&dossier_code=…):")
    for r in records:
        ctx.say(
            f"  #{r['seq']:<4} {r['operation']:<16} {r['outcome']:<9} {r['procedure_code']:<9} "
            f"officer {r['officer_id']}  subject {r['subject_digests'][0][:12]}…  {r['detail']}"
        )
    first = records[0]
    ctx.say(f"  first in full: {json.dumps({k: first[k] for k in _SHOWN}, ensure_ascii=False)}")
    ctx.say("✔ purpose (procedure, dossier, officer) and a keyed digest; no ID number, no name")
