"""Logs carry request ids and never personal data or secrets in clear; metrics are exposed.

Masking is shown on captured log output of the real configuration: structlog lines, standard
library lines (as uvicorn and httpx write them) and the app's own access log.
"""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from litestar import Litestar, get
from litestar.testing import AsyncTestClient

from gateway.app import create_app
from gateway.observability import (
    PiiMasker,
    configure_logging,
    mask_text,
    request_id_var,
    valid_request_id,
)
from gateway.security import generate_api_key, hash_api_key
from gateway.settings import ClientSettings, LoggingSettings, Settings

CCCD = "079203004567"  # 12-digit citizen ID
CMND = "012345678"  # 9-digit legacy ID
PHONE = "0912345678"
EMAIL = "nguyen.van.a@example.vn"
NAME = "Nguyễn Văn An"


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    buffer = io.StringIO()
    configure_logging(LoggingSettings(level="DEBUG", format="json"), stream=buffer)
    yield buffer
    configure_logging(LoggingSettings(), stream=sys.stderr)


def lines(buffer: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in buffer.getvalue().splitlines() if line.strip()]


def test_pii_is_masked_in_structlog_and_stdlib_lines(captured: io.StringIO) -> None:
    log = structlog.get_logger("test.pii")
    log.info(
        f"verifying citizen {CCCD}",
        legacy_id=CMND,
        phone=PHONE,
        contact=f"call +84 912 345 678 or write to {EMAIL}",
        full_name=NAME,
        applicant={"HoVaTen": NAME, "address": "12 Trần Phú", "id_number": CCCD},
        numeric_id=int(CCCD),
    )
    # a foreign library logging through the standard library (uvicorn's access log, httpx)
    logging.getLogger("uvicorn.access").info(
        '127.0.0.1:5000 - "GET /v1/citizens/%s?phone=%s HTTP/1.1" 200', CCCD, PHONE
    )
    output = captured.getvalue()
    for secret in (CCCD, CMND, PHONE, "912 345 678", EMAIL, NAME, "Trần Phú"):
        assert secret not in output, secret
    first, second = lines(captured)
    assert first["event"] == "verifying citizen **********67"
    assert first["legacy_id"] == "*******78"
    assert first["phone"] == "********78"
    assert first["contact"].endswith("***@example.vn")
    assert first["full_name"] == "***"
    assert first["applicant"] == {"HoVaTen": "***", "address": "***", "id_number": "**********67"}
    assert first["numeric_id"] == "*********67"  # 79203004567: the int lost its leading 0
    assert second["logger"] == "uvicorn.access"
    assert "/v1/citizens/**********67?phone=********78" in second["event"]


def test_masking_leaves_ordinary_numbers_and_ids_alone() -> None:
    ulid = "01HZY3K8Q8V0J6Z4D4Q6S9T7XA"
    for text in (
        "took 1234 ms",
        "epoch 1767225600",
        f"request {ulid}",
        "dossier 000.00.10.H12-250101-0001",
        "hex abc123456789012def",
        "latency 0.123456789",
    ):
        assert mask_text(text) == text
    assert PiiMasker()._mask(1767225600) == 1767225600


def test_configured_masked_fields_are_honoured(captured: io.StringIO) -> None:
    configure_logging(
        LoggingSettings(level="DEBUG", format="json", masked_fields=["mother_name"]),
        stream=captured,
    )
    structlog.get_logger("t").info("x", mother_name="Lê Thị B", MOTHER_NAME="Lê Thị C")
    (line,) = lines(captured)
    assert line["mother_name"] == line["MOTHER_NAME"] == "***"


def test_secrets_are_dropped_by_name_and_by_shape(captured: io.StringIO) -> None:
    key = generate_api_key()
    log = structlog.get_logger("t")
    log.info(
        "upstream call",
        headers={"Authorization": "Bearer abcdef123456", "x-api-key": key, "accept": "json"},
        password="hunter2-hunter2",
        token=7,  # a fencing token is a counter, not a credential
        url="https://user:pa55word@upstream.invalid/token?access_token=tok123456&x=1",
        note=f"the key is {key}",
    )
    output = captured.getvalue()
    for secret in (key, "abcdef123456", "hunter2-hunter2", "pa55word", "tok123456"):
        assert secret not in output
    (line,) = lines(captured)
    assert line["headers"]["accept"] == "json"
    assert line["headers"]["Authorization"] == "[REDACTED]"
    assert line["password"] == "[REDACTED]"
    assert line["token"] == 7
    assert "x=1" in line["url"]


def test_request_id_from_the_contextvar_is_on_every_line(captured: io.StringIO) -> None:
    token = request_id_var.set("job-req-42")
    try:
        structlog.get_logger("t").info("inside a job")
        logging.getLogger("foreign").warning("foreign line")
    finally:
        request_id_var.reset(token)
    structlog.get_logger("t").info("outside")
    inside, foreign, outside = lines(captured)
    assert inside["request_id"] == foreign["request_id"] == "job-req-42"
    assert "request_id" not in outside


def test_console_rendering_on_request() -> None:
    buffer = io.StringIO()
    configure_logging(LoggingSettings(format="console"), stream=buffer)
    try:
        structlog.get_logger("t").info("hello", phone=PHONE)
    finally:
        configure_logging(LoggingSettings(), stream=sys.stderr)
    text = buffer.getvalue()
    assert "hello" in text
    assert PHONE not in text
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)


def test_request_ids_from_callers_are_validated() -> None:
    assert valid_request_id("abc-123_x.y:z") == "abc-123_x.y:z"
    assert valid_request_id("a" * 129) is None
    assert valid_request_id("line\nbreak") is None
    assert valid_request_id("") is None


KEY = generate_api_key()


@get("/_test/log-pii", opt={"scopes": ["ops:read"]})
async def log_pii() -> dict[str, str]:
    structlog.get_logger("test.handler").info("handler saw", id_number=CCCD, email=EMAIL)
    return {"ok": "yes"}


async def test_app_lines_share_the_request_id_and_metrics_count_requests(
    tmp_path: Path, captured: io.StringIO
) -> None:
    settings = Settings(
        store={"sqlite_path": tmp_path / "gateway.db"},
        security={"clients_file": tmp_path / "clients.toml"},
        clients=[ClientSettings(id="ops", key_sha256=hash_api_key(KEY), scopes=["ops:read"])],
    )
    app: Litestar = create_app(settings)
    app.register(log_pii)
    configure_logging(LoggingSettings(level="DEBUG", format="json"), stream=captured)
    async with AsyncTestClient(app) as c:
        r = await c.get("/_test/log-pii", headers={"X-API-Key": KEY, "X-Request-ID": "rid-77"})
        assert r.headers["x-request-id"] == "rid-77"
        metrics = await c.get("/metrics", headers={"X-API-Key": KEY})
    records = [line for line in lines(captured) if line.get("request_id") == "rid-77"]
    events = {line["event"]: line for line in records}
    assert events["handler saw"]["id_number"] == "**********67"
    assert events["handler saw"]["client_id"] == "ops"
    access = events["http.request"]
    assert access["route"] == "/_test/log-pii"
    assert access["status"] == 200
    assert CCCD not in captured.getvalue()
    assert EMAIL not in captured.getvalue()
    assert metrics.status_code == 200
    assert metrics.headers["content-type"].startswith("text/plain")
    assert (
        'gateway_http_requests_total{method="GET",route="/_test/log-pii",status="200"}'
        in metrics.text
    )
    assert "gateway_http_request_duration_seconds_bucket" in metrics.text


async def test_readiness_follows_the_store(tmp_path: Path) -> None:
    settings = Settings(
        store={"sqlite_path": tmp_path / "gateway.db"},
        security={"clients_file": tmp_path / "clients.toml"},
    )
    app = create_app(settings)
    async with AsyncTestClient(app) as c:
        assert (await c.get("/health/ready")).status_code == 200
        runtime = app.state.runtime
        runtime.started = False  # what stop() does first on shutdown
        not_ready = await c.get("/health/ready")
        runtime.started = True
    assert not_ready.status_code == 503
    assert not_ready.json() == {"status": "not-ready"}
    async with AsyncTestClient(app) as c:
        store = app.state.runtime.store
        await store.close()  # the store goes away under a running app
        gone = await c.get("/health/ready")
        live = await c.get("/health/live")
        await store.open()  # and comes back, so shutdown can finish its work
    assert gone.status_code == 503
    assert live.status_code == 200
