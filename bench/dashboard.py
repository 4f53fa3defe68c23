"""Dashboard server time with a full store: 100,000 audit records, 10,000 dead letters and
1,000 dossiers' timelines. Prints p50/p95 per page and API call, beside the store query the
page rests on (the reference: what rendering and HTTP add), and the ratio.

    .venv/bin/python bench/dashboard.py [--backend sqlite|redis] [--requests 40]

Target (issue 7): every page under 200 ms at p95 on this machine.
"""

from __future__ import annotations

if not __package__:  # run as a file: keep bench/ (its queue.py) off sys.path, see _bootstrap
    import _bootstrap  # noqa: F401

import argparse
import asyncio
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

from bench._common import drop_redis_prefix, percentile
from gateway.app import create_app
from gateway.security import hash_api_key
from gateway.settings import Settings
from gateway.store.base import Attempt, AuditQuery, AuditRecord, NewJob, Store

AUDIT_RECORDS = int(os.environ.get("BENCH_AUDIT_RECORDS", "100000"))
DEAD_LETTERS = 10_000
DOSSIERS = 1_000
SYSTEMS = ("national_portal", "population_db")


def dossier_code(i: int) -> str:
    return f"000.00.19.H47-2601{(i % 28) + 1:02d}-{i:04d}"


async def fill(store: Store, digest: Callable[[str], str]) -> dict[str, float]:
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    now = time.time()
    for i in range(AUDIT_RECORDS):
        system = SYSTEMS[i % 2]
        await store.audit.append(
            AuditRecord(
                at=now - (AUDIT_RECORDS - i),
                direction="outbound",
                actor="dossier-system",
                operation="DongBoHoSoMC" if system == "national_portal" else "verify",
                outcome="ok" if i % 17 else "error",
                adapter=system,
                request_id=uuid.uuid4().hex,
                status=200 if i % 17 else 502,
                latency_ms=12.5,
                dossier_code=dossier_code(i % DOSSIERS),
                subject_digests=[digest(f"0492030{i % 100000:05d}")] if i % 2 else [],
            )
        )
    timings["audit records"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    for i in range(DEAD_LETTERS):
        await store.jobs.enqueue(
            NewJob(
                kind=f"{SYSTEMS[i % 2]}.sync_dossier",
                payload={"n": i},
                ordering_key=dossier_code(i % DOSSIERS) if i % 3 == 0 else None,
            )
        )
    leased = 0
    while leased < DEAD_LETTERS:
        job = await store.jobs.lease("bench", visibility=600, now=time.time())
        if job is None:
            break
        leased += 1
        await store.jobs.dead_letter(
            job.id,
            "bench",
            now=time.time(),
            attempt=Attempt(at=time.time(), error="portal said: ma TTHC khong ton tai"),
        )
    timings["dead letters"] = time.perf_counter() - t0
    return timings


async def measure(call: Callable[[], Awaitable[Any]], n: int) -> tuple[float, float]:
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        await call()
        samples.append((time.perf_counter() - t0) * 1000)
    return statistics.median(samples), percentile(samples, 0.95)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backend", choices=["sqlite", "redis"], default="sqlite")
    parser.add_argument("--requests", type=int, default=40)
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="dvcgw-bench-"))
    key = "bench-" + uuid.uuid4().hex
    store_cfg: dict[str, Any] = {"backend": args.backend, "sqlite_path": str(tmp / "g.db")}
    if args.backend == "redis":
        store_cfg["redis_url"] = (
            os.environ.get("GATEWAY_TEST_REDIS_URL") or "redis://127.0.0.1:6379/0"
        )
        store_cfg["key_prefix"] = f"dvcgw-bench-{uuid.uuid4().hex[:8]}:"
    settings = Settings(
        store=store_cfg,
        security={"clients_file": str(tmp / "clients.toml"), "rate_limit": {"enabled": False}},
        clients=[{"id": "ops", "key_sha256": hash_api_key(key), "scopes": ["ops:read"]}],
        jobs={"workers": 0, "scheduler_enabled": False},
        logging={"level": "WARNING"},
    )
    app = create_app(settings)
    runtime = app.state.runtime
    # ASGITransport runs no lifespan: start the runtime ourselves
    await runtime.start()
    try:
        print(f"filling the {args.backend} store ...", flush=True)
        fill_times = await fill(runtime.store, runtime.audit.digest)
        for what, secs in fill_times.items():
            print(f"  {what}: {secs:.1f} s")
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://bench", headers={"X-API-Key": key}
        ) as client:
            code = dossier_code(7)
            digest = runtime.audit.digest("049203000001")
            store = runtime.store

            async def get(path: str) -> None:
                r = await client.get(path)
                if r.status_code != 200:
                    raise SystemExit(f"{path}: HTTP {r.status_code} {r.text[:200]}")

            cases: list[tuple[str, str, Callable[[], Awaitable[Any]] | None]] = [
                ("/ops (overview)", "/ops", lambda: store.jobs.stats(now=time.time())),
                ("/ops/partials/overview", "/ops/partials/overview", None),
                ("/ops/dead-letters", "/ops/dead-letters", lambda: store.jobs.list_dead(limit=50)),
                ("/ops/dead-letters?system=", "/ops/dead-letters?system=population_db", None),
                ("/ops/audit", "/ops/audit", lambda: store.audit.query(AuditQuery(limit=100))),
                (
                    "/ops/audit?dossier_code=",
                    f"/ops/audit?dossier_code={code}",
                    lambda: store.audit.query(AuditQuery(dossier_code=code, limit=100)),
                ),
                (
                    # where the citizen-ID form lands (the ID posted, its digest in the URL)
                    "/ops/audit?subject=<digest>",
                    f"/ops/audit?subject={digest}",
                    lambda: store.audit.query(AuditQuery(subject_digest=digest, limit=100)),
                ),
                (
                    "/ops/audit?system=&outcome=",
                    "/ops/audit?system=national_portal&outcome=error",
                    lambda: store.audit.query(
                        AuditQuery(adapter="national_portal", outcome="error", limit=100)
                    ),
                ),
                (
                    "/ops/dossier?code=",
                    f"/ops/dossier?code={code}",
                    lambda: store.jobs.by_ordering_key(code),
                ),
                ("/ops/api/dead-letters", "/ops/api/dead-letters?limit=50", None),
                ("/ops/api/audit", "/ops/api/audit", None),
                ("/health/adapters", "/health/adapters", None),
            ]
            # warm the chain-status cache and the connection pools once
            await get("/ops/audit")
            rows = []
            for label, path, ref in cases:
                page50, page95 = await measure(lambda p=path: get(p), args.requests)
                ref50 = ref95 = None
                if ref is not None:
                    ref50, ref95 = await measure(ref, args.requests)
                rows.append((label, page50, page95, ref50, ref95))
        print()
        print(
            f"backend={args.backend}  audit={AUDIT_RECORDS:,}  dead letters={DEAD_LETTERS:,}  "
            f"dossiers={DOSSIERS:,}  requests per row={args.requests}"
        )
        header = (
            f"{'page / call':32} {'p50 ms':>8} {'p95 ms':>8} {'store p50':>10} "
            f"{'store p95':>10} {'p95/store':>10}  target p95<200"
        )
        print(header)
        print("-" * len(header))
        for label, p50, p95, r50, r95 in rows:
            ratio = f"{p95 / r95:.1f}x" if r95 else "—"
            s50 = f"{r50:.1f}" if r50 is not None else "—"
            s95 = f"{r95:.1f}" if r95 is not None else "—"
            ok = "ok" if p95 < 200 else "MISSED"
            print(f"{label:32} {p50:8.1f} {p95:8.1f} {s50:>10} {s95:>10} {ratio:>10}  {ok}")
    finally:
        await runtime.stop()
        if args.backend == "redis":
            await drop_redis_prefix(store_cfg["redis_url"], store_cfg["key_prefix"])


if __name__ == "__main__":
    asyncio.run(main())
