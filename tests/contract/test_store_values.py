"""Store contract: values with TTL, counters, compare-and-set, scan, locks with fencing tokens.

Every test runs on both backends (the ``store`` fixture: a real SQLite file, a real Redis).
"""

from __future__ import annotations

import asyncio

from gateway.store.base import Store

TINY = 0.08  # a TTL short enough to wait out
PAST = 0.15  # sleep long enough for TINY to have expired everywhere


async def test_ping(store: Store) -> None:
    assert await store.ping() is True


async def test_set_get_delete(store: Store) -> None:
    assert await store.get("k") is None
    await store.set("k", b"\x00binary\xff")
    assert await store.get("k") == b"\x00binary\xff"
    await store.set("k", b"second")
    assert await store.get("k") == b"second"
    assert await store.delete("k") is True
    assert await store.get("k") is None
    assert await store.delete("k") is False


async def test_ttl_expires(store: Store) -> None:
    await store.set("short", b"v", ttl=TINY)
    await store.set("long", b"v", ttl=60)
    await store.set("forever", b"v")
    assert await store.get("short") == b"v"
    await asyncio.sleep(PAST)
    assert await store.get("short") is None
    assert await store.get("long") == b"v"
    assert await store.get("forever") == b"v"
    # an expired key is absent for delete too
    assert await store.delete("short") is False


async def test_set_without_ttl_clears_previous_ttl(store: Store) -> None:
    await store.set("k", b"1", ttl=TINY)
    await store.set("k", b"2")
    await asyncio.sleep(PAST)
    assert await store.get("k") == b"2"


async def test_set_if_absent(store: Store) -> None:
    assert await store.set_if_absent("k", b"first", ttl=TINY) is True
    assert await store.set_if_absent("k", b"second") is False
    assert await store.get("k") == b"first"
    await asyncio.sleep(PAST)
    # expired counts as absent
    assert await store.set_if_absent("k", b"third") is True
    assert await store.get("k") == b"third"


async def test_set_if_absent_concurrent_single_winner(store: Store) -> None:
    results = await asyncio.gather(
        *(store.set_if_absent("race", str(i).encode()) for i in range(20))
    )
    assert sum(results) == 1
    winner = results.index(True)
    assert await store.get("race") == str(winner).encode()


async def test_compare_and_set(store: Store) -> None:
    # None = absent
    assert await store.compare_and_set("c", None, b"1") is True
    assert await store.compare_and_set("c", None, b"x") is False
    assert await store.compare_and_set("c", b"0", b"x") is False
    assert await store.get("c") == b"1"
    assert await store.compare_and_set("c", b"1", b"2", ttl=TINY) is True
    assert await store.get("c") == b"2"
    await asyncio.sleep(PAST)
    assert await store.get("c") is None
    # expired is absent again
    assert await store.compare_and_set("c", b"2", b"3") is False
    assert await store.compare_and_set("c", None, b"3") is True


async def test_compare_and_set_concurrent(store: Store) -> None:
    await store.set("state", b"closed")
    results = await asyncio.gather(
        *(store.compare_and_set("state", b"closed", f"open-{i}".encode()) for i in range(10))
    )
    assert sum(results) == 1


async def test_incr(store: Store) -> None:
    assert await store.incr("n") == 1
    assert await store.incr("n", 5) == 6
    assert await store.incr("n", -2) == 4
    assert await store.get("n") == b"4"


async def test_incr_ttl_applies_on_creation_only(store: Store) -> None:
    assert await store.incr("window", ttl=TINY * 2) == 1
    await asyncio.sleep(TINY)
    # a later ttl does not push the window's end
    assert await store.incr("window", ttl=60) == 2
    await asyncio.sleep(TINY + 0.05)
    assert await store.get("window") is None
    assert await store.incr("window", ttl=60) == 1


async def test_incr_concurrent(store: Store) -> None:
    await asyncio.gather(*(store.incr("hits") for _ in range(50)))
    assert await store.get("hits") == b"50"


async def test_scan_prefix(store: Store) -> None:
    await store.set("health:a", b"1")
    await store.set("health:b", b"2")
    await store.set("health:gone", b"3", ttl=TINY)
    await store.set("healthy", b"no")
    await store.set("webhook:x", b"4")
    await asyncio.sleep(PAST)
    assert await store.scan("health:") == {"health:a": b"1", "health:b": b"2"}
    assert await store.scan("nothing:") == {}
    assert len(await store.scan("health:", limit=1)) == 1


async def test_scan_prefix_with_pattern_characters(store: Store) -> None:
    await store.set("a*[x]?%_:1", b"1")
    await store.set("abc", b"2")
    await store.set("a%bc", b"3")
    assert await store.scan("a*[x]?%_:") == {"a*[x]?%_:1": b"1"}
    assert await store.scan("a%") == {"a%bc": b"3"}


async def test_purge_expired(store: Store) -> None:
    await store.set("gone", b"1", ttl=TINY)
    await store.set("kept", b"2")
    await asyncio.sleep(PAST)
    purged = await store.purge_expired()
    assert purged in (0, 1)  # Redis expires by itself (0), SQLite deletes the row (1)
    assert await store.get("gone") is None
    assert await store.get("kept") == b"2"


# ---------------------------------------------------------------- locks


async def test_lock_exclusive_and_renewable(store: Store) -> None:
    assert await store.lock_token("sched") == 0
    t1 = await store.acquire_lock("sched", "a", ttl=30)
    assert t1 is not None and t1 >= 1
    assert await store.acquire_lock("sched", "b", ttl=30) is None
    # renewal by the holder keeps the token
    assert await store.acquire_lock("sched", "a", ttl=30) == t1
    assert await store.lock_token("sched") == t1


async def test_lock_release_and_fencing(store: Store) -> None:
    t1 = await store.acquire_lock("l", "a", ttl=30)
    assert t1 is not None
    assert await store.release_lock("l", "b") is False
    assert await store.release_lock("l", "a") is True
    assert await store.release_lock("l", "a") is False
    t2 = await store.acquire_lock("l", "b", ttl=30)
    assert t2 is not None and t2 > t1
    assert await store.lock_token("l") == t2


async def test_lock_expiry_hands_over_with_higher_token(store: Store) -> None:
    t1 = await store.acquire_lock("l", "a", ttl=TINY)
    assert t1 is not None
    await asyncio.sleep(PAST)
    t2 = await store.acquire_lock("l", "b", ttl=30)
    assert t2 is not None and t2 > t1
    # the old holder lost it: cannot release, cannot renew
    assert await store.release_lock("l", "a") is False
    assert await store.acquire_lock("l", "a", ttl=30) is None


async def test_lock_tokens_strictly_increase_under_contention(store: Store) -> None:
    tokens: list[int] = []

    async def contender(owner: str) -> None:
        for _ in range(10):
            token = await store.acquire_lock("hot", owner, ttl=30)
            if token is not None:
                tokens.append(token)
                assert await store.release_lock("hot", owner) is True
            await asyncio.sleep(0)

    await asyncio.gather(*(contender(f"o{i}") for i in range(5)))
    assert tokens, "nobody ever got the lock"
    assert tokens == sorted(tokens) and len(set(tokens)) == len(tokens)
    assert await store.lock_token("hot") == tokens[-1]


async def test_locks_are_independent(store: Store) -> None:
    assert await store.acquire_lock("x", "a", ttl=30) == 1
    assert await store.acquire_lock("y", "b", ttl=30) == 1
    assert await store.lock_token("z") == 0
