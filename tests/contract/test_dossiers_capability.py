"""The dossiers capability contract, run against every installed adapter that serves it, on
SQLite and on Redis, each adapter talking to its own simulator in the sandbox over real HTTP.

A new adapter serving ``dossiers`` is picked up from the entry points; it must add its
sandbox settings to ``CONTRACT_SETTINGS`` (the test says so if it does not).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from support.jobs_app import drop_redis_prefix, gateway_settings, store_settings
from support.uvicorn_server import serving

from gateway.adapters import discover_adapters
from gateway.app import create_app
from gateway.capabilities.dossiers import (
    VN_TZ,
    AcceptedCommand,
    Dossier,
    DossiersCapability,
    DossierStatus,
    ProgressRecord,
)
from gateway.errors import NotFound, ValidationFailed
from gateway.runtime import Runtime
from gateway.sandbox import build_sandbox
from gateway.store.base import JobState

pytestmark = pytest.mark.timeout(60)

#: per adapter: its settings for the contract run (pointed at the sandbox by the app)
CONTRACT_SETTINGS: dict[str, dict[str, Any]] = {
    "national_portal": {
        "base_url": "http://127.0.0.1:9/unused",
        "madonvi": "000.00.00.H47",
        "outbound": {"instant_backoff": True},
    },
}
UNIT = "000.00.19.H47"

DOSSIER_ADAPTERS = sorted(
    name for name, cls in discover_adapters().items() if "dossiers" in cls.capabilities
)


def test_some_adapter_serves_dossiers() -> None:
    assert DOSSIER_ADAPTERS, "no installed adapter serves the dossiers capability"


@pytest.fixture(params=[(a, b) for a in DOSSIER_ADAPTERS for b in ("sqlite", "redis")])
async def served(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[DossiersCapability, Runtime]]:
    adapter, backend = request.param
    if adapter not in CONTRACT_SETTINGS:
        pytest.fail(f"add {adapter}'s sandbox settings to CONTRACT_SETTINGS")
    redis_url = request.getfixturevalue("redis_url") if backend == "redis" else None
    store, prefix = store_settings(backend, tmp_path, redis_url)
    settings = gateway_settings(
        store,
        tmp_path,
        clients=(),
        jobs={"workers": 2, "poll_interval": 0.01},
        capabilities={"dossiers": adapter},
        adapters={adapter: CONTRACT_SETTINGS[adapter]},
    )
    async with serving(build_sandbox(settings)) as sandbox_url:
        app = create_app(settings, sandbox_url=sandbox_url)
        async with serving(app):
            runtime: Runtime = app.state.runtime
            capability = runtime.registry.capability("dossiers")
            assert isinstance(capability, DossiersCapability)
            yield capability, runtime
    if redis_url is not None:
        await drop_redis_prefix(redis_url, prefix)


def _dossier(seq: int, status: DossierStatus, **extra: Any) -> Dossier:
    received = datetime.now(VN_TZ).replace(hour=0, minute=0, second=2, microsecond=0)
    data: dict[str, Any] = {
        "code": f"{UNIT}-{received:%y%m%d}-{seq:04d}",
        "procedure_code": "1.001612",
        "receipt_number": f"BN-{seq}",
        "applicant": {"kind": "citizen", "name": "Võ Văn Em", "id_number": "049095001111"},
        "summary": "Hồ sơ kiểm thử hợp đồng",
        "received_at": received.isoformat(),
        "status": status.value,
    }
    data.update(extra)
    return Dossier.model_validate(data)


def _record(status: DossierStatus, n: int) -> ProgressRecord:
    at = datetime.now(VN_TZ).replace(hour=0, minute=0, second=3, microsecond=0)
    return ProgressRecord(
        officer_name="Cán bộ",
        content=f"bước {n}",
        processed_at=at + timedelta(seconds=n),
        status=status,
    )


async def _succeeded(runtime: Runtime, cmd: AcceptedCommand) -> None:
    for _ in range(400):
        job = await runtime.store.jobs.get(cmd.job_id)
        assert job is not None
        if job.state is JobState.SUCCEEDED:
            return
        assert job.state is not JobState.DEAD, job.last_error
        await asyncio.sleep(0.025)
    raise AssertionError(f"job {cmd.job_id} did not succeed")


async def test_commands_are_queued_in_order_and_confirmed(
    served: tuple[DossiersCapability, Runtime],
) -> None:
    cap, runtime = served
    dossier = _dossier(1, DossierStatus.RECEIVED)
    assert await cap.dossier_state(dossier.code) is None
    first = await cap.sync_dossier(dossier, [_record(DossierStatus.PROCESSING, 1)], client_id="c")
    second = await cap.push_progress(
        dossier.code, [_record(DossierStatus.PROCESSED, 2)], client_id="c"
    )
    assert first.dossier_code == second.dossier_code == dossier.code
    jobs = await runtime.store.jobs.by_ordering_key(dossier.code)
    assert [j.id for j in jobs] == [first.job_id, second.job_id]
    await _succeeded(runtime, first)
    await _succeeded(runtime, second)
    state = await cap.dossier_state(dossier.code)
    assert state is not None
    assert state.confirmed is not None and state.confirmed.code == dossier.code
    assert state.confirmed.status is DossierStatus.PROCESSED
    assert state.accepted_status is DossierStatus.PROCESSED
    assert state.progress_confirmed == 2
    assert state.pending == []


async def test_impossible_transitions_are_refused_before_queueing(
    served: tuple[DossiersCapability, Runtime],
) -> None:
    cap, runtime = served
    dossier = _dossier(2, DossierStatus.RECEIVED)
    await cap.sync_dossier(dossier)
    with pytest.raises(ValidationFailed) as exc:
        await cap.sync_dossier(
            dossier.model_copy(
                update={"status": DossierStatus.RETURNED, "returned_at": dossier.received_at}
            )
        )
    assert exc.value.errors[0].pointer == "/status"
    await cap.push_progress(dossier.code, [_record(DossierStatus.WITHDRAWN, 1)])
    with pytest.raises(ValidationFailed):
        await cap.push_progress(dossier.code, [_record(DossierStatus.PROCESSING, 2)])
    assert len(await runtime.store.jobs.by_ordering_key(dossier.code)) == 2


async def test_the_catalogue(served: tuple[DossiersCapability, Runtime]) -> None:
    cap, _ = served
    listing = await cap.list_procedures()
    assert listing.stale is False and listing.items
    first = listing.items[0]
    procedure, stale = await cap.get_procedure(first.code)
    assert stale is False
    assert procedure.code == first.code and procedure.name == first.name
    with pytest.raises(NotFound):
        await cap.get_procedure("9.999999")
    with pytest.raises(ValidationFailed):
        await cap.get_procedure("not-a-code")


async def test_unknown_attachments_are_not_found(
    served: tuple[DossiersCapability, Runtime],
) -> None:
    cap, _ = served
    with pytest.raises(NotFound):
        await cap.attachment(_dossier(3, DossierStatus.RECEIVED).code, "0" * 64)
