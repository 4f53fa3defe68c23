"""The ops dashboard in a real browser (issue 7, "How we will know").

One ``gateway serve --sandbox`` for the whole file (conftest.py), a fresh browser context per
test. The scenarios: without a session every page redirects to sign-in and the ops API is 401;
sign in; both national systems up; a fault injected in the sandbox turns one down with its
reason while the overview refreshes itself (no reload); a business rejection by the national
portal shows under dead letters, with the job held back behind it; replay after the cause is
fixed clears it and the jobs succeed; the dossier's timeline shows it all; the exchange log
finds the applicant by citizen ID without showing the number; English; CSRF-less posts are
refused; sign-out. Screenshots of each page land in ``artifacts/screenshots/``.
"""

from __future__ import annotations

import re
import time
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import httpx
import pytest
from dashboard_rig import PROBE_INTERVAL, Gateway, reload_until, screenshot, sign_in
from playwright.sync_api import Page, expect

pytestmark = pytest.mark.browser

VN_TZ = ZoneInfo("Asia/Ho_Chi_Minh")
APPLICANT_ID = "049190001234"
#: the overview refreshes its fragment this often (``data-interval`` on the page, checked below)
REFRESH_SECONDS = 5.0
#: how long the overview may take to show a new state, as docs/dashboard.md says: the next
#: probe finds it within the probe interval, the page shows it at its next refresh
STATE_CHANGE_BUDGET = PROBE_INTERVAL + REFRESH_SECONDS


def dossier_code(seq: int) -> str:
    return f"000.00.19.H47-{datetime.now(VN_TZ):%y%m%d}-{seq:04d}"


def dossier_body(procedure_code: str, applicant_id: str) -> dict[str, Any]:
    received = datetime.now(VN_TZ).replace(hour=0, minute=0, second=1, microsecond=0)
    return {
        "procedure_code": procedure_code,
        "procedure_name": "Thủ tục chưa công bố trên Cổng quốc gia",
        "receipt_number": "BN-0001",
        "applicant": {
            "kind": "citizen",
            "name": "Trần Thị Bình",
            "id_number": applicant_id,
            "email": "binh@example.vn",
            "phone": "0905000111",
        },
        "summary": "Đề nghị cấp Phiếu lý lịch tư pháp số 1",
        "received_at": received.isoformat(),
        "due_at": (received + timedelta(days=10)).isoformat(),
        "status": "received",
        "channel": "online",
    }


def progress_record(status: str, n: int) -> dict[str, Any]:
    received = datetime.now(VN_TZ).replace(hour=0, minute=0, second=1, microsecond=0)
    return {
        "officer_name": "Lê Văn Cường",
        "officer_title": "Chuyên viên",
        "department": "Phòng Hành chính tư pháp",
        "content": f"Bước xử lý {n}",
        "processed_at": (received + timedelta(seconds=1 + n)).isoformat(),
        "status": status,
    }


def rejected_dossier(
    gateway: Gateway, seq: int, procedure_code: str, applicant_id: str = APPLICANT_ID
) -> tuple[str, str, str]:
    """A dossier whose procedure code is well formed (our validation accepts it) but not in
    the portal's catalogue: the portal refuses the sync for good, so the job dead-letters.
    A progress command follows, held back behind it. Returns (code, sync job, progress job)."""
    code = dossier_code(seq)
    with httpx.Client(base_url=gateway.base, headers=gateway.api_headers, timeout=10) as http:
        r = http.put(f"/v1/dossiers/{code}", json=dossier_body(procedure_code, applicant_id))
        assert r.status_code == 202, r.text
        sync_job = r.json()["job_id"]
        r = http.post(
            f"/v1/dossiers/{code}/progress", json={"records": [progress_record("processing", 1)]}
        )
        assert r.status_code == 202, r.text
        return code, sync_job, r.json()["job_id"]


def job_state(gateway: Gateway, job_id: str) -> dict[str, Any]:
    r = httpx.get(f"{gateway.base}/v1/jobs/{job_id}", headers=gateway.api_headers, timeout=10)
    r.raise_for_status()
    job: dict[str, Any] = r.json()
    return job


def wait_job(gateway: Gateway, job_id: str, state: str, timeout: float = 20.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job = job_state(gateway, job_id)
        if job["state"] == state:
            return job
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} is {job['state']}, not {state}: {job}")
        time.sleep(0.2)


def system_card(page: Page, name: str) -> Any:
    return page.locator(f'article.system[data-system="{name}"]')


# ---------------------------------------------------------------- access


def test_without_a_session_every_page_redirects_to_sign_in_and_the_api_is_401(
    page: Page, gateway: Gateway
) -> None:
    for path in [
        "/ops",
        "/ops/dead-letters",
        "/ops/audit?outcome=error",
        "/ops/dossier?code=000.00.19.H47-260105-0001",
        "/ops/partials/overview",
    ]:
        page.goto(path)
        parts = urlsplit(page.url)
        assert parts.path == "/ops/login", (path, page.url)
        assert parse_qs(parts.query)["next"] == [path]
        expect(page.locator("#api_key")).to_be_visible()
    expect(page.locator("h1")).to_have_text("Đăng nhập")
    screenshot(page, "01-sign-in")
    for path in ["/ops/api/dead-letters", "/ops/api/audit", "/ops/api/queues"]:
        r = page.request.get(path)
        assert r.status == 401, path
        assert r.headers["content-type"].startswith("application/problem+json")
    r = page.request.post("/ops/api/dead-letters/any/replay")
    assert r.status == 401
    # a wrong key is refused on the form, with the reason
    page.fill("#api_key", "dvcgw_not-a-key")
    page.click("#sign-in")
    expect(page.locator(".flash.error")).to_have_text("Khóa không hợp lệ.")
    assert urlsplit(page.url).path == "/ops/login"
    # a sign-in posted without the form's CSRF token (login CSRF: another site signing this
    # browser in with its own key) is refused, even with a good key
    r = page.request.post("/ops/login", form={"api_key": gateway.ops_key, "next": "/ops"})
    assert "flash=csrf_failed" in r.url, r.url
    assert page.request.get("/ops/api/queues").status == 401


def test_sign_in_shows_both_systems_up_and_the_queues(page: Page, gateway: Gateway) -> None:
    sign_in(page, gateway)
    expect(page.locator("html")).to_have_attribute("lang", "vi")
    expect(page.locator(".who b")).to_have_text("ops-e2e")
    for name in ("population_db", "national_portal"):
        card = system_card(page, name)
        expect(card).to_have_attribute("data-state", "up", timeout=STATE_CHANGE_BUDGET * 1000)
        expect(card.locator(".badge")).to_have_text("Hoạt động")
    expect(system_card(page, "population_db").locator("h3")).to_have_text(
        "Cơ sở dữ liệu quốc gia về dân cư"
    )
    expect(system_card(page, "national_portal").locator("h3")).to_have_text(
        "Cổng Dịch vụ công quốc gia"
    )
    expect(page.locator("#queues")).to_be_visible()
    # times in Vietnam's format, dd/MM/yyyy HH:mm:ss
    probe_time = system_card(page, "national_portal").locator("dd.probe-at")
    expect(probe_time).to_have_text(re.compile(r"^\d\d/\d\d/\d{4} \d\d:\d\d:\d\d$"))
    screenshot(page, "02-overview-up")


def test_a_sandbox_fault_turns_the_system_down_with_its_reason_without_a_reload(
    page: Page, gateway: Gateway
) -> None:
    sign_in(page, gateway)
    card = system_card(page, "population_db")
    expect(card).to_have_attribute("data-state", "up", timeout=STATE_CHANGE_BUDGET * 1000)
    # the refresh period the budget counts on is the page's own
    expect(page.locator("#overview")).to_have_attribute(
        "data-interval", str(int(REFRESH_SECONDS * 1000))
    )
    # anything a full reload would wipe out
    page.evaluate("window.__sameDocument = true")
    r = httpx.put(
        f"{gateway.sandbox}/_sandbox/faults/population_db/*",
        json={"error_rate": 1.0, "status": 503},
        timeout=5,
    )
    r.raise_for_status()
    try:
        # the check of the budget: this expect fails once STATE_CHANGE_BUDGET has passed
        expect(card).to_have_attribute(
            "data-state", re.compile("^(degraded|down)$"), timeout=STATE_CHANGE_BUDGET * 1000
        )
        # the reason, in Vietnamese: the probe failed, the circuit opened or calls fail
        reason = card.locator(".reason")
        expect(reason).to_have_attribute(
            "data-reason-code", re.compile("^(probe_failed|circuit_open|errors_down)$")
        )
        expect(reason).to_contain_text(
            re.compile(r"Kiểm tra thất bại: .*503|Cầu dao mở|lượt gọi bị lỗi")
        )
        expect(card.locator(".badge")).to_have_text(re.compile("^(Ngừng|Suy giảm)$"))
        assert page.evaluate("window.__sameDocument") is True, "the page was reloaded"
        # the other system is not affected
        expect(system_card(page, "national_portal")).to_have_attribute("data-state", "up")
        # the JSON view agrees
        health = httpx.get(
            f"{gateway.base}/health/adapters", headers=gateway.ops_headers, timeout=5
        ).json()
        by_name = {s["name"]: s for s in health["systems"]}
        assert by_name["population_db"]["state"] in ("degraded", "down")
        assert by_name["population_db"]["reason"]
        assert health["status"] in ("degraded", "down")
        screenshot(page, "03-overview-fault")
    finally:
        httpx.delete(f"{gateway.sandbox}/_sandbox/faults/population_db", timeout=5)


# ---------------------------------------------------------------- dead letters and replay


def test_a_rejection_is_a_dead_letter_replay_clears_it_and_the_timeline_shows_it(
    page: Page, gateway: Gateway
) -> None:
    procedure = "2.999701"
    code, sync_job, held_job = rejected_dossier(gateway, 701, procedure)
    sign_in(page, gateway)
    card_selector = f'article.dead-letter[data-job-id="{sync_job}"]'
    card = reload_until(page, "/ops/dead-letters", card_selector)
    expect(card.locator("h3")).to_have_text("national_portal.sync_dossier")
    expect(card.locator(".reason")).to_contain_text(f"Mã TTHC {procedure} không tồn tại")
    # the progress command waits behind it, in order
    expect(card.locator("details", has_text="Việc bị giữ lại phía sau")).to_contain_text(held_job)
    assert job_state(gateway, held_job)["state"] == "queued"
    # the filter by system finds it; another system's filter does not
    page.select_option("select[name=system]", "national_portal")
    page.click(".filters button[type=submit]")
    expect(page.locator(card_selector)).to_have_count(1)
    page.select_option("select[name=system]", "population_db")
    page.click(".filters button[type=submit]")
    expect(page.locator(card_selector)).to_have_count(0)
    page.goto("/ops/dead-letters")
    screenshot(page, "04-dead-letters")

    # replay asks first: cancelling changes nothing
    messages: list[str] = []

    def dismiss(dialog: Any) -> None:
        messages.append(dialog.message)
        dialog.dismiss()

    page.once("dialog", dismiss)
    page.locator(card_selector).locator("button.replay").click()
    page.wait_for_timeout(300)
    assert messages and "Chạy lại việc này?" in messages[0]
    assert job_state(gateway, sync_job)["state"] == "dead"

    # the cause is fixed on the national side: the procedure gets published
    r = httpx.post(
        f"{gateway.sandbox}/national_portal/_state/procedures",
        json={"MaTTHC": procedure, "TenTTHC": "Thủ tục mới công bố"},
        timeout=5,
    )
    assert r.json()["error_code"] == 0, r.text
    page.once("dialog", lambda dialog: dialog.accept())
    page.locator(card_selector).locator("button.replay").click()
    expect(page.locator(".flash")).to_have_text("Đã đưa việc vào hàng đợi để chạy lại.")
    expect(page.locator(card_selector)).to_have_count(0)
    wait_job(gateway, sync_job, "succeeded")
    wait_job(gateway, held_job, "succeeded")
    screenshot(page, "05-dead-letters-replayed")

    # the dossier's timeline: accepted, refused, replayed by the operator, then synced
    page.goto("/ops/dossier")
    page.fill("input[name=code]", code)
    page.click(".filters button[type=submit]")
    timeline = page.locator("#timeline")
    expect(timeline).to_contain_text("dossier.accepted")
    expect(timeline.locator("li.outcome-rejected", has_text="DongBoHoSoMC")).to_have_count(1)
    expect(timeline).to_contain_text("cán bộ vận hành đã chạy lại")
    expect(timeline.locator("li.outcome-ok", has_text="DongBoHoSoMC")).to_have_count(1)
    expect(timeline.locator("li.outcome-ok", has_text="CapNhatTienDoHoSoMC")).to_have_count(1)
    jobs = page.locator("#dossier-jobs tbody tr")
    expect(jobs).to_have_count(2)
    expect(jobs.filter(has_text="Thành công")).to_have_count(2)
    expect(jobs.filter(has_text="không tồn tại")).to_have_count(0)  # no error once succeeded
    screenshot(page, "06-dossier-timeline")

    # the exchange log finds the applicant by citizen ID; the number is never on the page
    page.goto("/ops/audit")
    expect(page.locator("#chain-status")).to_contain_text("Chuỗi băm toàn vẹn")
    page.fill("input[name=citizen_id]", APPLICANT_ID)
    page.click("#audit-filters button[type=submit]")
    expect(page.locator("#citizen-filter")).to_be_visible()
    rows = page.locator("#audit-records tbody tr")
    expect(rows.filter(has_text=code).first).to_be_visible()
    assert APPLICANT_ID not in page.url
    assert APPLICANT_ID not in page.content()
    expect(page.locator("input[name=citizen_id]")).to_have_value("")
    for text in rows.all_inner_texts():
        assert code in text, f"a record of another person was listed: {text}"
    screenshot(page, "07-exchange-log-citizen")
    # times are typed the Vietnamese way; a malformed one is said so, not silently dropped
    page.fill("input[name=since]", datetime.now(VN_TZ).strftime("%d/%m/%Y 00:00"))
    page.click("#audit-filters button[type=submit]")
    expect(rows.filter(has_text=code).first).to_be_visible()
    expect(page.locator("#bad-time")).to_have_count(0)
    page.fill("input[name=since]", "31/02/2026")
    page.click("#audit-filters button[type=submit]")
    expect(page.locator("#bad-time")).to_be_visible()
    page.fill("input[name=since]", "")
    # the replay itself is in the log, with the operator's client id (it names the job, not
    # the dossier: filtered by system and outcome here)
    page.click("#citizen-filter a")
    page.select_option("select[name=system]", "national_portal")
    page.fill("input[name=outcome]", "ok")
    page.click("#audit-filters button[type=submit]")
    expect(page.locator("#citizen-filter")).to_have_count(0)
    replays = rows.filter(has_text="dlq.replay").filter(has_text="ops-e2e")
    expect(replays).to_have_count(1)


def test_posts_without_the_csrf_token_are_refused(page: Page, gateway: Gateway) -> None:
    _, sync_job, _ = rejected_dossier(gateway, 702, "2.999702", "049190009999")
    sign_in(page, gateway)
    card_selector = f'article.dead-letter[data-job-id="{sync_job}"]'
    reload_until(page, "/ops/dead-letters", card_selector)

    # the form, its hidden token removed
    page.locator(card_selector).locator("form[action$='/replay'] input[name=csrf_token]").evaluate(
        "el => el.remove()"
    )
    page.once("dialog", lambda dialog: dialog.accept())
    page.locator(card_selector).locator("button.replay").click()
    expect(page.locator(".flash.error")).to_have_text(
        "Phiên làm việc không hợp lệ, hãy tải lại trang."
    )
    assert job_state(gateway, sync_job)["state"] == "dead"

    # posted straight, with the session cookie: no token, a forged one
    forms: list[dict[str, str | float | bool]] = [{}, {"csrf_token": "forged"}]
    for form in forms:
        for action in ("replay", "discard"):
            r = page.request.post(f"/ops/dead-letters/{sync_job}/{action}", form=form)
            assert "flash=csrf_failed" in r.url, (action, form, r.url)
    r = page.request.post("/ops/logout", form={})
    assert "flash=csrf_failed" in r.url
    # the ops API takes the cookie for reading only; a change needs the token in a header
    assert page.request.get("/ops/api/dead-letters").status == 200
    r = page.request.post(f"/ops/api/dead-letters/{sync_job}/replay")
    assert r.status == 401, r.text()
    assert "X-CSRF-Token" in r.json()["detail"]
    r = page.request.delete(f"/ops/api/dead-letters/{sync_job}", headers={"X-CSRF-Token": "x"})
    assert r.status == 401
    assert job_state(gateway, sync_job)["state"] == "dead"
    expect(page.locator(card_selector)).to_have_count(1)
    # with the session's token in the header the API call goes through (the cause is not
    # fixed, so the job dies again, its attempts kept)
    token = page.locator("input[name=csrf_token]").first.get_attribute("value")
    assert token
    r = page.request.post(
        f"/ops/api/dead-letters/{sync_job}/replay", headers={"X-CSRF-Token": token}
    )
    assert r.status == 200, r.text()
    assert r.json()["state"] == "queued"
    assert wait_job(gateway, sync_job, "dead")["attempt_count"] == 2

    # with the token, discard works (and asks first)
    page.goto("/ops/dead-letters")
    page.once("dialog", lambda dialog: dialog.accept())
    page.locator(card_selector).locator("button.discard").click()
    expect(page.locator(".flash")).to_have_text("Đã hủy việc.")
    assert job_state(gateway, sync_job)["state"] == "discarded"


# ---------------------------------------------------------------- language, sign-out


def test_the_english_switch_and_sign_out(page: Page, gateway: Gateway) -> None:
    sign_in(page, gateway)
    expect(page.locator("header.top nav")).to_contain_text("Tổng quan")
    page.click("#lang-switch")
    expect(page.locator("html")).to_have_attribute("lang", "en")
    expect(page.locator("header.top nav")).to_contain_text("Overview")
    expect(page.locator("h2").first).to_have_text("National systems")
    expect(system_card(page, "national_portal").locator(".badge")).to_have_text("Up")
    expect(system_card(page, "national_portal").locator("h3")).to_have_text(
        "National Public Service Portal"
    )
    expect(system_card(page, "national_portal").locator("dt").first).to_have_text(
        "Latency p50 / p95 (5 min)"
    )
    screenshot(page, "08-overview-english")
    # the choice holds on the other pages and keeps their filters when switched back
    page.click("header.top nav >> text=Dead letters")
    expect(page.locator("h1")).to_have_text("Dead letters")
    code = dossier_code(701)
    page.goto(f"/ops/dossier?code={code}")
    expect(page.locator("h2").first).to_contain_text("Timeline")
    screenshot(page, "09-dossier-english")
    page.click("#lang-switch")
    expect(page.locator("h1")).to_have_text("Hồ sơ")
    assert parse_qs(urlsplit(page.url).query)["code"] == [code]
    # the refreshed overview fragment speaks the chosen language too
    page.goto("/ops")
    expect(page.locator("h2").first).to_have_text("Hệ thống quốc gia")

    page.click("#sign-out")
    page.wait_for_url(re.compile(r"/ops/login$"))
    page.goto("/ops")
    assert urlsplit(page.url).path == "/ops/login"
    assert page.request.get("/ops/api/queues").status == 401
