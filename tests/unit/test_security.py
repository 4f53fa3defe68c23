"""Clients, keys, the clients file, caller addresses and the rate limiter (on both stores)."""

from __future__ import annotations

import hashlib
import ipaddress
import os
import tomllib
from pathlib import Path

import pytest

from gateway.errors import ConfigurationError
from gateway.security import (
    API_KEY_PREFIX,
    Client,
    ClientDirectory,
    RateLimiter,
    caller_address,
    generate_api_key,
    hash_api_key,
    read_clients_file,
    write_clients_file,
)
from gateway.settings import ClientSettings
from gateway.store.base import Store


def test_keys_are_high_entropy_and_hashed_with_sha256() -> None:
    keys = {generate_api_key() for _ in range(200)}
    assert len(keys) == 200
    key = next(iter(keys))
    assert key.startswith(API_KEY_PREFIX)
    assert len(key) - len(API_KEY_PREFIX) == 43  # 32 random bytes, base64url
    assert hash_api_key(key) == hashlib.sha256(key.encode()).hexdigest()


def _cs(client_id: str, key: str | None = None, **kw: object) -> ClientSettings:
    return ClientSettings.model_validate(
        {"id": client_id, "key_sha256": hash_api_key(key) if key else None, **kw}
    )


def test_directory_merges_config_and_file_and_finds_by_key(tmp_path: Path) -> None:
    file = tmp_path / "clients.toml"
    a, b = generate_api_key(), generate_api_key()
    write_clients_file(file, [_cs("from-file", b, scopes=["events:read"])])
    directory = ClientDirectory([_cs("from-config", a, scopes=["ops:read"])], file)
    found_a = directory.by_key(a)
    found_b = directory.by_key(b)
    assert found_a is not None
    assert found_a.id == "from-config"
    assert found_a.source == "config"
    assert found_b is not None
    assert found_b.source == "file"
    assert found_b.scopes == frozenset({"events:read"})
    assert directory.by_key(a + "x") is None
    assert directory.by_key("") is None
    assert [c.id for c in directory.all()] == ["from-config", "from-file"]


def test_directory_refuses_duplicates_and_malformed_scopes(tmp_path: Path) -> None:
    key = generate_api_key()
    with pytest.raises(ConfigurationError, match="defined twice"):
        ClientDirectory([_cs("x"), _cs("x")])
    with pytest.raises(ConfigurationError, match="reuses another client's key"):
        ClientDirectory([_cs("x", key), _cs("y", key)])
    with pytest.raises(ConfigurationError, match="malformed scope"):
        ClientDirectory([_cs("x", scopes=["opsread"])])


def test_directory_reloads_a_changed_file_and_keeps_the_last_good_one(tmp_path: Path) -> None:
    file = tmp_path / "clients.toml"
    first, second = generate_api_key(), generate_api_key()
    write_clients_file(file, [_cs("one", first)])
    directory = ClientDirectory([], file)
    assert directory.by_key(first) is not None
    write_clients_file(file, [_cs("two", second)])
    os.utime(file, ns=(1, 1))  # a different mtime even on coarse filesystems
    directory.refresh(now=10**9)
    assert directory.by_key(first) is None
    assert directory.by_key(second) is not None
    file.write_text("[[clients]]\nid = 'broken\n")
    os.utime(file, ns=(2, 2))
    directory.refresh(now=2 * 10**9)
    assert directory.by_key(second) is not None, "a broken file must not lock everyone out"


def test_clients_file_round_trip_is_0600_and_holds_no_key(tmp_path: Path) -> None:
    file = tmp_path / "var" / "clients.toml"
    key = generate_api_key()
    client = _cs(
        "portal",
        key,
        scopes=["callbacks:national_portal"],
        allowed_networks=["203.0.113.0/24"],
        allowed_units=["H12"],
        rate_limit_per_minute=60,
        description='Cổng "quốc gia"\nline two',
    )
    write_clients_file(file, [client])
    assert file.stat().st_mode & 0o777 == 0o600
    assert key not in file.read_text()
    assert read_clients_file(file) == [client]
    assert tomllib.loads(file.read_text())["clients"][0]["id"] == "portal"
    assert read_clients_file(tmp_path / "absent.toml") == []


def test_clients_file_errors_name_the_entry(tmp_path: Path) -> None:
    file = tmp_path / "clients.toml"
    file.write_text('[[clients]]\nid = "ok"\n[[clients]]\nid = "Bad Id"\n')
    with pytest.raises(ConfigurationError, match=r"clients\[1\]\.id"):
        read_clients_file(file)
    file.write_text("other = 1\n")
    with pytest.raises(ConfigurationError, match="unknown key 'other'"):
        read_clients_file(file)


def test_client_networks_and_units() -> None:
    client = Client.from_settings(
        _cs("x", allowed_networks=["10.0.0.0/8", "2001:db8::/32"], allowed_units=["H12"])
    )
    assert client.may_call_from(ipaddress.ip_address("10.1.2.3"))
    assert client.may_call_from(ipaddress.ip_address("2001:db8::1"))
    assert not client.may_call_from(ipaddress.ip_address("192.0.2.1"))
    assert not client.may_call_from(None)
    assert client.may_act_for_unit("H12")
    assert not client.may_act_for_unit("H13")
    assert Client(id="open", scopes=frozenset()).may_call_from(None)


def _scope(peer: str, forwarded: str | None = None) -> dict[str, object]:
    headers = [(b"x-forwarded-for", forwarded.encode())] if forwarded else []
    return {"type": "http", "client": (peer, 1234), "headers": headers}


def test_caller_address_reads_forwarded_for_only_behind_trusted_proxies() -> None:
    proxies = [ipaddress.ip_network("10.10.0.0/24")]
    addr = ipaddress.ip_address
    assert caller_address(_scope("192.0.2.9"), proxies) == addr("192.0.2.9")  # type: ignore[arg-type]
    assert caller_address(_scope("192.0.2.9", "10.20.0.1"), proxies) == addr("192.0.2.9")  # type: ignore[arg-type]
    # the caller may prepend anything; the proxy appends the truth on the right
    assert caller_address(_scope("10.10.0.5", "1.1.1.1, 198.51.100.7"), proxies) == addr(  # type: ignore[arg-type]
        "198.51.100.7"
    )
    # a chain of our own proxies is skipped
    assert caller_address(_scope("10.10.0.5", "198.51.100.7, 10.10.0.6"), proxies) == addr(  # type: ignore[arg-type]
        "198.51.100.7"
    )
    assert caller_address(_scope("testclient"), proxies) is None  # type: ignore[arg-type]


async def test_rate_limiter_counts_per_client_and_window(store: Store) -> None:
    limiter = RateLimiter(store, default_per_minute=2)
    a = Client(id="a", scopes=frozenset())
    b = Client(id="b", scopes=frozenset(), rate_limit_per_minute=1)
    now = 1_800_000_010.0  # 10 s into a window
    assert await limiter.hit(a, now=now) is None
    assert await limiter.hit(a, now=now + 1) is None
    assert await limiter.hit(a, now=now + 2) == 48  # until the window ends
    assert await limiter.hit(b, now=now) is None
    assert await limiter.hit(b, now=now + 49.6) == 1  # never less than a second
    # the next window starts from zero
    assert await limiter.hit(a, now=now + 50) is None


async def test_rate_limiter_claims_large_limits_in_batches(store: Store) -> None:
    now = 1_800_000_010.0
    client = Client(id="big", scopes=frozenset(), rate_limit_per_minute=1000)  # batch of 10
    limiter = RateLimiter(store, default_per_minute=1)
    for _ in range(25):
        assert await limiter.hit(client, now=now) is None
    window = int(now // 60)
    assert await store.incr(f"ratelimit:big:{window}", 0) == 30  # three claims, not 25 writes


async def test_two_instances_never_exceed_the_shared_limit(store: Store) -> None:
    now = 1_800_000_010.0
    client = Client(id="shared", scopes=frozenset(), rate_limit_per_minute=300)  # batch of 3
    first = RateLimiter(store, default_per_minute=1)
    second = RateLimiter(store, default_per_minute=1)
    allowed = 0
    for i in range(400):
        limiter = first if i % 2 else second
        if await limiter.hit(client, now=now) is None:
            allowed += 1
    # never more than the limit; at most one unspent batch per instance less
    assert 300 - 2 * 3 <= allowed <= 300
