"""The Redis connection shared by the facets of one RedisStore (private).

Scripts run with EVALSHA and are loaded again on NOSCRIPT (a restarted Redis has forgotten
them). Connection errors and timeouts become ``StoreUnavailable``; redis-py reconnects by
itself on the next command, so a store survives a Redis restart without help.

A ``redis+sentinel://`` URL (see ``_redis_sentinel``) gets the same pool options through a
``SentinelConnectionPool``: each new connection asks the sentinels for the current primary, and
a connection still open to a demoted primary is dropped on its first READONLY answer, so the
store follows a failover. Other URLs take the plain pool, unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Sequence
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelManagedConnection
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, OutOfMemoryError, ReadOnlyError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from gateway.errors import StoreUnavailable
from gateway.store._redis_lua import Script
from gateway.store._redis_sentinel import SentinelTarget, is_sentinel_url, parse_sentinel_url

__all__ = [
    "CALL_TIMEOUT",
    "Conn",
    "as_bytes",
    "as_str",
    "guard",
    "guard_long",
    "translate",
    "translating",
]

P = ParamSpec("P")
R = TypeVar("R")

Arg = str | bytes | int | float

#: concurrent store calls per store instance (each holds at most one connection at a time);
#: more calls wait for a slot. The pool allows some headroom for unbounded helpers (iterate).
MAX_CALLS = 64
MAX_CONNECTIONS = MAX_CALLS + 16
#: seconds one store call may take (a hung server, a lost reply); then StoreUnavailable. A
#: cancelled redis-py command drops its connection, so no stale reply is read later.
CALL_TIMEOUT = 10.0
#: seconds to connect (a data node or a sentinel); a sentinel must also answer within this
SOCKET_CONNECT_TIMEOUT = 2.0


def as_str(value: Any) -> str:
    """A reply item as text (the client answers bytes; the stubs also allow str)."""
    return value.decode() if isinstance(value, bytes) else str(value)


def as_bytes(value: Any) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()


def translate(exc: BaseException) -> StoreUnavailable:
    return StoreUnavailable(f"Redis store unavailable: {type(exc).__name__}")


#: server answers that mean "cannot serve now" rather than "your command is wrong": out of
#: memory, a read-only replica after failover (typed by redis-py), cannot persist, a script
#: running too long (plain ResponseError with the code in the text)
_UNAVAILABLE_CLASSES = (OutOfMemoryError, ReadOnlyError)
_UNAVAILABLE_REPLIES = ("MISCONF", "BUSY ", "OOM", "READONLY", "LOADING", "MASTERDOWN")

_NETWORK_ERRORS = (RedisConnectionError, RedisTimeoutError, OSError)


def _unavailable(exc: BaseException) -> bool:
    if isinstance(exc, _NETWORK_ERRORS):
        return True
    if isinstance(exc, _UNAVAILABLE_CLASSES):
        return True
    return isinstance(exc, ResponseError) and str(exc).startswith(_UNAVAILABLE_REPLIES)


@contextlib.contextmanager
def translating() -> Iterator[None]:
    """The same translation as :func:`guard`, for generators and helpers."""
    try:
        yield
    except (*_NETWORK_ERRORS, ResponseError) as exc:
        if _unavailable(exc):
            raise translate(exc) from exc
        raise


class HasConn(Protocol):
    _c: Conn


S = TypeVar("S", bound=HasConn)


def _guarded(
    fn: Callable[Concatenate[S, P], Awaitable[R]], bounded: bool
) -> Callable[Concatenate[S, P], Coroutine[Any, Any, R]]:
    @functools.wraps(fn)
    async def wrapper(self: S, /, *args: P.args, **kwargs: P.kwargs) -> R:
        try:
            timeout = self._c.call_timeout if bounded else None
            async with self._c.slots, asyncio.timeout(timeout):
                return await fn(self, *args, **kwargs)
        except (*_NETWORK_ERRORS, ResponseError) as exc:
            if _unavailable(exc):
                raise translate(exc) from exc
            raise

    return wrapper


def guard(
    fn: Callable[Concatenate[S, P], Awaitable[R]],
) -> Callable[Concatenate[S, P], Coroutine[Any, Any, R]]:
    """For methods of a facet holding ``_c``: bound the concurrent calls to the pool size,
    bound the call's time (``Conn.call_timeout``) and turn Redis failures into
    ``StoreUnavailable``."""
    return _guarded(fn, True)


def guard_long(
    fn: Callable[Concatenate[S, P], Awaitable[R]],
) -> Callable[Concatenate[S, P], Coroutine[Any, Any, R]]:
    """:func:`guard` for loops of many short commands (purges): no overall time bound."""
    return _guarded(fn, False)


class Conn:
    def __init__(self, url: str, prefix: str, *, call_timeout: float = CALL_TIMEOUT) -> None:
        self.url = url
        self.prefix = prefix
        self.call_timeout = call_timeout
        self._client: aioredis.Redis | None = None
        self.slots = asyncio.Semaphore(MAX_CALLS)
        self._pending: list[_Call] = []
        self._flusher: asyncio.Task[None] | None = None
        self._sentinel: Sentinel | None = None
        # a bad Sentinel URL is a configuration error, raised when the store is built
        self._target = parse_sentinel_url(url) if is_sentinel_url(url) else None

    def connect(self) -> None:
        if self._client is not None:
            return
        if self._target is not None:
            self._client = self._sentinel_client(self._target)
            return
        # a burst of concurrent calls waits for a slot (``slots``) instead of failing with
        # MaxConnectionsError; a plain pool is cheaper per command than the blocking one
        pool = aioredis.ConnectionPool.from_url(self.url, **_pool_options())
        self._client = aioredis.Redis(connection_pool=pool)

    def _sentinel_client(self, target: SentinelTarget) -> aioredis.Redis:
        # the sentinels are asked once per new connection, rarely: a socket timeout there
        # costs nothing on the hot path and lets discovery move on from a hung sentinel. No
        # retry per sentinel (redis-py's default backs off for seconds): discovery tries the
        # next one at once, and the pool's retry covers a whole discovery.
        sentinel_options: dict[str, Any] = {
            "socket_connect_timeout": SOCKET_CONNECT_TIMEOUT,
            "socket_timeout": SOCKET_CONNECT_TIMEOUT,
            "retry": Retry(NoBackoff(), 0),
            "socket_keepalive": True,
            "username": target.sentinel_username,
            "password": target.sentinel_password,
        }
        # redis-py's Sentinel is untyped
        self._sentinel = Sentinel(list(target.sentinels), sentinel_kwargs=sentinel_options)  # type: ignore[no-untyped-call]
        client: aioredis.Redis = self._sentinel.master_for(
            target.service_name,
            redis_class=aioredis.Redis,
            db=target.db,
            username=target.username,
            password=target.password,
            connection_class=_PrimaryConnection,
            **_pool_options(),
        )
        return client

    @property
    def client(self) -> aioredis.Redis:
        if self._client is None:
            raise StoreUnavailable("the Redis store is not open")
        return self._client

    async def close(self) -> None:
        flusher, self._flusher = self._flusher, None
        if flusher is not None and not flusher.done():
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(flusher, timeout=self.call_timeout)
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()
        sentinel, self._sentinel = self._sentinel, None
        for node in sentinel.sentinels if sentinel is not None else ():
            await node.aclose()

    def key(self, *parts: str) -> str:
        return self.prefix + "".join(parts)

    async def run(self, script: Script, keys: Sequence[str], args: Sequence[Arg]) -> Any:
        """Run a script. Scripts called while another batch is on the wire are sent together
        as one pipeline (auto-pipelining): under load that is one send and one wake-up for
        many calls instead of one each. Each script stays atomic; a lone call goes alone."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.append(_Call(script, keys, args, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        while self._pending:
            batch, self._pending = self._pending[:MAX_CALLS], self._pending[MAX_CALLS:]
            try:
                async with asyncio.timeout(self.call_timeout):
                    results = await self._execute(batch)
            except BaseException as exc:
                failure: BaseException = exc
                if isinstance(exc, asyncio.CancelledError):
                    failure = StoreUnavailable("the Redis store is closing")
                for call in batch:
                    if not call.future.done():
                        call.future.set_exception(failure)
                if isinstance(exc, asyncio.CancelledError):
                    raise
                continue
            for call, result in zip(batch, results, strict=True):
                if call.future.done():
                    continue  # the caller gave up (its own time bound)
                if isinstance(result, BaseException):
                    call.future.set_exception(result)
                else:
                    call.future.set_result(result)

    async def _execute(self, batch: list[_Call]) -> list[Any]:
        """Results in order; a command's own error is returned in its place."""
        client = self.client
        if len(batch) == 1:
            call = batch[0]
            try:
                return [await self._evalsha(client, call)]
            except NoScriptError:
                await client.script_load(call.script.source)
                return [await self._evalsha(client, call)]
            except (RedisConnectionError, RedisTimeoutError, OSError):
                raise
            except ResponseError as exc:
                return [exc]
        results = await self._pipeline(client, batch)
        missing = {c.script for c, r in zip(batch, results, strict=True) if _is_noscript(r)}
        if missing:
            # a restarted Redis forgot the scripts: load them and run again what failed
            for script in missing:
                await client.script_load(script.source)
            again = [i for i, r in enumerate(results) if _is_noscript(r)]
            rerun = await self._pipeline(client, [batch[i] for i in again])
            for i, r in zip(again, rerun, strict=True):
                results[i] = r
        return results

    @staticmethod
    async def _evalsha(client: aioredis.Redis, call: _Call) -> Any:
        return await client.evalsha(call.script.sha, len(call.keys), *call.keys, *call.args)

    @staticmethod
    async def _pipeline(client: aioredis.Redis, batch: list[_Call]) -> list[Any]:
        pipe = client.pipeline(transaction=False)
        for call in batch:
            pipe.evalsha(call.script.sha, len(call.keys), *call.keys, *call.args)
        return list(await pipe.execute(raise_on_error=False))


class _PrimaryConnection(SentinelManagedConnection):
    """Asks the sentinels for the primary on every connect, reconnects included.

    redis-py asks them only when the pool opens a connection: the reconnect of a retried
    command (``send_packed_command``) opens the socket to the last address. After a failover
    the retry of a command refused by the demoted primary (READONLY) would go back to it, and
    fail; here it goes to the new primary. A new connection asks twice, which is rare."""

    async def connect_check_health(
        self, check_health: bool = True, retry_socket_connect: bool = True
    ) -> None:
        if not self.is_connected:
            self.host, self.port = await self.connection_pool.get_master_address()
        await super().connect_check_health(
            check_health=check_health, retry_socket_connect=retry_socket_connect
        )


def _pool_options() -> dict[str, Any]:
    """The pool options of both kinds of URL."""
    return {
        "max_connections": MAX_CONNECTIONS,
        "socket_connect_timeout": SOCKET_CONNECT_TIMEOUT,
        # no socket_timeout: redis-py would wrap every send in asyncio.wait_for, which costs a
        # task per command on Python 3.11; ``guard`` bounds each call instead
        "socket_timeout": None,
        "socket_keepalive": True,
        # only connection errors are retried: a timed-out command may have run, and the job
        # scripts are not all idempotent. One quick retry covers a dropped pooled connection
        # after a Redis restart, and a connection to a primary demoted by a failover (redis-py
        # turns its READONLY into a connection error: the command did not run).
        "retry": Retry(ExponentialBackoff(cap=0.2, base=0.02), 2, (RedisConnectionError,)),
        "health_check_interval": 30,
    }


def _is_noscript(result: Any) -> bool:
    return isinstance(result, NoScriptError) or (
        isinstance(result, ResponseError) and str(result).startswith("NOSCRIPT")
    )


@dataclasses.dataclass(slots=True)
class _Call:
    script: Script
    keys: Sequence[str]
    args: Sequence[Arg]
    future: asyncio.Future[Any]
