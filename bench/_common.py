"""What several benchmarks need alike: free ports, percentiles, cleaning up Redis keys."""

from __future__ import annotations

import socket
from pathlib import Path

__all__ = ["ROOT", "drop_redis_prefix", "free_port", "percentile"]

#: the repository root
ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values`` by rank, no interpolation; NaN when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def drop_redis_prefix(url: str, prefix: str) -> None:
    """Delete the keys a run wrote under its own prefix (the Redis is shared: nothing else)."""
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(url)
    try:
        batch: list[bytes] = []
        async for key in client.scan_iter(match=prefix + "*", count=5000):
            batch.append(key)
            if len(batch) >= 5000:
                await client.unlink(*batch)
                batch.clear()
        if batch:
            await client.unlink(*batch)
    finally:
        await client.aclose()
