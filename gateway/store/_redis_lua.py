"""Lua scripts of the Redis backend (private): each job transition is one atomic round trip.

Key layout under the store's prefix ``p`` (passed as ARGV[1] to the job scripts, which build
their key names from it: a single Redis server, not a cluster):

- ``j:<id>``            hash: one job (kind, state, payload, times, attempts JSON, ...)
- ``q:ready:<kind>``    zset id -> run_at: QUEUED jobs that may run (heads of their key)
- ``q:leased:<kind>``   zset id -> lease expiry: LEASED jobs; an expired one is takeable
- ``q:kinds``           set of kinds ever enqueued (lease without a kind filter)
- ``q:counts:<kind>``   hash queued/leased/dead counters (bounded queues, stats)
- ``q:okey:<key>``      list of the key's QUEUED/LEASED/DEAD job ids in enqueue order
- ``q:okall:<key>``     zset (score 0, by id) of every job of the key until purged
- ``q:dedupe:<key>``    string: job id
- ``q:dead``, ``q:deadk:<kind>``  zsets (score 0, by id) of DEAD jobs
- ``q:finished``        zset id -> updated_at of SUCCEEDED/DISCARDED jobs (purge)
- ``q:lastid``          the greatest job id stored (ids never go backwards)

Times travel as Python ``repr(float)`` strings and are stored verbatim: Lua would print a
double with 14 significant digits only, so scripts never format a number they computed.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

__all__ = [
    "ACK",
    "AUDIT_APPEND",
    "CAS",
    "DEAD_LETTER",
    "DISCARD",
    "ENQUEUE",
    "HEARTBEAT",
    "INCR",
    "LEASE",
    "LOCK_ACQUIRE",
    "LOCK_RELEASE",
    "PURGE_FINISHED",
    "REPLAY",
    "REQUEUE",
    "Script",
]


@dataclass(frozen=True)
class Script:
    name: str
    source: str
    sha: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sha", hashlib.sha1(self.source.encode()).hexdigest())  # noqa: S324


_HELPERS = r"""
local ALPHABET = '0123456789ABCDEFGHJKMNPQRSTVWXYZ'
-- the ULID right after u (Crockford base32, carry to the left)
local function ulid_after(u)
  local i = #u
  while i > 0 do
    local pos = string.find(ALPHABET, string.sub(u, i, i), 1, true)
    if pos < 32 then
      return string.sub(u, 1, i - 1) .. string.sub(ALPHABET, pos + 1, pos + 1)
        .. string.rep('0', #u - i)
    end
    i = i - 1
  end
  error('ULID overflow')
end
local function append_json(list, item)
  if list == false or list == nil or list == '' or list == '[]' then
    return '[' .. item .. ']'
  end
  return string.sub(list, 1, -2) .. ',' .. item .. ']'
end
-- a job hash as one JSON object string: one bulk reply parses far faster than ~30 items
local function job_json(jk)
  local flat = redis.call('HGETALL', jk)
  local h = {}
  for i = 1, #flat, 2 do h[flat[i]] = flat[i + 1] end
  return cjson.encode(h)
end
-- end a held lease: the job leaves its kind's leased set and in-flight count
local function release_lease(p, jk, id, kind)
  redis.call('HDEL', jk, 'owner', 'lexp')
  redis.call('ZREM', p .. 'q:leased:' .. kind, id)
  redis.call('HINCRBY', p .. 'q:counts:' .. kind, 'leased', -1)
end
-- make the oldest active job of the key eligible if it is QUEUED
local function promote(p, okey)
  local head = redis.call('LINDEX', p .. 'q:okey:' .. okey, 0)
  if head then
    local h = redis.call('HMGET', p .. 'j:' .. head, 'state', 'kind', 'run_at')
    if h[1] == 'queued' then
      redis.call('ZADD', p .. 'q:ready:' .. h[2], h[3], head)
    end
  end
end
"""


def _script(name: str, body: str) -> Script:
    return Script(name, _HELPERS + body)


# ARGV: p, id, kind, payload, now, run_at, okey, dkey, request_id, client_id, max_queued(-1)
# -> {1, id} created | {0, id, job JSON} deduplicated | {-1} full
ENQUEUE = _script(
    "enqueue",
    r"""
local p = ARGV[1]
local proposed = ARGV[2]
local dkey = ARGV[8]
if dkey ~= '' then
  local existing = redis.call('GET', p .. 'q:dedupe:' .. dkey)
  if existing and redis.call('EXISTS', p .. 'j:' .. existing) == 1 then
    return {0, existing, job_json(p .. 'j:' .. existing)}
  end
end
local kind = ARGV[3]
local maxq = tonumber(ARGV[11])
if maxq >= 0 then
  local n = tonumber(redis.call('HGET', p .. 'q:counts:' .. kind, 'queued') or '0')
  if n >= maxq then return {-1} end
end
local id = proposed
local last = redis.call('GET', p .. 'q:lastid')
if last and id <= last then id = ulid_after(last) end
redis.call('SET', p .. 'q:lastid', id)
local jk = p .. 'j:' .. id
redis.call('HSET', jk, 'kind', kind, 'state', 'queued', 'payload', ARGV[4],
  'created_at', ARGV[5], 'updated_at', ARGV[5], 'run_at', ARGV[6], 'attempts', '[]')
if ARGV[7] ~= '' then redis.call('HSET', jk, 'okey', ARGV[7]) end
if dkey ~= '' then
  redis.call('HSET', jk, 'dkey', dkey)
  redis.call('SET', p .. 'q:dedupe:' .. dkey, id)
end
if ARGV[9] ~= '' then redis.call('HSET', jk, 'rid', ARGV[9]) end
if ARGV[10] ~= '' then redis.call('HSET', jk, 'cid', ARGV[10]) end
redis.call('SADD', p .. 'q:kinds', kind)
redis.call('HINCRBY', p .. 'q:counts:' .. kind, 'queued', 1)
local eligible = true
if ARGV[7] ~= '' then
  local n = redis.call('RPUSH', p .. 'q:okey:' .. ARGV[7], id)
  redis.call('ZADD', p .. 'q:okall:' .. ARGV[7], 0, id)
  eligible = (n == 1)
end
if eligible then redis.call('ZADD', p .. 'q:ready:' .. kind, ARGV[6], id) end
return {1, id}
""",
)

# ARGV: p, owner, now, expires, nkinds (-1 = all), kinds... -> {id, job JSON} | false
LEASE = _script(
    "lease",
    r"""
local p = ARGV[1]
local kinds
if tonumber(ARGV[5]) < 0 then
  kinds = redis.call('SMEMBERS', p .. 'q:kinds')
else
  kinds = {}
  for i = 6, #ARGV do kinds[#kinds + 1] = ARGV[i] end
end
local best, best_score, best_kind, from_ready
for _, k in ipairs(kinds) do
  local r = redis.call('ZRANGEBYSCORE', p .. 'q:ready:' .. k, '-inf', ARGV[3],
    'LIMIT', 0, 1, 'WITHSCORES')
  if r[1] then
    local s = tonumber(r[2])
    if best == nil or s < best_score then
      best, best_score, best_kind, from_ready = r[1], s, k, true
    end
  end
  local l = redis.call('ZRANGEBYSCORE', p .. 'q:leased:' .. k, '-inf', ARGV[3],
    'LIMIT', 0, 1, 'WITHSCORES')
  if l[1] then
    local s = tonumber(l[2])
    if best == nil or s < best_score then
      best, best_score, best_kind, from_ready = l[1], s, k, false
    end
  end
end
if best == nil then return false end
local jk = p .. 'j:' .. best
if from_ready then
  redis.call('ZREM', p .. 'q:ready:' .. best_kind, best)
  redis.call('HINCRBY', p .. 'q:counts:' .. best_kind, 'queued', -1)
  redis.call('HINCRBY', p .. 'q:counts:' .. best_kind, 'leased', 1)
end
redis.call('ZADD', p .. 'q:leased:' .. best_kind, ARGV[4], best)
redis.call('HSET', jk, 'state', 'leased', 'owner', ARGV[2], 'lexp', ARGV[4],
  'updated_at', ARGV[3])
return {best, job_json(jk)}
""",
)

# ARGV: p, id, owner, now, expires -> 1 | 0
HEARTBEAT = _script(
    "heartbeat",
    r"""
local p = ARGV[1]
local jk = p .. 'j:' .. ARGV[2]
local f = redis.call('HMGET', jk, 'state', 'owner', 'kind')
if f[1] ~= 'leased' or f[2] ~= ARGV[3] then return 0 end
redis.call('HSET', jk, 'lexp', ARGV[5], 'updated_at', ARGV[4])
redis.call('ZADD', p .. 'q:leased:' .. f[3], ARGV[5], ARGV[2])
return 1
""",
)

# ARGV: p, id, owner, now, attempt_json, result_json ('' = none) -> 1 | 0
ACK = _script(
    "ack",
    r"""
local p = ARGV[1]
local id = ARGV[2]
local jk = p .. 'j:' .. id
local f = redis.call('HMGET', jk, 'state', 'owner', 'kind', 'okey', 'attempts')
if f[1] ~= 'leased' or f[2] ~= ARGV[3] then return 0 end
redis.call('HSET', jk, 'state', 'succeeded', 'updated_at', ARGV[4],
  'attempts', append_json(f[5], ARGV[5]))
if ARGV[6] ~= '' then redis.call('HSET', jk, 'result', ARGV[6]) end
release_lease(p, jk, id, f[3])
redis.call('ZADD', p .. 'q:finished', ARGV[4], id)
if f[4] then
  redis.call('LREM', p .. 'q:okey:' .. f[4], 1, id)
  promote(p, f[4])
end
return 1
""",
)

# retry (with an attempt) and defer (without): back to QUEUED at run_at, still the key's head
# ARGV: p, id, owner, now, run_at, attempt_json ('' = defer), last_error ('' = keep) -> 1 | 0
REQUEUE = _script(
    "requeue",
    r"""
local p = ARGV[1]
local id = ARGV[2]
local jk = p .. 'j:' .. id
local f = redis.call('HMGET', jk, 'state', 'owner', 'kind', 'attempts')
if f[1] ~= 'leased' or f[2] ~= ARGV[3] then return 0 end
redis.call('HSET', jk, 'state', 'queued', 'run_at', ARGV[5], 'updated_at', ARGV[4])
if ARGV[6] ~= '' then
  redis.call('HSET', jk, 'attempts', append_json(f[4], ARGV[6]))
  if ARGV[7] ~= '' then redis.call('HSET', jk, 'err', ARGV[7]) end
end
release_lease(p, jk, id, f[3])
redis.call('ZADD', p .. 'q:ready:' .. f[3], ARGV[5], id)
redis.call('HINCRBY', p .. 'q:counts:' .. f[3], 'queued', 1)
return 1
""",
)

# ARGV: p, id, owner, now, attempt_json, last_error ('' = none) -> 1 | 0
DEAD_LETTER = _script(
    "dead_letter",
    r"""
local p = ARGV[1]
local id = ARGV[2]
local jk = p .. 'j:' .. id
local f = redis.call('HMGET', jk, 'state', 'owner', 'kind', 'attempts')
if f[1] ~= 'leased' or f[2] ~= ARGV[3] then return 0 end
redis.call('HSET', jk, 'state', 'dead', 'updated_at', ARGV[4],
  'attempts', append_json(f[4], ARGV[5]))
if ARGV[6] ~= '' then redis.call('HSET', jk, 'err', ARGV[6]) else redis.call('HDEL', jk, 'err') end
release_lease(p, jk, id, f[3])
redis.call('HINCRBY', p .. 'q:counts:' .. f[3], 'dead', 1)
redis.call('ZADD', p .. 'q:dead', 0, id)
redis.call('ZADD', p .. 'q:deadk:' .. f[3], 0, id)
return 1
""",
)

# ARGV: p, id, now -> job JSON | false
REPLAY = _script(
    "replay",
    r"""
local p = ARGV[1]
local id = ARGV[2]
local jk = p .. 'j:' .. id
local f = redis.call('HMGET', jk, 'state', 'kind', 'okey')
if f[1] ~= 'dead' then return false end
redis.call('HSET', jk, 'state', 'queued', 'run_at', ARGV[3], 'updated_at', ARGV[3])
redis.call('ZREM', p .. 'q:dead', id)
redis.call('ZREM', p .. 'q:deadk:' .. f[2], id)
redis.call('HINCRBY', p .. 'q:counts:' .. f[2], 'dead', -1)
redis.call('HINCRBY', p .. 'q:counts:' .. f[2], 'queued', 1)
if (not f[3]) or redis.call('LINDEX', p .. 'q:okey:' .. f[3], 0) == id then
  redis.call('ZADD', p .. 'q:ready:' .. f[2], ARGV[3], id)
end
return job_json(jk)
""",
)

# ARGV: p, id, now -> job JSON | false
DISCARD = _script(
    "discard",
    r"""
local p = ARGV[1]
local id = ARGV[2]
local jk = p .. 'j:' .. id
local f = redis.call('HMGET', jk, 'state', 'kind', 'okey')
if f[1] ~= 'dead' then return false end
redis.call('HSET', jk, 'state', 'discarded', 'updated_at', ARGV[3])
redis.call('ZREM', p .. 'q:dead', id)
redis.call('ZREM', p .. 'q:deadk:' .. f[2], id)
redis.call('HINCRBY', p .. 'q:counts:' .. f[2], 'dead', -1)
redis.call('ZADD', p .. 'q:finished', ARGV[3], id)
if f[3] then
  redis.call('LREM', p .. 'q:okey:' .. f[3], 1, id)
  promote(p, f[3])
end
return job_json(jk)
""",
)

# ARGV: p, older_than, batch -> how many finished jobs were examined
PURGE_FINISHED = _script(
    "purge_finished",
    r"""
local p = ARGV[1]
local ids = redis.call('ZRANGEBYSCORE', p .. 'q:finished', '-inf', '(' .. ARGV[2],
  'LIMIT', 0, tonumber(ARGV[3]))
local deleted = 0
for _, id in ipairs(ids) do
  local jk = p .. 'j:' .. id
  local f = redis.call('HMGET', jk, 'state', 'okey', 'dkey')
  if f[1] == 'succeeded' or f[1] == 'discarded' then
    if f[2] then redis.call('ZREM', p .. 'q:okall:' .. f[2], id) end
    if f[3] and redis.call('GET', p .. 'q:dedupe:' .. f[3]) == id then
      redis.call('DEL', p .. 'q:dedupe:' .. f[3])
    end
    redis.call('DEL', jk)
    deleted = deleted + 1
  end
  redis.call('ZREM', p .. 'q:finished', id)
end
return {#ids, deleted}
""",
)

# values and locks: plain KEYS

# KEYS: key; ARGV: has_expected (0/1), expected, value, ttl_ms ('' = none) -> 1 | 0
CAS = Script(
    "cas",
    r"""
local cur = redis.call('GET', KEYS[1])
if ARGV[1] == '1' then
  if cur ~= ARGV[2] then return 0 end
elseif cur then
  return 0
end
if ARGV[4] ~= '' then
  redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[4])
else
  redis.call('SET', KEYS[1], ARGV[3])
end
return 1
""",
)

# KEYS: key; ARGV: amount, ttl_ms ('' = none) -> new value
INCR = Script(
    "incr",
    r"""
local existed = redis.call('EXISTS', KEYS[1])
local v = redis.call('INCRBY', KEYS[1], ARGV[1])
if existed == 0 and ARGV[2] ~= '' then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return v
""",
)

# KEYS: lock, token; ARGV: owner, ttl_ms -> token | false
LOCK_ACQUIRE = Script(
    "lock_acquire",
    r"""
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return tonumber(redis.call('GET', KEYS[2]) or '0')
end
if holder then return false end
local token = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return token
""",
)

# KEYS: lock; ARGV: owner -> 1 | 0
LOCK_RELEASE = Script(
    "lock_release",
    r"""
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
""",
)

# The audit chain's compare-and-set: append a batch only if the head is still the one the
# hashes were computed from; otherwise return the actual head so the caller can recompute.
# ARGV: p, expected_head ('' = empty chain), new_head, n, then per record:
#       seq, json, at, n_index_keys, index keys...
# -> 1 | actual head (string)
AUDIT_APPEND = Script(
    "audit_append",
    r"""
local p = ARGV[1]
local cur = redis.call('GET', p .. 'a:head') or ''
if cur ~= ARGV[2] then return cur end
local n = tonumber(ARGV[4])
local i = 5
local first = nil
for _ = 1, n do
  local seq = ARGV[i]
  if first == nil then first = seq end
  redis.call('HSET', p .. 'a:rec', seq, ARGV[i + 1])
  redis.call('ZADD', p .. 'a:ix:at', ARGV[i + 2], seq)
  local nk = tonumber(ARGV[i + 3])
  for k = 1, nk do
    redis.call('ZADD', ARGV[i + 3 + k], seq, seq)
  end
  i = i + 4 + nk
end
if cur == '' and first then redis.call('SETNX', p .. 'a:first', first) end
redis.call('SET', p .. 'a:head', ARGV[3])
return 1
""",
)
