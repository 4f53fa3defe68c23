"""The identity API's resilience and per-deployment options, over real HTTP.

Each test runs its own gateway and sandbox (``support.population_db_rig``): these tests open the
circuit, expire tokens, change credentials or configure the adapter differently, so they do not
share. Timeouts, hangs and error statuses come from the sandbox's fault injector; attempts are
counted on the far side (the sandbox's counters, the simulator's own), never by instrumenting
our client. Logs are captured raw for the whole module and checked for personal data last.
"""

from __future__ import annotations

import asyncio
import logging
import unicodedata
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from support.population_db_rig import (
    FULL,
    LogCapture,
    Rig,
    population_db_rig,
    purpose,
)
from support.uvicorn_server import serving

from gateway.app import create_app
from gateway.outbound import INSTANT_BACKOFF_ENV
from gateway.store.base import AuditQuery
from signing.keys import ensure_dev_pki

_CAPTURE = LogCapture()
_USED: set[str] = set()


@pytest.fixture(scope="module", autouse=True)
def capture_logs() -> Iterator[LogCapture]:
    # each rig attaches the handler once its sandbox is built; detached at the end
    yield _CAPTURE
    logging.getLogger().removeHandler(_CAPTURE)


@pytest.fixture(autouse=True)
def real_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(INSTANT_BACKOFF_ENV, raising=False)


def make_rig(tmp_path: Path, **kw: Any) -> Any:
    return population_db_rig(tmp_path, logging_level="DEBUG", log_handler=_CAPTURE, **kw)


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    async with make_rig(tmp_path) as r:
        yield r
        _USED.update(r.used)


def problem(response: Any) -> dict[str, Any]:
    assert response.headers["content-type"].startswith("application/problem+json"), response.text
    body: dict[str, Any] = response.json()
    return body


def _unaccent(text: str) -> str:
    bare = "".join(c for c in unicodedata.normalize("NFD", text) if unicodedata.category(c) != "Mn")
    return bare.replace("đ", "d").replace("Đ", "D")


# ---------------------------------------------------------------- per-deployment options


async def test_a_deployment_may_ignore_diacritics(tmp_path: Path) -> None:
    async with make_rig(tmp_path, adapter={"ignore_diacritics": True}) as rig:
        citizen = next(p for p in rig.population.people if not p.HoVaTen.day_du().isascii())
        unaccented = _unaccent(citizen.HoVaTen.day_du()).upper()
        r = await rig.verify(rig.verify_body(citizen, full_name=unaccented))
        assert r.status_code == 200, r.text
        assert r.json()["match"] is True
        _USED.update(rig.used)


async def test_unsigned_answers_are_accepted_when_the_deployment_says_so(tmp_path: Path) -> None:
    async with make_rig(
        tmp_path, adapter={"verify_responses": False, "sign_requests": False}
    ) as rig:
        rig.simulator.controls.misbehave("unsigned", count=None)
        r = await rig.verify(rig.verify_body(rig.population.pick(8)))
        assert r.status_code == 200, r.text
        assert r.json()["match"] is True
        assert rig.simulator.controls.signed_requests_verified == 0
        _USED.update(rig.used)


async def test_a_pinned_certificate_refuses_another_signer(tmp_path: Path) -> None:
    # pin the gateway's own certificate: the registry's (valid, same CA) must now be refused
    pki = ensure_dev_pki(tmp_path / "pki", ["population_db"])
    peers = {"population_db": {"pinned_certificates": [str(pki.gateway.cert_path)]}}
    async with make_rig(tmp_path, signing_peers=peers) as rig:
        r = await rig.verify(rig.verify_body(rig.population.pick(9)))
        assert r.status_code == 502
        assert problem(r)["signature_problem"] == "signature-untrusted"
        adapter = rig.runtime.registry.instances["population_db"]
        days = adapter.certificate_days_left()
        assert days is not None and days > 300  # the pinned certificate's expiry, for ops
        _USED.update(rig.used)


async def test_the_registrys_pinned_certificate_is_accepted(tmp_path: Path) -> None:
    pki = ensure_dev_pki(tmp_path / "pki", ["population_db"])
    pinned = str(pki.simulator("population_db").cert_path)
    peers = {"population_db": {"pinned_certificates": [pinned]}}
    async with make_rig(tmp_path, signing_peers=peers) as rig:
        r = await rig.verify(rig.verify_body(rig.population.pick(9)))
        assert r.status_code == 200, r.text
        assert r.json()["match"] is True
        _USED.update(rig.used)


# ---------------------------------------------------------------- resilience


async def test_a_timeout_is_retried(rig: Rig) -> None:
    rig.fault(timeout_rate=1.0, count=1)
    r = await rig.verify(rig.verify_body(rig.population.pick(10)))
    assert r.status_code == 200, r.text
    assert r.json()["match"] is True
    assert rig.attempts() == 2


async def test_a_registry_that_never_answers_is_504(rig: Rig) -> None:
    rig.fault(timeout_rate=1.0)
    r = await rig.verify(rig.verify_body(rig.population.pick(11)))
    assert r.status_code == 504
    assert problem(r)["type"].endswith(":upstream-timeout")
    assert rig.attempts() == 3  # max_attempts


async def test_the_circuit_opens_and_recovers(rig: Rig) -> None:
    citizen = rig.population.pick(12)
    rig.fault(error_rate=1.0, status=503)
    r = await rig.verify(rig.verify_body(citizen))
    assert r.status_code == 503
    assert problem(r)["type"].endswith(":upstream-unavailable")
    assert rig.attempts() == 3  # three failures: the threshold

    # open: the gateway answers at once, without calling the registry
    r = await rig.verify(rig.verify_body(citizen))
    assert r.status_code == 503
    assert problem(r)["type"].endswith(":circuit-open")
    assert int(r.headers["retry-after"]) >= 1
    assert rig.attempts() == 3

    # the registry recovers; after the open period one probe closes the circuit
    rig.clear_faults()
    await asyncio.sleep(1.6)
    r = await rig.verify(rig.verify_body(citizen))
    assert r.status_code == 200, r.text
    assert r.json()["match"] is True
    r = await rig.verify(rig.verify_body(citizen))
    assert r.status_code == 200


async def test_the_token_expires_and_is_refreshed(rig: Rig) -> None:
    controls = rig.simulator.controls
    citizen = rig.population.pick(13)
    # from now on the platform issues one-second tokens; forget the one the probe fetched
    controls.token_ttl = 1.0
    controls.revoke_tokens()
    issued = controls.tokens_issued
    assert (await rig.verify(rig.verify_body(citizen))).status_code == 200
    assert (await rig.verify(rig.verify_body(citizen))).status_code == 200
    assert controls.tokens_issued == issued + 1  # cached in the store, reused
    await asyncio.sleep(1.1)
    before = rig.attempts()
    assert (await rig.verify(rig.verify_body(citizen))).status_code == 200
    assert controls.tokens_issued == issued + 2
    # renewed before it expired: the call went through at the first attempt, no 401 first
    assert rig.attempts() == before + 1


async def test_a_refused_token_is_refreshed_once(rig: Rig) -> None:
    controls = rig.simulator.controls
    citizen = rig.population.pick(14)
    assert (await rig.verify(rig.verify_body(citizen))).status_code == 200
    controls.revoke_tokens()
    r = await rig.verify(rig.verify_body(citizen))
    assert r.status_code == 200, r.text
    assert controls.tokens_issued == 2
    assert rig.attempts("token") == 2


async def test_wrong_client_credentials_are_502_auth_failed(tmp_path: Path) -> None:
    async with make_rig(tmp_path) as rig:
        rig.simulator._credentials = ("dvc-gateway", "another-secret")
        rig.simulator.controls.revoke_tokens()  # the token the probe fetched is refused too
        r = await rig.verify(rig.verify_body(rig.population.pick(15)))
        assert r.status_code == 502
        assert problem(r)["type"].endswith(":upstream-auth-failed")
        assert rig.simulator.controls.soap_requests == 0
        _USED.update(rig.used)


async def test_tokens_are_shared_by_instances_through_redis(tmp_path: Path, redis_url: str) -> None:
    async with make_rig(tmp_path, backend="redis", redis_url=redis_url) as rig:
        citizen = rig.population.pick(16)
        assert (await rig.verify(rig.verify_body(citizen))).status_code == 200
        # a second gateway instance on the same Redis uses the token the first one fetched
        second = create_app(rig.settings, sandbox_url=rig.sandbox_url)
        async with serving(second) as url:
            r = await rig.http.post(
                f"{url}/v1/citizens/verify", json=rig.verify_body(citizen), headers=FULL.headers
            )
            assert r.status_code == 200, r.text
        assert rig.simulator.controls.tokens_issued == 1
        _USED.update(rig.used)


# ---------------------------------------------------------------- the verification cache


async def test_the_verification_cache_when_enabled(tmp_path: Path) -> None:
    async with make_rig(tmp_path, adapter={"verify_cache_ttl_seconds": 0.5}) as rig:
        citizen = rig.population.pick(22)
        controls = rig.simulator.controls
        first = await rig.verify(rig.verify_body(citizen))
        second = await rig.verify(rig.verify_body(citizen))
        assert first.json() == second.json()
        assert controls.soap_requests == 1
        # another officer, another name: not the cached answer
        await rig.verify(rig.verify_body(citizen, purpose=purpose(officer="CB000002")))
        other = await rig.verify(rig.verify_body(citizen, full_name="Lê Văn Khác"))
        assert other.json()["mismatches"] == ["full_name"]
        assert controls.soap_requests == 3
        # an unlicensed procedure is never answered from the cache
        r = await rig.verify(rig.verify_body(citizen, purpose=purpose(procedure="9.999999")))
        assert r.status_code == 403
        await asyncio.sleep(0.6)
        await rig.verify(rig.verify_body(citizen))
        assert controls.soap_requests == 5
        records = await rig.runtime.store.audit.query(AuditQuery(adapter="population_db"))
        assert sum(1 for r in records if r.extra.get("cache") == "hit") == 1
        assert len(records) == 6  # every query audited, cached or not
        keys = await rig.runtime.store.scan("population_db:verify:")
        for key in keys:
            assert citizen.SoDinhDanh not in key
        _USED.update(rig.used)


# ---------------------------------------------------------------- privacy of the whole run


def test_zz_no_log_line_holds_an_id_number_or_a_name() -> None:
    assert _USED, "the module's tests ran no query"
    assert _CAPTURE.lines, "nothing was logged at all: the capture is broken"
    assert _CAPTURE.leaks(_USED) == []
