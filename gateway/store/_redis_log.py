"""The Redis audit chain and event log (private to the Redis backend).

Audit keys under the prefix:
- ``a:head``             "seq:hash" of the last record (kept after a purge)
- ``a:first``            the first seq still stored
- ``a:rec``              hash seq -> the record's JSON (body and hash)
- ``a:ix:at``            zset seq -> at (time-window queries)
- ``a:ix:<field>:<v>``   zset seq -> seq, one per value of actor, operation, outcome, adapter,
                         request_id, dossier_code and subject digest (filtered queries)

Appends: SHA-256 is computed here, in Python; a Lua compare-and-set on ``a:head`` stores a
batch only if the head is still the one the hashes were chained from, otherwise it answers
the actual head and we chain again. Within one process, concurrent appends queue behind one
lock and are written as one batch (group commit), so the chain costs one round trip per
batch rather than per record, and processes only race each other.

Events: ``e:data`` hash id -> JSON, ``e:ids`` zset by id (score 0, lexicographic), ``e:at``
zset id -> occurred_at (purge).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

from gateway.store._codec import audit_from_json, audit_json, event_from_json, event_json
from gateway.store._redis_conn import (
    Conn,
    as_str,
    guard,
    guard_long,
    translate,
    translating,
)
from gateway.store._redis_lua import AUDIT_APPEND
from gateway.store.base import (
    GENESIS_HASH,
    AuditQuery,
    AuditRecord,
    AuditStore,
    Event,
    EventStore,
)

__all__ = ["RedisAuditStore", "RedisEventStore"]

_BATCH = 256  # records per append script
_PAGE = 500  # records per HMGET when iterating or purging
_MAX_SCAN_PAGE = 5000

#: AuditQuery fields answered by an index zset (the record field has the same name)
_EQ_FIELDS = ("adapter", "actor", "outcome", "request_id", "dossier_code", "operation")


class RedisAuditStore(AuditStore):
    def __init__(self, conn: Conn) -> None:
        self._c = conn
        self._lock = asyncio.Lock()
        self._pending: list[tuple[AuditRecord, asyncio.Future[AuditRecord]]] = []
        #: the head as this process last wrote or saw it; a stale value only costs a retry
        self._head: tuple[int, str] | None = None

    def _ix(self, field: str, value: str) -> str:
        return self._c.key("a:ix:", field, ":", value)

    def _index_keys(self, rec: AuditRecord) -> list[str]:
        keys = []
        for name in _EQ_FIELDS:
            value = getattr(rec, name)
            if value is not None:
                keys.append(self._ix(name, str(value)))
        keys.extend(self._ix("subject", d) for d in dict.fromkeys(rec.subject_digests))
        return keys

    # append ----------------------------------------------------------------------------
    async def append(self, record: AuditRecord) -> AuditRecord:
        fut: asyncio.Future[AuditRecord] = asyncio.get_running_loop().create_future()
        self._pending.append((record, fut))
        async with self._lock:
            while not fut.done():
                batch, self._pending = self._pending[:_BATCH], self._pending[_BATCH:]
                try:
                    async with self._c.slots, asyncio.timeout(self._c.call_timeout):
                        written = await self._write(batch)
                except asyncio.CancelledError:
                    # give the batch back: the next waiter writes it (and sees it already
                    # written if our script ran, because the head then equals its own)
                    self._pending[:0] = [b for b in batch if not b[1].done()]
                    raise
                except Exception as exc:
                    self._head = None
                    if isinstance(exc, OSError):  # incl. TimeoutError from the call bound
                        exc = translate(exc)
                    for _, f in batch:
                        if not f.done():
                            f.set_exception(exc)
                    continue
                for (_, f), rec in zip(batch, written, strict=True):
                    if not f.done():
                        f.set_result(rec)
        return fut.result()

    async def _write(self, batch: list[tuple[AuditRecord, Any]]) -> list[AuditRecord]:
        with translating():
            head = self._head if self._head is not None else await self._read_head()
            while True:
                seq, prev = head
                recs = []
                for record, _ in batch:
                    rec = dataclasses.replace(record, seq=seq + 1, prev_hash=prev, hash="")
                    rec.hash = rec.compute_hash()
                    recs.append(rec)
                    seq, prev = rec.seq, rec.hash
                new_head = f"{seq}:{prev}"
                args: list[str | float | int] = [
                    self._c.prefix,
                    "" if head[0] == 0 else f"{head[0]}:{head[1]}",
                    new_head,
                    len(recs),
                ]
                for rec in recs:
                    keys = self._index_keys(rec)
                    args.extend((rec.seq, audit_json(rec), repr(float(rec.at)), len(keys)))
                    args.extend(keys)
                res = await self._c.run(AUDIT_APPEND, (), args)
                if isinstance(res, int) and res == 1:
                    self._head = (seq, prev)
                    return recs
                actual = res.decode() if isinstance(res, bytes) else str(res)
                if actual == new_head:
                    # a resent script found its own batch already written (the reply was lost)
                    self._head = (seq, prev)
                    return recs
                head = _parse_head(actual)

    async def _read_head(self) -> tuple[int, str]:
        raw = await self._c.client.get(self._c.key("a:head"))
        return _parse_head(as_str(raw)) if raw else (0, GENESIS_HASH)

    @guard
    async def head(self) -> tuple[int, str]:
        return await self._read_head()

    # query -----------------------------------------------------------------------------
    @guard
    async def query(self, q: AuditQuery) -> list[AuditRecord]:
        limit = max(0, q.limit)
        if limit == 0:
            return []
        client = self._c.client
        eq: list[tuple[str, str]] = [
            (name, str(getattr(q, name))) for name in _EQ_FIELDS if getattr(q, name) is not None
        ]
        if q.subject_digest is not None:
            eq.append(("subject", q.subject_digest))
        timed = q.since is not None or q.until is not None
        lo = repr(float(q.since)) if q.since is not None else "-inf"
        hi = f"({float(q.until)!r}" if q.until is not None else "+inf"

        pipe = client.pipeline(transaction=False)
        pipe.get(self._c.key("a:head"))
        pipe.get(self._c.key("a:first"))
        for name, value in eq:
            pipe.zcard(self._ix(name, value))
        if timed:
            pipe.zcount(self._c.key("a:ix:at"), lo, hi)
        answers = await pipe.execute()
        head_seq = _parse_head(answers[0].decode())[0] if answers[0] else 0
        first = int(answers[1]) if answers[1] else 1
        upper = head_seq if q.before_seq is None else min(head_seq, q.before_seq - 1)
        if upper < first:
            return []
        # walk the smallest candidate set, newest first, and check every filter on each record
        best: tuple[int, str, str | None] = (upper - first + 1, "all", None)
        for (name, value), count in zip(eq, answers[2 : 2 + len(eq)], strict=True):
            if int(count) < best[0]:
                best = (int(count), "index", self._ix(name, value))
        if timed and int(answers[-1]) < best[0]:
            best = (int(answers[-1]), "time", None)
        if best[0] == 0:
            return []

        out: list[AuditRecord] = []
        async for seqs in self._candidates(best[1], best[2], upper, first, lo, hi, limit):
            bodies = await client.hmget(self._c.key("a:rec"), seqs)
            for body in bodies:
                if body is None:
                    continue
                d = json.loads(body)
                if _matches(d, q):
                    out.append(audit_from_json(body))
                    if len(out) >= limit:
                        return out
        return out

    async def _candidates(
        self,
        source: str,
        key: str | None,
        upper: int,
        first: int,
        lo: str,
        hi: str,
        limit: int,
    ) -> AsyncIterator[list[int]]:
        """Pages of candidate seqs, descending, for the chosen source."""
        page = min(_MAX_SCAN_PAGE, max(100, limit * 2))
        client = self._c.client
        if source == "all":
            top = upper
            while top >= first:
                bottom = max(first, top - page + 1)
                yield list(range(top, bottom - 1, -1))
                top = bottom - 1
                page = min(_MAX_SCAN_PAGE, page * 2)
        elif source == "index":
            assert key is not None
            bound = f"{upper}"
            while True:
                members = await client.zrevrangebyscore(key, bound, "-inf", start=0, num=page)
                if not members:
                    return
                seqs = [int(as_str(m)) for m in members]
                yield seqs
                if len(seqs) < page:
                    return
                bound = f"({seqs[-1]}"
                page = min(_MAX_SCAN_PAGE, page * 2)
        else:
            members = await client.zrangebyscore(self._c.key("a:ix:at"), lo, hi)
            all_seqs = (int(as_str(m)) for m in members)
            seqs = sorted((s for s in all_seqs if first <= s <= upper), reverse=True)
            for i in range(0, len(seqs), page):
                yield seqs[i : i + page]

    # iterate and purge -----------------------------------------------------------------
    async def iterate(
        self, *, from_seq: int = 1, to_seq: int | None = None
    ) -> AsyncIterator[AuditRecord]:
        with translating():
            client = self._c.client
            async with asyncio.timeout(self._c.call_timeout):
                first_raw = await client.get(self._c.key("a:first"))
                head_seq = (await self._read_head())[0]
            start = max(from_seq, int(first_raw) if first_raw else 1)
            end = head_seq if to_seq is None else min(to_seq, head_seq)
            for chunk in _chunks(start, end, _PAGE):
                async with asyncio.timeout(self._c.call_timeout):
                    bodies = await client.hmget(self._c.key("a:rec"), chunk)
                for body in bodies:
                    if body is not None:
                        yield audit_from_json(body)

    @guard_long
    async def purge(self, *, up_to_seq: int) -> int:
        client = self._c.client
        first_raw = await client.get(self._c.key("a:first"))
        start = int(first_raw) if first_raw else 1
        end = min(up_to_seq, (await self._read_head())[0])
        deleted = 0
        for chunk in _chunks(start, end, _PAGE):
            bodies = await client.hmget(self._c.key("a:rec"), chunk)
            pipe = client.pipeline(transaction=True)
            for seq, body in zip(chunk, bodies, strict=True):
                if body is None:
                    continue
                deleted += 1
                rec = audit_from_json(body)
                for key in self._index_keys(rec):
                    pipe.zrem(key, seq)
                pipe.zrem(self._c.key("a:ix:at"), seq)
                pipe.hdel(self._c.key("a:rec"), str(seq))
            pipe.set(self._c.key("a:first"), chunk[-1] + 1)
            await pipe.execute()
        return deleted


def _parse_head(raw: str) -> tuple[int, str]:
    seq, _, digest = raw.partition(":")
    return int(seq), digest


def _chunks(start: int, end: int, size: int) -> Iterator[list[int]]:
    for lo in range(start, end + 1, size):
        yield list(range(lo, min(lo + size, end + 1)))


def _matches(d: dict[str, Any], q: AuditQuery) -> bool:
    if q.since is not None and not d["at"] >= q.since:
        return False
    if q.until is not None and not d["at"] < q.until:
        return False
    for name in _EQ_FIELDS:
        wanted = getattr(q, name)
        if wanted is not None and d.get(name) != wanted:
            return False
    return q.subject_digest is None or q.subject_digest in (d.get("subject_digests") or ())


class RedisEventStore(EventStore):
    def __init__(self, conn: Conn) -> None:
        self._c = conn

    @guard
    async def append(self, event: Event) -> None:
        pipe = self._c.client.pipeline(transaction=True)
        pipe.hsetnx(self._c.key("e:data"), event.id, event_json(event))
        pipe.zadd(self._c.key("e:ids"), {event.id: 0})
        pipe.zadd(self._c.key("e:at"), {event.id: event.occurred_at})
        await pipe.execute()

    @guard
    async def get(self, event_id: str) -> Event | None:
        raw = await self._c.client.hget(self._c.key("e:data"), event_id)
        return event_from_json(raw) if raw else None

    @guard
    async def list_after(self, after_id: str | None, *, limit: int = 100) -> list[Event]:
        if limit <= 0:
            return []
        client = self._c.client
        lower = f"({after_id}" if after_id else "-"
        ids = await client.zrangebylex(self._c.key("e:ids"), lower, "+", start=0, num=limit)
        if not ids:
            return []
        bodies = await client.hmget(self._c.key("e:data"), ids)
        return [event_from_json(b) for b in bodies if b is not None]

    @guard_long
    async def purge(self, *, older_than: float) -> int:
        client = self._c.client
        total = 0
        while True:
            ids = await client.zrangebyscore(
                self._c.key("e:at"), "-inf", f"({float(older_than)!r}", start=0, num=1000
            )
            if not ids:
                return total
            pipe = client.pipeline(transaction=True)
            pipe.hdel(self._c.key("e:data"), *ids)
            pipe.zrem(self._c.key("e:ids"), *ids)
            pipe.zrem(self._c.key("e:at"), *ids)
            await pipe.execute()
            total += len(ids)
