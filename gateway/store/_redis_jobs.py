"""The Redis job queue (private to the Redis backend): see ``_redis_lua`` for the key layout.

Enqueue, lease, heartbeat, ack, retry, defer, dead letter, replay and discard are each one
Lua script (one round trip, atomic). Only eligible jobs sit in the per-kind ready zsets, so a
lease looks at the first member of a few zsets whatever the backlog.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

from gateway.store import ids
from gateway.store._codec import (
    attempt_json,
    attempts_from_json,
    check_new_job,
    dumps,
    loads_dict,
)
from gateway.store._redis_conn import Conn, as_str, guard, guard_long
from gateway.store._redis_lua import (
    ACK,
    DEAD_LETTER,
    DISCARD,
    ENQUEUE,
    HEARTBEAT,
    LEASE,
    PURGE_FINISHED,
    REPLAY,
    REQUEUE,
)
from gateway.store.base import (
    Attempt,
    Job,
    JobState,
    JobStore,
    NewJob,
    QueueFull,
    QueueStats,
)

__all__ = ["RedisJobStore"]

_PURGE_BATCH = 500


def _t(value: float) -> str:
    """A time as the exact decimal Python prints (round-trips through the store unchanged)."""
    return repr(float(value))


def _f(value: str | None) -> float | None:
    return None if value is None else float(value)


def _from_script(raw: bytes) -> dict[str, str]:
    """A script's job (the hash as one JSON object of strings) as a dict."""
    value: dict[str, str] = json.loads(raw)
    return value


def _job(job_id: str, h: dict[str, str]) -> Job:
    return Job(
        id=job_id,
        kind=h["kind"],
        payload=loads_dict(h["payload"]) or {},
        state=JobState(h["state"]),
        created_at=float(h["created_at"]),
        updated_at=float(h["updated_at"]),
        run_at=float(h["run_at"]),
        ordering_key=h.get("okey"),
        dedupe_key=h.get("dkey"),
        request_id=h.get("rid"),
        client_id=h.get("cid"),
        attempts=attempts_from_json(h.get("attempts")),
        lease_owner=h.get("owner"),
        lease_expires_at=_f(h.get("lexp")),
        result=loads_dict(h.get("result")),
        last_error=h.get("err"),
    )


def _decoded(raw: dict[Any, Any]) -> dict[str, str]:
    return {as_str(k): as_str(v) for k, v in raw.items()}


class RedisJobStore(JobStore):
    def __init__(self, conn: Conn) -> None:
        self._c = conn

    @property
    def _p(self) -> str:
        return self._c.prefix

    @guard
    async def enqueue(self, job: NewJob, *, max_queued: int | None = None) -> tuple[Job, bool]:
        check_new_job(job)
        okey = job.ordering_key or ""
        dkey = job.dedupe_key or ""
        now = time.time()
        run_at = job.run_at if job.run_at is not None else now
        res = await self._c.run(
            ENQUEUE,
            (),
            (
                self._p,
                ids.new_id(),
                job.kind,
                dumps(job.payload),
                _t(now),
                _t(run_at),
                okey,
                dkey,
                job.request_id or "",
                job.client_id or "",
                -1 if max_queued is None else max_queued,
            ),
        )
        status = int(res[0])
        if status < 0:
            raise QueueFull(job.kind)
        if status == 0:
            return _job(res[1].decode(), _from_script(res[2])), False
        return job.queued(res[1].decode(), now=now, run_at=run_at), True

    @guard
    async def lease(
        self, owner: str, *, visibility: float, now: float, kinds: Sequence[str] | None = None
    ) -> Job | None:
        kind_list = list(kinds) if kinds is not None else None
        if kind_list is not None and not kind_list:
            return None
        args: list[str | int] = [
            self._p,
            owner,
            _t(now),
            _t(now + visibility),
            -1 if kind_list is None else len(kind_list),
        ]
        if kind_list:
            args.extend(kind_list)
        res = await self._c.run(LEASE, (), args)
        if not res:
            return None
        return _job(res[0].decode(), _from_script(res[1]))

    @guard
    async def heartbeat(self, job_id: str, owner: str, *, visibility: float, now: float) -> bool:
        res = await self._c.run(
            HEARTBEAT, (), (self._p, job_id, owner, _t(now), _t(now + visibility))
        )
        return bool(res)

    @guard
    async def ack(
        self,
        job_id: str,
        owner: str,
        *,
        now: float,
        attempt: Attempt,
        result: dict[str, Any] | None = None,
    ) -> bool:
        res = await self._c.run(
            ACK,
            (),
            (
                self._p,
                job_id,
                owner,
                _t(now),
                attempt_json(attempt),
                dumps(result) if result is not None else "",
            ),
        )
        return bool(res)

    @guard
    async def retry(self, job_id: str, owner: str, *, run_at: float, attempt: Attempt) -> bool:
        res = await self._c.run(
            REQUEUE,
            (),
            (
                self._p,
                job_id,
                owner,
                _t(time.time()),
                _t(run_at),
                attempt_json(attempt),
                attempt.error or "",
            ),
        )
        return bool(res)

    @guard
    async def defer(self, job_id: str, owner: str, *, run_at: float) -> bool:
        res = await self._c.run(
            REQUEUE,
            (),
            (self._p, job_id, owner, _t(time.time()), _t(run_at), "", ""),
        )
        return bool(res)

    @guard
    async def dead_letter(self, job_id: str, owner: str, *, now: float, attempt: Attempt) -> bool:
        res = await self._c.run(
            DEAD_LETTER,
            (),
            (self._p, job_id, owner, _t(now), attempt_json(attempt), attempt.error or ""),
        )
        return bool(res)

    @guard
    async def replay(self, job_id: str, *, now: float) -> Job | None:
        res = await self._c.run(REPLAY, (), (self._p, job_id, _t(now)))
        return _job(job_id, _from_script(res)) if res else None

    @guard
    async def discard(self, job_id: str, *, now: float) -> Job | None:
        res = await self._c.run(DISCARD, (), (self._p, job_id, _t(now)))
        return _job(job_id, _from_script(res)) if res else None

    @guard
    async def get(self, job_id: str) -> Job | None:
        raw = await self._c.client.hgetall(self._c.key("j:", job_id))
        return _job(job_id, _decoded(raw)) if raw else None

    async def _many(self, job_ids: Sequence[str]) -> list[Job]:
        if not job_ids:
            return []
        pipe = self._c.client.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.hgetall(self._c.key("j:", job_id))
        rows = await pipe.execute()
        return [_job(i, _decoded(r)) for i, r in zip(job_ids, rows, strict=True) if r]

    @guard
    async def list_dead(
        self, *, kind: str | None = None, limit: int = 100, before_id: str | None = None
    ) -> list[Job]:
        key = self._c.key("q:deadk:", kind) if kind is not None else self._c.key("q:dead")
        upper = f"({before_id}" if before_id is not None else "+"
        members = await self._c.client.zrevrangebylex(key, upper, "-", start=0, num=limit)
        return await self._many([as_str(m) for m in members])

    @guard
    async def held_back(self, ordering_key: str, *, limit: int = 100) -> list[Job]:
        members = await self._c.client.lrange(self._c.key("q:okey:", ordering_key), 1, limit)
        jobs = await self._many([as_str(m) for m in members])
        return [j for j in jobs if j.state is JobState.QUEUED]

    @guard
    async def by_ordering_key(self, ordering_key: str, *, limit: int = 100) -> list[Job]:
        members = await self._c.client.zrangebylex(
            self._c.key("q:okall:", ordering_key), "-", "+", start=0, num=limit
        )
        return await self._many([as_str(m) for m in members])

    @guard
    async def stats(self, *, now: float) -> list[QueueStats]:
        client = self._c.client
        kinds = sorted(as_str(k) for k in await client.smembers(self._c.key("q:kinds")))
        if not kinds:
            return []
        pipe = client.pipeline(transaction=False)
        for kind in kinds:
            pipe.hmget(self._c.key("q:counts:", kind), ["queued", "leased", "dead"])
            pipe.zrangebyscore(
                self._c.key("q:ready:", kind), "-inf", _t(now), start=0, num=1, withscores=True
            )
        rows = await pipe.execute()
        out = []
        for i, kind in enumerate(kinds):
            counts = [int(v or 0) for v in rows[2 * i]]
            if not any(counts):
                continue
            due = rows[2 * i + 1]
            oldest = max(0.0, now - float(due[0][1])) if due else None
            out.append(
                QueueStats(
                    kind=kind,
                    queued=counts[0],
                    in_flight=counts[1],
                    dead=counts[2],
                    oldest_due_age=oldest,
                )
            )
        return out

    @guard
    async def count_queued(self, kind: str) -> int:
        value = await self._c.client.hget(self._c.key("q:counts:", kind), "queued")
        return int(value or 0)

    @guard_long
    async def purge_finished(self, *, older_than: float) -> int:
        total = 0
        while True:
            examined, deleted = await self._c.run(
                PURGE_FINISHED, (), (self._p, _t(older_than), _PURGE_BATCH)
            )
            total += int(deleted)
            if int(examined) < _PURGE_BATCH:
                return total
