"""Smoke: one dossier through the gateway to the simulator and back (both backends)."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.national_portal_rig import dossier_body, dossier_code, portal_rig


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
async def test_one_dossier_reaches_the_portal(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    redis_url = request.getfixturevalue("redis_url") if backend == "redis" else None
    async with portal_rig(backend, tmp_path, redis_url) as rig:
        code = dossier_code(1)
        r = await rig.put_dossier(code, dossier_body("received"))
        assert r.status_code == 202, r.text
        job_id = r.json()["job_id"]
        await rig.wait_jobs([job_id])
        stored = await rig.portal_dossier(code)
        assert stored is not None
        assert stored["record"]["TrangThaiHoSo"] == "2"
        assert stored["record"]["DinhDanhCHS"] == [
            {"LoaiDinhDanh": "1", "SoDinhDanh": "049190001234"}
        ]
