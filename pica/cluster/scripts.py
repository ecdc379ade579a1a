"""Lua scripts of the registry and of presence: each runs atomically inside Redis.

Why scripts: a presence transition ("this was the user's first device anywhere") is a read-modify-write over two
sets and the registry; done as separate commands from two nodes at once, both could conclude "first" (or neither
"last"). A script is atomic, needs no WATCH/retry loop, and costs one round trip for a whole batch of users.

Time comes from Redis (``TIME``), never from the nodes: the registry compares every node's expiry with one clock,
so clock skew between hosts cannot make a live node look dead. Redis 7 replicates script effects, so ``TIME``
inside a writing script is allowed.

Keys are built inside the scripts from ``ARGV[1]``, the prefix followed by the hash tag ``{r}``
(:mod:`pica.cluster.keys`): every key a script touches is in that one slot, which Redis Cluster requires, and
``KEYS[1]`` (the ``nodes`` key) routes the call to the shard owning it. Redis lets a script reach undeclared keys of
its declared slot.

Keys (``P`` = prefix and tag, ``pica:{r}`` by default):

- ``P nodes``: sorted set, member node id, score = expiry in ms (Redis time). Live = score > now.
- ``P node:{id}``: hash, the node's :class:`~pica.cluster.node.NodeInfo`; PEXPIREs with the node.
- ``P online:{uid}``: set of node ids holding a device of the user.
- ``P node_users:{id}``: set of user ids with a device on the node (what a reaper walks).
- ``P reap:{id}``: who is reaping dead node ``id`` (SET NX-like, with an expiry so a crashed reaper is replaced).
- ``P reaped:{id}``: marker left for node ``id``, should it come back after being declared dead (a long pause):
  it must re-announce its users, whose "offline" the reaper already announced.
"""

from __future__ import annotations

from typing import Final

_PRELUDE: Final = """
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function is_live(nodes, node, now)
  local score = redis.call('ZSCORE', nodes, node)
  return score and tonumber(score) > now
end
local function is_registered(nodes, node)
  return redis.call('ZSCORE', nodes, node) ~= false
end
"""

HEARTBEAT: Final = _PRELUDE + """
-- ARGV: prefix, node id, ttl ms, then the node hash as field, value, ...
-- Returns {added, reaped, live ids, {hash of each live id}, dead ids (at most 8)}.
local prefix, me, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3])
local nodes = prefix .. 'nodes'
local now = now_ms()
local added = redis.call('ZADD', nodes, now + ttl, me)
local info = prefix .. 'node:' .. me
redis.call('HSET', info, unpack(ARGV, 4))
redis.call('PEXPIRE', info, ttl)
local reaped = redis.call('DEL', prefix .. 'reaped:' .. me)
local live = redis.call('ZRANGEBYSCORE', nodes, '(' .. now, '+inf')
local infos = {}
for i, id in ipairs(live) do
  infos[i] = redis.call('HGETALL', prefix .. 'node:' .. id)
end
local dead = redis.call('ZRANGEBYSCORE', nodes, '-inf', now, 'LIMIT', 0, 8)
return {added, reaped, live, infos, dead}
"""

REAP: Final = _PRELUDE + """
-- Remove up to `chunk` users of node `dead` from presence.
-- ARGV: prefix, dead id, my id, chunk, lock ms, force ('1': this node leaving, no checks)
-- Returns {status, user ids left with no registered node}: status 1 done (node removed), 0 more to do,
-- -1 not ours to reap (it is alive again, or another node holds the lock).
local prefix, dead, me = ARGV[1], ARGV[2], ARGV[3]
local chunk, lock_ms, force = tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6] == '1'
local nodes = prefix .. 'nodes'
local now = now_ms()
local lock = prefix .. 'reap:' .. dead
if not force then
  if is_live(nodes, dead, now) then return {-1, {}} end
  local holder = redis.call('GET', lock)
  if holder and holder ~= me then return {-1, {}} end
  redis.call('SET', lock, me, 'PX', lock_ms)
  redis.call('SET', prefix .. 'reaped:' .. dead, me, 'PX', 86400000)
end
local users = prefix .. 'node_users:' .. dead
local uids = redis.call('SPOP', users, chunk)
local gone = {}
for _, uid in ipairs(uids) do
  local key = prefix .. 'online:' .. uid
  redis.call('SREM', key, dead)
  local held = false
  for _, node in ipairs(redis.call('SMEMBERS', key)) do
    if is_registered(nodes, node) then held = true break end
  end
  if not held then gone[#gone + 1] = uid end
end
if redis.call('SCARD', users) == 0 then
  redis.call('ZREM', nodes, dead)
  redis.call('DEL', prefix .. 'node:' .. dead, lock)
  return {1, gone}
end
return {0, gone}
"""

APPLY: Final = _PRELUDE + """
-- This node's users came (op '1') or went (op '0').
-- ARGV: prefix, my id, then user id, op, user id, op, ...
-- Returns {user id, alone, ...}: for '1', alone = no other live node holds the user; for '0', alone = no
-- registered node holds the user any more (a dead node not yet reaped still holds it: its reaper reports it).
local prefix, me = ARGV[1], ARGV[2]
local nodes = prefix .. 'nodes'
local mine = prefix .. 'node_users:' .. me
local now = now_ms()
local out = {}
for i = 3, #ARGV, 2 do
  local uid, op = ARGV[i], ARGV[i + 1]
  local key = prefix .. 'online:' .. uid
  local alone = 1
  if op == '1' then
    redis.call('SADD', mine, uid)
    redis.call('SADD', key, me)
    for _, node in ipairs(redis.call('SMEMBERS', key)) do
      if node ~= me and is_live(nodes, node, now) then alone = 0 break end
    end
  else
    redis.call('SREM', mine, uid)
    redis.call('SREM', key, me)
    for _, node in ipairs(redis.call('SMEMBERS', key)) do
      if is_registered(nodes, node) then alone = 0 break end
    end
  end
  out[#out + 1] = uid
  out[#out + 1] = alone
end
return out
"""

ONLINE: Final = _PRELUDE + """
-- ARGV: prefix, my id, user id, ... Returns the user ids held by a live node other than mine (the caller knows
-- its own devices better than Redis does).
local prefix, me = ARGV[1], ARGV[2]
local nodes = prefix .. 'nodes'
local now = now_ms()
local out = {}
for i = 3, #ARGV do
  for _, node in ipairs(redis.call('SMEMBERS', prefix .. 'online:' .. ARGV[i])) do
    if node ~= me and is_live(nodes, node, now) then out[#out + 1] = ARGV[i] break end
  end
end
return out
"""

PUBLISH_MANY: Final = """
-- KEYS[1]: a channel of the batch (routes the call on Redis Cluster; every channel must share its slot).
-- ARGV: channel, message, channel, message, ... Published (sharded pub/sub) in order; returns how many.
for i = 1, #ARGV, 2 do
  redis.call('SPUBLISH', ARGV[i], ARGV[i + 1])
end
return #ARGV / 2
"""

BUCKET: Final = """
-- A token bucket shared by every node (pica/core/ratelimit.py has the same arithmetic for a node's own buckets).
-- KEYS[1]: the bucket (a hash: tokens, stamp in Redis ms). ARGV: count, period in ms, cost, mode:
-- 'take' (spend cost or nothing), 'wait' (spend nothing), 'charge' (spend cost, down to empty).
-- Returns the ms until the tokens asked for are there (0: now), as a string (Lua numbers would be truncated).
-- The hash expires one period after its last write: by then it is full again, the same as absent.
local count, per, cost, mode = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'stamp')
local tokens = tonumber(state[1]) or count
local stamp = tonumber(state[2]) or now
if now > stamp then
  tokens = math.min(count, tokens + (now - stamp) * count / per)
  stamp = now
end
local wait = 0
if mode == 'take' then
  cost = math.min(cost, count)
  if tokens >= cost then tokens = tokens - cost else wait = (cost - tokens) * per / count end
elseif mode == 'wait' then
  if tokens < 1 then wait = (1 - tokens) * per / count end
else
  tokens = math.max(0, tokens - cost)
end
if mode ~= 'wait' then
  redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'stamp', tostring(stamp))
  redis.call('PEXPIRE', KEYS[1], math.ceil(per))
end
return tostring(wait)
"""
