"""The Lua scripts of the Redis feature state: each runs atomically, one call per batch.

Every write takes arrival numbers from one counter, ``P seq``, so a process that has read a key up to
some number need only ask for what came after it. Under the prefix ``P``, ``P a:<entity>:<key>`` holds
that key's events and fraud labels, a sorted set scored by arrival number: an event is
``<seq>\\x1d<time>\\x1f<payload>``, a label ``<seq>\\x1e<tx time>\\x1f<tx time><label time>`` (hex), and the
member ``~`` is scored ``GEN + <arrival number when the set was created>`` (kept by ``ZADD LT``), so a
reader notices a set that expired and came back. Pruning trims a set's oldest arrivals below the horizon
now and then when the set is written; readers filter by the horizon themselves, so what lingers is
never returned.

``P x:<transaction_id>`` marks a recorded transaction (its label flag, time and entity keys) and is what
makes ``record`` idempotent and what ``recorded`` asks about; ``P newest`` is the newest event time,
``P pruned`` the newest time at the last prune (the horizon is ``retention + grace`` behind it, moved in
the same steps as in memory), and ``P epoch`` is set when the state is first written, so readers notice
it was deleted and started again.
Keys are built inside the scripts, so this targets a single Redis (or a replica set), not Redis Cluster.
"""

from __future__ import annotations

GEN = 10**15
"""Added to the creation number in the score of a set's ``~`` member, above every arrival number."""

_COMMON = r"""
local GEN = 1e15
local function split(s, sep)
  local out, pos = {}, 1
  while true do
    local j = string.find(s, sep, pos, true)
    if not j then out[#out + 1] = string.sub(s, pos); return out end
    out[#out + 1] = string.sub(s, pos, j - 1)
    pos = j + 1
  end
end
local function begin(P, n)
  if redis.call('EXISTS', P .. 'epoch') == 0 then
    local now = redis.call('TIME')
    redis.call('SET', P .. 'epoch', now[1] .. '.' .. now[2])
  end
  return redis.call('INCRBY', P .. 'seq', n) - n
end
-- Adds each set's new members in one ZADD; LT keeps the '~' score of the set's creation. A set that got
-- an arrival number divisible by 8 then has its oldest arrivals below the horizon (a number, or nil
-- before any prune) trimmed: amortised, since readers filter by the horizon anyway. Refreshes the expiry.
local function store(P, adds, base, horizon, ttl)
  local gen = string.format('%.17g', GEN + base)
  for suffix, args in pairs(adds) do
    local key = P .. 'a:' .. suffix
    local trim = false
    for j = 1, #args, 2 do
      if tonumber(args[j]) % 8 == 0 then trim = true; break end
    end
    args[#args + 1] = gen
    args[#args + 1] = '~'
    for lo = 1, #args, 4000 do
      redis.call('ZADD', key, 'LT', unpack(args, lo, math.min(lo + 3999, #args)))
    end
    if horizon and trim then
      while true do
        local first, cut = redis.call('ZRANGE', key, 0, 7), 0
        for _, m in ipairs(first) do
          if m == '~' then break end
          local t = tonumber(string.sub(m, 18, string.find(m, '\31', 18, true) - 1))
          if not (t < horizon) then break end
          cut = cut + 1
        end
        if cut > 0 then redis.call('ZREMRANGEBYRANK', key, 0, cut - 1) end
        if cut < 8 then break end
      end
    end
    redis.call('EXPIRE', key, ttl)
  end
end
"""

RECORD = (
    _COMMON
    + r"""
-- ARGV: prefix, ttl, span (retention + grace), prune interval, n, E, E entity names, then the columns
-- joined: transaction ids, timestamps (score strings), payloads (\30-separated), E key columns (\24 = none).
local P, ttl, span, every = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local n, E = tonumber(ARGV[5]), tonumber(ARGV[6])
local txs, tss, pays = split(ARGV[7 + E], '\31'), split(ARGV[8 + E], '\31'), split(ARGV[9 + E], '\30')
local names, cols = {}, {}
for e = 1, E do
  names[e] = ARGV[6 + e] .. ':'
  cols[e] = split(ARGV[9 + E + e], '\31')
end
local base = begin(P, n)
local newest = tonumber(redis.call('GET', P .. 'newest') or '')
local top = newest
local out, adds = {}, {}
for i = 1, n do
  local ts, pay = tss[i], pays[i]
  local info = {ts, string.sub(pay, 1, 16)}
  for e = 1, E do
    local k = cols[e][i]
    if k ~= '\24' then info[#info + 1] = names[e] .. k end
  end
  if redis.call('SET', P .. 'x:' .. txs[i], '0' .. table.concat(info, '\31'), 'NX', 'EX', ttl) then
    out[i] = '1'
    local t = tonumber(ts)
    if t == t then
      local seq = string.format('%016d', base + i)
      local member = seq .. '\29' .. ts .. '\31' .. pay
      for j = 3, #info do
        local args = adds[info[j]]
        if not args then args = {}; adds[info[j]] = args end
        args[#args + 1] = seq
        args[#args + 1] = member
      end
      if top == nil or t > top then top = t end
    end
  else
    out[i] = '0'
  end
end
if top ~= nil then
  if newest == nil or top > newest then redis.call('SET', P .. 'newest', string.format('%.17g', top)) end
  -- Pruning moves in steps, as in memory: the horizon is fixed at the newest time of the last prune.
  local pruned = tonumber(redis.call('GET', P .. 'pruned') or '')
  if pruned == nil or top - pruned >= every then
    pruned = top
    redis.call('SET', P .. 'pruned', string.format('%.17g', top))
  end
  store(P, adds, base, pruned - span, ttl)
end
return table.concat(out)
"""
)

LABELS = (
    _COMMON
    + r"""
-- ARGV: prefix, ttl, span, n, transaction ids (\31-joined), label times (16 hex digits each, concatenated).
local P, ttl, span, n = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local txs, lts = split(ARGV[5], '\31'), ARGV[6]
local pruned = tonumber(redis.call('GET', P .. 'pruned') or '')
local horizon = pruned and (pruned - span)
local base = begin(P, n)
local added, adds = 0, {}
for i = 1, n do
  local xkey = P .. 'x:' .. txs[i]
  local v = redis.call('GET', xkey)
  if v and string.sub(v, 1, 1) == '0' then
    local info = split(string.sub(v, 2), '\31')
    local t = tonumber(info[1])
    if horizon == nil or not (t < horizon) then
      redis.call('SET', xkey, '1' .. string.sub(v, 2), 'KEEPTTL')
      added = added + 1
      if t == t then
        local seq = string.format('%016d', base + i)
        local member = seq .. '\30' .. info[1] .. '\31' .. info[2] .. string.sub(lts, 16 * i - 15, 16 * i)
        for j = 3, #info do
          local args = adds[info[j]]
          if not args then args = {}; adds[info[j]] = args end
          args[#args + 1] = seq
          args[#args + 1] = member
        end
      end
    end
  end
end
store(P, adds, base, horizon, ttl)
return added
"""
)

FETCH = (
    _COMMON
    + r"""
-- ARGV: prefix, entity, span, keys (\31-joined), for each key the arrival number already read (\31-joined).
-- Returns the epoch, the arrival counter, the horizon ('' before any prune), each key's '~' score ('' when
-- the key is absent), then per key the events and labels that arrived after the number given.
local P, entity, span = ARGV[1], ARGV[2], tonumber(ARGV[3])
local epoch = redis.call('GET', P .. 'epoch') or ''
local seq = redis.call('GET', P .. 'seq') or '0'
local pruned = tonumber(redis.call('GET', P .. 'pruned') or '')
local ap = P .. 'a:' .. entity .. ':'
local lasts = split(ARGV[5], '\31')
local gens, counts, parts, lcounts, lparts = {}, {}, {}, {}, {}
for i, k in ipairs(split(ARGV[4], '\31')) do
  local key, m, step = ap .. k, nil, 1
  if lasts[i] == '0' then  -- a whole read: the '~' score apart rather than every member's
    m = redis.call('ZRANGEBYSCORE', key, '-inf', '+inf')
    if #m > 0 then m[#m] = redis.call('ZSCORE', key, '~') end
  else
    m, step = redis.call('ZRANGEBYSCORE', key, '(' .. lasts[i], '+inf', 'WITHSCORES'), 2
  end
  local ne, nl = 0, 0
  if #m == 0 then
    gens[i] = ''
  elseif #m == 2 and step == 2 then  -- nothing new: just the '~' member
    gens[i] = m[2]
  else
    gens[i] = m[#m]
    local ev, lb = {}, {}
    for j = 1, #m - 1, step do
      local s = m[j]
      if string.byte(s, 17) == 29 then
        ne = ne + 1; ev[ne] = s
      elseif s ~= '~' then
        nl = nl + 1; lb[nl] = s
      end
    end
    if ne > 0 then parts[#parts + 1] = table.concat(ev, '\31') end
    if nl > 0 then lparts[#lparts + 1] = table.concat(lb, '\31') end
  end
  counts[i], lcounts[i] = ne, nl
end
return {epoch, seq, pruned and string.format('%.17g', pruned - span) or '', table.concat(gens, ','),
  table.concat(counts, ','), parts, table.concat(lcounts, ','), lparts}
"""
)

RECORDED = (
    _COMMON
    + r"""
-- ARGV: the 'P x:<transaction id>' keys (\31-joined). Returns '1' for each key that exists, else '0'.
-- MGET, a few hundred keys at a time, costs Redis less than a call per key; the values are a few bytes.
local keys, out = split(ARGV[1], '\31'), {}
for lo = 1, #keys, 500 do
  local got = redis.call('MGET', unpack(keys, lo, math.min(lo + 499, #keys)))
  for i = 1, #got do got[i] = got[i] and '1' or '0' end
  out[#out + 1] = table.concat(got)
end
return table.concat(out)
"""
)
