"""The dashboard's access rules over the real app and a real store: sign-in, redirects,
CSRF on every state-changing form, replay and discard audited with the operator's id."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from litestar import Litestar
from support.jobs_app import drop_redis_prefix

from gateway.app import create_app
from gateway.security import hash_api_key
from gateway.settings import Settings
from gateway.store.base import Attempt, AuditQuery, NewJob

READ_KEY = "ops-read-" + "r" * 40
WRITE_KEY = "ops-write-" + "w" * 40
API_KEY = "dossier-system-" + "d" * 40


def _settings(
    tmp_path: Path, backend: str, redis_url: str | None, prefix: str, **extra: Any
) -> Settings:
    store: dict[str, Any] = {"backend": backend, "sqlite_path": str(tmp_path / "g.db")}
    if redis_url:
        store.update(redis_url=redis_url, key_prefix=prefix)
    return Settings(
        store=store,
        security={"clients_file": str(tmp_path / "clients.toml")},
        clients=[
            {"id": "ops-reader", "key_sha256": hash_api_key(READ_KEY), "scopes": ["ops:read"]},
            {
                "id": "ops-writer",
                "key_sha256": hash_api_key(WRITE_KEY),
                "scopes": ["ops:read", "ops:write"],
            },
            {
                "id": "dossier-system",
                "key_sha256": hash_api_key(API_KEY),
                "scopes": ["events:read"],
            },
        ],
        jobs={"workers": 0, "scheduler_enabled": False},
        **extra,
    )


@pytest.fixture(params=["sqlite", "redis"])
async def app(
    request: pytest.FixtureRequest, tmp_path: Path, redis_prefix: str
) -> AsyncIterator[Litestar]:
    redis_url = request.getfixturevalue("redis_url") if request.param == "redis" else None
    application = create_app(_settings(tmp_path, request.param, redis_url, redis_prefix))
    yield application
    if redis_url:
        await drop_redis_prefix(redis_url, redis_prefix)


@asynccontextmanager
async def _client(app: Litestar) -> AsyncIterator[httpx.AsyncClient]:
    """The app served in this test's event loop (so the test may use the same store objects),
    its runtime started, redirects left to the test."""
    runtime = app.state.runtime
    await runtime.start()
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield client
    finally:
        await runtime.stop()


async def _login_form_token(client: httpx.AsyncClient) -> str:
    """The sign-in form's hidden CSRF token (its twin cookie is now in the client's jar)."""
    form = await client.get("/ops/login")
    found = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
    assert found, "the sign-in form carries a CSRF token"
    return found.group(1)


async def _post_login(client: httpx.AsyncClient, key: str, **extra: str) -> httpx.Response:
    token = await _login_form_token(client)
    return await client.post("/ops/login", data={"api_key": key, "csrf_token": token, **extra})


async def _sign_in(client: httpx.AsyncClient, key: str) -> str:
    r = await _post_login(client, key, next="/ops")
    assert r.status_code == 303
    assert r.headers["location"] == "/ops"
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie
    assert "samesite=strict" in cookie.lower()
    page = await client.get("/ops/dead-letters")
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert found, "signed-in pages carry the CSRF token in their forms"
    return found.group(1)


async def _dead_letter(app: Litestar, ordering_key: str = "000.00.19.H47-260105-0001") -> str:
    store = app.state.runtime.store
    job, _ = await store.jobs.enqueue(
        NewJob(kind="national_portal.sync_dossier", payload={}, ordering_key=ordering_key)
    )
    await store.jobs.enqueue(
        NewJob(kind="national_portal.sync_dossier", payload={}, ordering_key=ordering_key)
    )
    leased = await store.jobs.lease("t", visibility=60, now=time.time())
    assert leased is not None
    assert leased.id == job.id
    ok = await store.jobs.dead_letter(
        job.id, "t", now=time.time(), attempt=Attempt(at=time.time(), error="portal: bad code")
    )
    assert ok
    return job.id


async def test_without_a_session_pages_redirect_and_the_ops_api_is_401(app: Litestar) -> None:
    async with _client(app) as client:
        for path in [
            "/ops",
            "/ops/dead-letters",
            "/ops/audit",
            "/ops/dossier",
            "/ops/partials/overview",
        ]:
            r = await client.get(path, follow_redirects=False)
            assert r.status_code == 303, path
            assert r.headers["location"].startswith("/ops/login?next=")
        for path in ["/ops/api/dead-letters", "/ops/api/audit", "/ops/api/queues"]:
            r = await client.get(path)
            assert r.status_code == 401, path
            assert r.headers["content-type"].startswith("application/problem+json")
        login = await client.get("/ops/login")
        assert login.status_code == 200
        assert "Đăng nhập" in login.text


async def test_a_bad_key_or_a_key_without_ops_scope_cannot_sign_in(app: Litestar) -> None:
    async with _client(app) as client:
        r = await _post_login(client, "nope")
        assert r.status_code == 303
        assert "flash=bad_key" in r.headers["location"]
        r = await _post_login(client, API_KEY)
        assert "flash=no_ops_scope" in r.headers["location"]
        assert (await client.get("/ops", follow_redirects=False)).status_code == 303


async def test_sign_in_then_every_page_renders_in_vietnamese_and_english(app: Litestar) -> None:
    async with _client(app) as client:
        await _sign_in(client, READ_KEY)
        overview = await client.get("/ops")
        assert overview.status_code == 200
        assert "Hàng đợi" in overview.text
        english = await client.get("/ops?lang=en")
        assert "Queues" in english.text
        # the choice sticks (cookie) until switched back
        assert "Exchange log" in (await client.get("/ops/audit")).text
        assert "Nhật ký trao đổi" in (await client.get("/ops/audit?lang=vi")).text
        for path in ["/ops/dead-letters", "/ops/audit", "/ops/dossier", "/ops/partials/overview"]:
            assert (await client.get(path)).status_code == 200, path
        # the ops API accepts the session too
        assert (await client.get("/ops/api/audit")).status_code == 200


async def test_the_sign_in_form_refuses_a_post_without_its_csrf_token(app: Litestar) -> None:
    """Login CSRF: another site must not be able to sign the operator's browser in with a
    key of its own. The form's token is a double-submit cookie (SameSite=Strict, HttpOnly)."""
    async with _client(app) as client:
        form = await client.get("/ops/login")
        cookie = next(
            c for c in form.headers.get_list("set-cookie") if c.startswith("dvcgw_login_csrf=")
        )
        assert "HttpOnly" in cookie
        assert "samesite=strict" in cookie.lower()
        token = await _login_form_token(client)
        assert token in cookie, "the same token in the cookie and in the form"
        # without the field, with a forged one, and with the field but no cookie (a cross-site
        # form can set the field, never the cookie): refused, no session
        for data in ({}, {"csrf_token": "x" * 43}):
            r = await client.post("/ops/login", data={"api_key": WRITE_KEY, **data})
            assert r.status_code == 303
            assert "flash=csrf_failed" in r.headers["location"]
            assert "dvcgw_ops=" not in r.headers.get("set-cookie", "")
        client.cookies.clear()
        r = await client.post("/ops/login", data={"api_key": WRITE_KEY, "csrf_token": token})
        assert "flash=csrf_failed" in r.headers["location"]
        assert (await client.get("/ops", follow_redirects=False)).status_code == 303
        # the refusal is said on the form
        page = await client.get("/ops/login?flash=csrf_failed")
        assert "Phiên làm việc không hợp lệ" in page.text
        # with both, the sign-in works
        await _sign_in(client, WRITE_KEY)


async def test_sign_out_ends_the_session(app: Litestar) -> None:
    async with _client(app) as client:
        token = await _sign_in(client, READ_KEY)
        r = await client.post("/ops/logout", data={"csrf_token": token})
        assert r.status_code == 303
        assert (await client.get("/ops", follow_redirects=False)).status_code == 303


async def test_posts_without_the_csrf_token_are_refused_and_change_nothing(app: Litestar) -> None:
    async with _client(app) as client:
        job_id = await _dead_letter(app)
        await _sign_in(client, WRITE_KEY)
        for data in ({}, {"csrf_token": "forged"}):
            r = await client.post(f"/ops/dead-letters/{job_id}/replay", data=data)
            assert r.status_code == 303
            assert "flash=csrf_failed" in r.headers["location"]
        job = await app.state.runtime.store.jobs.get(job_id)
        assert job.state.value == "dead"


async def test_replay_needs_ops_write(app: Litestar) -> None:
    async with _client(app) as client:
        job_id = await _dead_letter(app)
        token = await _sign_in(client, READ_KEY)
        page = await client.get("/ops/dead-letters")
        assert job_id in page.text
        assert "/replay" not in page.text, "a read-only operator sees no replay button"
        r = await client.post(f"/ops/dead-letters/{job_id}/replay", data={"csrf_token": token})
        assert "flash=need_ops_write" in r.headers["location"]
        assert (await app.state.runtime.store.jobs.get(job_id)).state.value == "dead"


async def test_replay_and_discard_are_audited_with_the_operator(app: Litestar) -> None:
    store = app.state.runtime.store
    async with _client(app) as client:
        replayed = await _dead_letter(app, "000.00.19.H47-260105-0001")
        discarded = await _dead_letter(app, "000.00.19.H47-260105-0002")
        token = await _sign_in(client, WRITE_KEY)
        page = await client.get("/ops/dead-letters")
        assert "Việc bị giữ lại phía sau" in page.text, "held-back jobs are shown"
        r = await client.post(f"/ops/dead-letters/{replayed}/replay", data={"csrf_token": token})
        assert "flash=replayed" in r.headers["location"]
        r = await client.post(f"/ops/dead-letters/{discarded}/discard", data={"csrf_token": token})
        assert "flash=discarded" in r.headers["location"]
        again = await client.post(
            f"/ops/dead-letters/{replayed}/replay", data={"csrf_token": token}
        )
        assert "flash=not_dead" in again.headers["location"]
        assert (await store.jobs.get(replayed)).state.value == "queued"
        assert (await store.jobs.get(discarded)).state.value == "discarded"
        moves = await store.audit.query(AuditQuery(actor="ops-writer"))
        # the moves carry the dossier code, so each dossier's timeline shows its own
        replayed_page = await client.get("/ops/dossier?code=000.00.19.H47-260105-0001")
        assert "cán bộ vận hành đã chạy lại" in replayed_page.text
        assert "cán bộ vận hành đã hủy" not in replayed_page.text
        assert "by an operator" not in replayed_page.text, "no English on the Vietnamese page"
        english = await client.get("/ops/dossier?code=000.00.19.H47-260105-0002&lang=en")
        assert "discarded by an operator" in english.text
        by_code = await store.audit.query(AuditQuery(dossier_code="000.00.19.H47-260105-0002"))
        assert any(r.operation == "dlq.discard" for r in by_code)
    assert {(m.operation, m.outcome) for m in moves} >= {
        ("dlq.replay", "ok"),
        ("dlq.discard", "ok"),
        ("dlq.replay", "rejected"),
    }


async def test_citizen_id_search_uses_the_digest_and_never_echoes_the_number(app: Litestar) -> None:
    runtime = app.state.runtime
    citizen = "049203001234"
    async with _client(app) as client:
        await _citizen_search_case(client, runtime, citizen)


async def _citizen_search_case(client: httpx.AsyncClient, runtime: Any, citizen: str) -> None:
    await runtime.audit.record(
        direction="outbound",
        actor="dossier-system",
        operation="verify",
        outcome="ok",
        adapter="population_db",
        subjects=[citizen],
        dossier_code="000.00.19.H47-260105-0009",
    )
    await runtime.audit.record(
        direction="outbound",
        actor="dossier-system",
        operation="verify",
        outcome="ok",
        adapter="population_db",
        subjects=["001099000001"],
    )
    token = await _sign_in(client, READ_KEY)
    # the form posts the ID and comes back with its digest: the ID is in no URL
    r = await client.post("/ops/audit", data={"csrf_token": token, "citizen_id": citizen})
    assert r.status_code == 303
    location = r.headers["location"]
    assert citizen not in location
    assert f"subject={runtime.audit.digest(citizen)}" in location
    page = await client.get(location)
    assert page.status_code == 200
    assert citizen not in page.text
    assert "000.00.19.H47-260105-0009" in page.text
    assert page.text.count('class="outcome-ok"') == 1
    assert "Chuỗi băm toàn vẹn" in page.text
    # an ID typed into the URL by hand is not used (no filter), and the page says why
    by_url = await client.get(f"/ops/audit?citizen_id={citizen}")
    assert by_url.status_code == 200
    assert citizen not in by_url.text
    assert by_url.text.count('class="outcome-ok"') == 2, "not filtered"
    assert "Số định danh không được đặt trên địa chỉ trang" in by_url.text
    # the ops API: the ID only in a POST body (with the session, the CSRF header as well)
    refused = await client.get("/ops/api/audit", params={"subject": citizen})
    assert refused.status_code == 400
    assert citizen not in refused.text
    found = await client.post(
        "/ops/api/audit/search", json={"subject": citizen}, headers={"X-CSRF-Token": token}
    )
    assert found.status_code == 200, found.text
    assert [i["dossier_code"] for i in found.json()["items"]] == ["000.00.19.H47-260105-0009"]
    assert citizen not in found.text
    no_token = await client.post("/ops/api/audit/search", json={"subject": citizen})
    assert no_token.status_code == 401


async def test_dossier_page_shows_the_timeline_of_that_dossier(app: Litestar) -> None:
    async with _client(app) as client:
        job_id = await _dead_letter(app, "000.00.19.H47-260105-0042")
        await _sign_in(client, READ_KEY)
        page = await client.get("/ops/dossier?code=000.00.19.H47-260105-0042")
        assert page.status_code == 200
        assert "national_portal.sync_dossier: lần thử bị lỗi" in page.text
        assert "national_portal.sync_dossier: lỗi, đã thôi thử" in page.text
        assert "attempt failed" not in page.text, "no English on the Vietnamese page"
        english = await client.get("/ops/dossier?code=000.00.19.H47-260105-0042&lang=en")
        assert "national_portal.sync_dossier attempt failed" in english.text
        assert "portal: bad code" in page.text
        assert job_id not in (await client.get("/ops/dossier?code=000.00.19.H47-260105-0043")).text


async def test_the_system_filter_pages_past_its_scan_window(
    app: Litestar, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A system's dead letters behind many of other systems' are reached through "older"."""
    import html

    import gateway.dead_letters

    monkeypatch.setattr(gateway.dead_letters, "SCAN_LIMIT", 50)
    store = app.state.runtime.store
    wanted = []
    async with _client(app) as client:
        for kind, n in (("population_db.verify", 2), ("national_portal.sync_dossier", 120)):
            for i in range(n):
                job, _ = await store.jobs.enqueue(NewJob(kind, {}, ordering_key=f"{kind}-{i}"))
                leased = await store.jobs.lease("t", visibility=60, now=time.time())
                assert leased is not None and leased.id == job.id
                await store.jobs.dead_letter(
                    job.id, "t", now=time.time(), attempt=Attempt(at=time.time(), error="x")
                )
                if kind.startswith("population_db"):
                    wanted.append(job.id)
        await _sign_in(client, READ_KEY)
        url = "/ops/dead-letters?system=population_db"
        first = await client.get(url)
        assert 'id="no-dead-letters"' in first.text, "nothing of it among the 50 newest"
        found: set[str] = set()
        for _ in range(5):
            page = await client.get(url)
            found |= {j for j in wanted if f'data-job-id="{j}"' in page.text}
            older = re.search(r'<a id="older" href="([^"]+)"', page.text)
            if older is None:
                break
            url = "/ops/dead-letters" + html.unescape(older.group(1))
        assert found == set(wanted)
        # the ops API the same way, its cursor in a header (its body stays a list)
        api: list[str] = []
        params = {"system": "population_db", "limit": "50"}
        for _ in range(5):
            r = await client.get("/ops/api/dead-letters", params=params)
            assert r.status_code == 200
            api += [d["job"]["id"] for d in r.json()]
            if "x-next-before" not in r.headers:
                break
            params["before"] = r.headers["x-next-before"]
        assert api == wanted[::-1]
