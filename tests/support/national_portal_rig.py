"""A gateway and the national portal simulator over real HTTP, on one store backend.

The sandbox (``gateway.sandbox.build_sandbox``: the simulator behind the fault injector) and
the gateway (``create_app`` pointed at the sandbox) each run in uvicorn on 127.0.0.1 with a
free port. Tests talk to the gateway as the provincial system would, read the portal's state
through the simulator's ``/_state`` endpoints and inject faults through ``/_sandbox/faults``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from support.jobs_app import drop_redis_prefix, gateway_settings, make_client, store_settings
from support.uvicorn_server import serving

from gateway.app import create_app
from gateway.capabilities.dossiers import VN_TZ
from gateway.runtime import Runtime
from gateway.sandbox import build_sandbox
from gateway.store.base import Job, JobState

__all__ = [
    "NATIONAL",
    "OPERATOR",
    "PROVINCE",
    "READER",
    "RESTRICTED",
    "Rig",
    "dossier_body",
    "dossier_code",
    "portal_rig",
    "progress_record",
]

PROVINCE = make_client("dossier-system", "dossiers:write", "dossiers:read")
READER = make_client("dossier-reader", "dossiers:read")
NATIONAL = make_client("portal-callbacks", "callbacks:national_portal")
OPERATOR = make_client("ops-alice", "ops:read", "ops:write")
RESTRICTED = make_client("district-system", "dossiers:write", "dossiers:read")

UNIT = "000.00.19.H47"


def dossier_code(seq: int, *, unit: str = UNIT, day: datetime | None = None) -> str:
    day = day or datetime.now(VN_TZ)
    return f"{unit}-{day:%y%m%d}-{seq:04d}"


def _received_at() -> datetime:
    # today, early, so every later time of the test is after it and not in the future
    now = datetime.now(VN_TZ)
    return now.replace(hour=0, minute=0, second=1, microsecond=0)


def dossier_body(status: str = "received", **extra: Any) -> dict[str, Any]:
    received = _received_at()
    body: dict[str, Any] = {
        "procedure_code": "1.001612",
        "procedure_name": "Cấp Phiếu lý lịch tư pháp",
        "receipt_number": "BN-0001",
        "applicant": {
            "kind": "citizen",
            "name": "Trần Thị Bình",
            "id_number": "049190001234",
            "email": "binh@example.vn",
            "phone": "0905000111",
        },
        "summary": "Đề nghị cấp Phiếu lý lịch tư pháp số 1",
        "received_at": received.isoformat(),
        "due_at": (received + timedelta(days=10)).isoformat(),
        "status": status,
        "channel": "online",
        "online_payment": True,
        "fees": [{"name": "Phí cung cấp thông tin", "code": "P1", "kind": "fee", "amount": 200000}],
    }
    if status == "returned":
        body["returned_at"] = (received + timedelta(seconds=30)).isoformat()
    body.update(extra)
    return body


def progress_record(status: str, n: int = 0) -> dict[str, Any]:
    received = _received_at()
    return {
        "officer_name": "Lê Văn Cường",
        "officer_title": "Chuyên viên",
        "department": "Phòng Hành chính tư pháp",
        "content": f"Bước xử lý {n}",
        "processed_at": (received + timedelta(seconds=1 + n)).isoformat(),
        "status": status,
    }


@dataclass
class Rig:
    gateway: str
    sandbox: str
    runtime: Runtime
    http: httpx.AsyncClient
    #: further gateway instances on the same store: (URL, runtime)
    others: list[tuple[str, Runtime]] = field(default_factory=list)

    @property
    def portal(self) -> str:
        return f"{self.sandbox}/national_portal"

    async def put_dossier(
        self, code: str, body: dict[str, Any], *, client: Any = PROVINCE, via: str | None = None
    ) -> httpx.Response:
        return await self.http.put(
            f"{via or self.gateway}/v1/dossiers/{code}", json=body, headers=client.headers
        )

    async def post_progress(
        self,
        code: str,
        records: list[dict[str, Any]],
        *,
        client: Any = PROVINCE,
        via: str | None = None,
    ) -> httpx.Response:
        return await self.http.post(
            f"{via or self.gateway}/v1/dossiers/{code}/progress",
            json={"records": records},
            headers=client.headers,
        )

    async def portal_calls(self, code: str | None = None) -> list[dict[str, Any]]:
        params = {"code": code} if code else {}
        r = await self.http.get(f"{self.portal}/_state/calls", params=params)
        r.raise_for_status()
        return list(r.json()["items"])

    async def portal_dossier(self, code: str) -> dict[str, Any] | None:
        r = await self.http.get(f"{self.portal}/_state/dossiers/{code}")
        r.raise_for_status()
        found: dict[str, Any] | None = r.json()["dossier"]
        return found

    async def portal_summary(self) -> dict[str, Any]:
        r = await self.http.get(f"{self.portal}/_state/summary")
        r.raise_for_status()
        summary: dict[str, Any] = r.json()
        return summary

    async def fault(self, operation: str, spec: dict[str, Any]) -> None:
        r = await self.http.put(
            f"{self.sandbox}/_sandbox/faults/national_portal/{operation}", json=spec
        )
        r.raise_for_status()

    async def clear_faults(self) -> None:
        (await self.http.delete(f"{self.sandbox}/_sandbox/faults")).raise_for_status()

    async def wait_jobs(
        self,
        job_ids: Iterable[str],
        *,
        until: Iterable[JobState] = (JobState.SUCCEEDED,),
        timeout: float = 30.0,  # noqa: ASYNC109 - a polling budget, reported on failure
    ) -> list[Job]:
        """Poll the store until every job is in one of ``until`` (or fail with their states)."""
        ids = list(job_ids)
        wanted = set(until)
        deadline = time.monotonic() + timeout
        while True:
            jobs = [await self.runtime.store.jobs.get(i) for i in ids]
            if all(j is not None and j.state in wanted for j in jobs):
                return [j for j in jobs if j is not None]
            if time.monotonic() > deadline:
                states = {j.id: (j.state.value, j.last_error) for j in jobs if j is not None}
                raise AssertionError(f"jobs not {sorted(wanted)} in {timeout}s: {states}")
            await asyncio.sleep(0.05)


@asynccontextmanager
async def portal_rig(
    backend: str,
    tmp_path: Path,
    redis_url: str | None,
    *,
    adapter: dict[str, Any] | None = None,
    workers: int = 4,
    webhooks: dict[str, Any] | None = None,
    instances: int = 1,
) -> AsyncIterator[Rig]:
    store, prefix = store_settings(backend, tmp_path, redis_url)
    adapter_config = {
        "base_url": "http://127.0.0.1:9/unused",  # replaced by the sandbox URL
        "madonvi": "000.00.00.H47",
        "attachment_max_bytes": 1024 * 1024,
        "outbound": {
            "instant_backoff": True,
            "retry": {"max_attempts": 2},
            "circuit": {"failure_threshold": 50},
        },
        **(adapter or {}),
    }
    extra: dict[str, Any] = {"webhooks": webhooks} if webhooks else {}
    settings = gateway_settings(
        store,
        tmp_path,
        clients=(PROVINCE, READER, NATIONAL, OPERATOR),
        jobs={
            "workers": workers,
            "poll_interval": 0.01,
            "default_policy": {"backoff_initial": 0.05, "backoff_max": 0.2, "max_attempts": 6},
        },
        capabilities={"dossiers": "national_portal"},
        adapters={"national_portal": adapter_config},
        **extra,
    )
    # a client restricted to one unit, defined like any other
    settings = settings.model_copy(
        update={
            "clients": [
                *settings.clients,
                type(settings.clients[0]).model_validate(
                    {
                        "id": RESTRICTED.id,
                        "key_sha256": _hash(RESTRICTED.key),
                        "scopes": list(RESTRICTED.scopes),
                        "allowed_units": ["000.00.20.H47"],
                    }
                ),
            ]
        }
    )
    sandbox = build_sandbox(settings)
    async with serving(sandbox) as sandbox_url, contextlib.AsyncExitStack() as stack:
        # ``instances`` gateways sharing one store: the first is the rig's, the others extra
        served: list[tuple[str, Runtime]] = []
        for _ in range(instances):
            app = create_app(settings, sandbox_url=sandbox_url)
            served.append((await stack.enter_async_context(serving(app)), app.state.runtime))
        http = await stack.enter_async_context(httpx.AsyncClient(timeout=30))
        (gateway_url, runtime), *others = served
        yield Rig(gateway_url, sandbox_url, runtime, http, others)
    if redis_url is not None:
        await drop_redis_prefix(redis_url, prefix)


def _hash(key: str) -> str:
    from gateway.security import hash_api_key

    return hash_api_key(key)
