"""The Redis store behind Redis Sentinel (``redis+sentinel://`` URLs), with real processes.

Each test starts its own ``redis-server`` data nodes and a sentinel on free ports (never the
shared Redis), with passwords on both, and stops them in fixture finalizers. Skipped only when
``redis-server`` is not installed.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from support.uvicorn_server import free_port

from gateway.cli.config import _redact_url
from gateway.errors import ConfigurationError, StoreUnavailable
from gateway.store._redis_sentinel import parse_sentinel_url, redact
from gateway.store.base import Attempt, JobState, NewJob
from gateway.store.redis import RedisStore

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
needs_redis_server = pytest.mark.skipif(
    not Path(REDIS_SERVER).exists(), reason="redis-server is not installed"
)

SERVICE = "gwtest"
DATA_PASSWORD = "data-pw"
SENTINEL_PASSWORD = "sentinel-pw"


class Proc:
    """One redis-server process (data node or sentinel) on 127.0.0.1."""

    def __init__(self, args: list[str], port: int, password: str, log: Path, db: int = 0) -> None:
        self.port = port
        self.log = log
        self._out = log.open("wb")
        self.popen = subprocess.Popen(
            [REDIS_SERVER, *args], stdout=self._out, stderr=subprocess.STDOUT
        )
        self.client = redis.Redis(
            host="127.0.0.1",
            port=port,
            db=db,
            password=password,
            socket_timeout=2,
            decode_responses=True,
        )
        wait_for(self._answers, 10, lambda: f"port {port} never answered: {self.output()}")

    def _answers(self) -> bool:
        try:
            return bool(self.client.ping())
        except redis.RedisError:
            return False

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-2000:]

    def stop(self) -> None:
        self.client.close()
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=5)
        self._out.close()


def wait_for(check: Callable[[], bool], within: float, message: Callable[[], str]) -> None:
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(message())
        time.sleep(0.05)


class Deployment:
    """Data nodes and one sentinel; each started process is stopped by ``stop``."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.procs: list[Proc] = []

    def data_node(self, replica_of: int | None = None) -> Proc:
        port = free_port()
        args = [
            "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--dir", str(self.tmp_path), "--dbfilename", f"dump-{port}.rdb",
            "--requirepass", DATA_PASSWORD, "--masterauth", DATA_PASSWORD,
            "--repl-diskless-sync-delay", "0",
        ]  # fmt: skip
        if replica_of is not None:
            args += ["--replicaof", "127.0.0.1", str(replica_of)]
        # the client reads database 3, the one the store's URLs name
        proc = Proc(args, port, DATA_PASSWORD, self.tmp_path / f"redis-{port}.log", db=3)
        self.procs.append(proc)
        return proc

    def sentinel(self, primary: Proc) -> Proc:
        port = free_port()
        conf = self.tmp_path / f"sentinel-{port}.conf"  # the sentinel rewrites it: a file of ours
        conf.write_text(
            f"port {port}\n"
            "bind 127.0.0.1\n"
            f"dir {self.tmp_path}\n"
            f"requirepass {SENTINEL_PASSWORD}\n"
            f"sentinel monitor {SERVICE} 127.0.0.1 {primary.port} 1\n"
            f"sentinel auth-pass {SERVICE} {DATA_PASSWORD}\n"
            f"sentinel down-after-milliseconds {SERVICE} 1000\n"
            f"sentinel failover-timeout {SERVICE} 10000\n"
        )
        proc = Proc(
            [str(conf), "--sentinel"], port, SENTINEL_PASSWORD, self.tmp_path / f"s-{port}.log"
        )
        self.procs.append(proc)
        return proc

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[Deployment]:
    d = Deployment(tmp_path)
    try:
        yield d
    finally:
        d.stop()


def sentinel_url(sentinel: Proc, *, extra_host: str = "") -> str:
    hosts = f"{extra_host}127.0.0.1:{sentinel.port}"
    return (
        f"redis+sentinel://:{DATA_PASSWORD}@{hosts}/{SERVICE}/3"
        f"?sentinel_password={SENTINEL_PASSWORD}"
    )


def primary_port(sentinel: Proc) -> int:
    """The primary as clients discover it (SENTINEL MASTERS, which redis-py reads): it
    changes when the failover ends, a moment after GET-MASTER-ADDR-BY-NAME does."""
    return int(sentinel.client.sentinel_master(SERVICE)["port"])


def prefix() -> str:
    return f"dvcgw-sentinel-{uuid.uuid4().hex[:8]}:"


async def jobs_round_trip(store: RedisStore, now: float) -> None:
    job, created = await store.jobs.enqueue(NewJob("k", {"n": 1}, run_at=now))
    assert created
    leased = await store.jobs.lease("w1", visibility=30, now=now)
    assert leased is not None and leased.id == job.id
    assert await store.jobs.ack(job.id, "w1", now=now, attempt=Attempt(at=now))
    done = await store.jobs.get(job.id)
    assert done is not None and done.state is JobState.SUCCEEDED


# the URL ---------------------------------------------------------------------------------
def test_a_sentinel_url_is_read_whole() -> None:
    target = parse_sentinel_url(
        "redis+sentinel://app:p%40ss@s1,s2:26380,[::1]:26381/main/2"
        "?sentinel_password=s%2Fpw&sentinel_username=sent"
    )
    assert target.sentinels == (("s1", 26379), ("s2", 26380), ("::1", 26381))
    assert (target.service_name, target.db) == ("main", 2)
    assert (target.username, target.password) == ("app", "p@ss")
    assert (target.sentinel_username, target.sentinel_password) == ("sent", "s/pw")
    # no secret in the repr (a log line of the target)
    assert "p@ss" not in repr(target) and "s/pw" not in repr(target)
    plain = parse_sentinel_url("redis+sentinel://h/main")
    assert (plain.db, plain.password, plain.sentinel_password) == (0, None, None)


@pytest.mark.parametrize(
    ("url", "named"),
    [
        ("redis+sentinel://h:26379", "no service name"),
        ("redis+sentinel:///main", "no sentinel host"),
        ("redis+sentinel://h:x/main", "not a number"),
        ("redis+sentinel://h/main/1/2", "/<service_name>[/<db>]"),
        ("redis+sentinel://:secret@h/main?password=secret2", "'password'"),
    ],
)
def test_a_bad_sentinel_url_is_a_configuration_error_without_secrets(url: str, named: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        RedisStore(url)
    assert named in caught.value.detail
    assert "secret" not in caught.value.detail


def test_sentinel_url_secrets_are_redacted_in_check_config() -> None:
    url = "redis+sentinel://app:pw1@s1:26379,s2:26379/main/0?sentinel_password=pw2"
    for shown in (redact(url), _redact_url(url)):
        assert "pw1" not in shown and "pw2" not in shown
        assert "s1:26379,s2:26379/main/0" in shown and "sentinel_password=" in shown


# real processes ----------------------------------------------------------------------------
@needs_redis_server
async def test_the_store_works_through_a_sentinel(deployment: Deployment) -> None:
    primary = deployment.data_node()
    sentinel = deployment.sentinel(primary)
    # a sentinel that does not answer is skipped during discovery
    dead = f"127.0.0.1:{free_port()},"
    store = RedisStore(sentinel_url(sentinel, extra_host=dead), key_prefix=prefix())
    await store.open()
    try:
        assert await store.ping()
        await store.set("a", b"1")
        assert await store.get("a") == b"1"
        assert await store.incr("n") == 1
        assert await store.incr("n", 4) == 5
        await jobs_round_trip(store, time.time())
        # it really is the monitored primary, database 3
        assert primary.client.get(f"{store.key_prefix}v:a") == "1"
    finally:
        await store.close()


@needs_redis_server
async def test_a_wrong_sentinel_password_makes_the_store_unavailable(
    deployment: Deployment,
) -> None:
    sentinel = deployment.sentinel(deployment.data_node())
    url = sentinel_url(sentinel).replace(SENTINEL_PASSWORD, "wrong")
    store = RedisStore(url, key_prefix=prefix(), call_timeout=5)
    await store.open()
    try:
        assert not await store.ping()
        with pytest.raises(StoreUnavailable):
            await store.get("a")
    finally:
        await store.close()


def primary_and_replica(deployment: Deployment) -> tuple[Proc, Proc]:
    primary = deployment.data_node()
    replica = deployment.data_node(replica_of=primary.port)

    def replica_in_sync() -> bool:
        return replica.client.info("replication").get("master_link_status") == "up"

    wait_for(replica_in_sync, 10, lambda: f"replica never synced: {replica.output()}")
    return primary, replica


@needs_redis_server
async def test_the_store_follows_a_failover(deployment: Deployment) -> None:
    primary, replica = primary_and_replica(deployment)
    sentinel = deployment.sentinel(primary)
    store = RedisStore(sentinel_url(sentinel), key_prefix=prefix())
    await store.open()
    try:
        await store.set("before", b"1")
        assert await store.incr("n") == 1

        def failover_started() -> bool:
            # NOGOODSLAVE until the sentinel has seen the replica: ask again
            try:
                return bool(sentinel.client.execute_command("SENTINEL", "FAILOVER", SERVICE))
            except redis.ResponseError:
                return False

        # the writes above reached the replica before the switch (no acknowledged loss here;
        # replication is in order, so the last one is enough)
        wait_for(
            lambda: replica.client.get(f"{store.key_prefix}v:n") == "1",
            5,
            lambda: "the write never reached the replica",
        )
        wait_for(failover_started, 10, lambda: f"no failover: {sentinel.output()}")
        wait_for(
            lambda: primary_port(sentinel) == replica.port,
            10,
            lambda: f"the sentinel never switched: {sentinel.output()}",
        )

        # the sentinel demotes the old primary only after its next INFO poll (10 s or more):
        # do now what it will do then. The store's pooled connections still point at the old
        # primary: they get READONLY, are dropped and reconnect to the new one via the sentinel.
        primary.client.replicaof("127.0.0.1", replica.port)
        # the first call after the switch already succeeds: its retry asks the sentinels
        assert await store.incr("n") == 2
        await store.set("after", b"2")
        await jobs_round_trip(store, time.time())
        assert replica.client.get(f"{store.key_prefix}v:after") == "2"
        assert await store.get("before") == b"1"
    finally:
        await store.close()


@needs_redis_server
async def test_calls_fail_as_store_unavailable_until_the_sentinel_promotes_a_replica(
    deployment: Deployment,
) -> None:
    primary, replica = primary_and_replica(deployment)
    sentinel = deployment.sentinel(primary)
    store = RedisStore(sentinel_url(sentinel), key_prefix=prefix())
    await store.open()
    try:
        assert await store.incr("n") == 1
        wait_for(
            lambda: replica.client.get(f"{store.key_prefix}v:n") == "1",
            5,
            lambda: "the write never reached the replica",
        )
        primary.popen.kill()  # a crash: the sentinel notices after down-after-milliseconds
        primary.popen.wait(timeout=5)
        unavailable = 0
        deadline = time.monotonic() + 15
        while True:
            try:
                value = await store.incr("n")
                break
            except StoreUnavailable:  # retryable, and nothing else
                unavailable += 1
                assert time.monotonic() < deadline, f"no promotion: {sentinel.output()}"
                await asyncio.sleep(0.1)
        assert unavailable > 0, "the outage was not seen"
        assert value == 2  # the failed calls did not run anywhere
        assert primary_port(sentinel) == replica.port
        await jobs_round_trip(store, time.time())
    finally:
        await store.close()
