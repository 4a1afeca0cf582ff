"""The Lua scripts of the Redis feature state: each runs atomically, one call per batch.

Layout under the prefix ``P``: ``P e:<entity>:<key>`` is a sorted set of that entity's events scored
by event time, each member ``<seq>\\x1f<payload>`` so that ties in time keep arrival order;
``P l:<entity>:<key>`` holds the arrived fraud labels the same way; ``P t:<transaction_id>`` marks a
recorded transaction (its fraud flag, time and label keys) and is what makes ``record`` idempotent;
``P newest`` is the newest event time, ``P pruned`` the newest time at the last prune (the horizon is
``retention + grace`` behind it, moved in the same steps as in memory), ``P seq`` the arrival counter.
Keys are built inside the scripts, so this targets a single Redis (or a replica set), not Redis Cluster.
"""

from __future__ import annotations

_SPLIT = """
local function split(s, sep)
  local out, pos = {}, 1
  while true do
    local j = string.find(s, sep, pos, true)
    if not j then out[#out + 1] = string.sub(s, pos); return out end
    out[#out + 1] = string.sub(s, pos, j - 1)
    pos = j + 1
  end
end
"""

RECORD = (
    _SPLIT
    + r"""
-- ARGV: prefix, ttl, span (retention + grace), prune interval, n, E, E entity names, then the columns
-- joined: transaction ids, timestamps (score strings), payloads (\30-separated), E key columns (\24 = none).
local P, ttl, span, every = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local n, E = tonumber(ARGV[5]), tonumber(ARGV[6])
local txs, tss, pays = split(ARGV[7 + E], '\31'), split(ARGV[8 + E], '\31'), split(ARGV[9 + E], '\30')
local ekeys, lkeys, cols = {}, {}, {}
for e = 1, E do
  ekeys[e] = P .. 'e:' .. ARGV[6 + e] .. ':'
  lkeys[e] = P .. 'l:' .. ARGV[6 + e] .. ':'
  cols[e] = split(ARGV[9 + E + e], '\31')
end
local base = redis.call('INCRBY', P .. 'seq', n) - n
local newest = tonumber(redis.call('GET', P .. 'newest') or '')
local top = newest
local out, touched = {}, {}
for i = 1, n do
  local ts, pay = tss[i], pays[i]
  local info = {ts, string.sub(pay, 1, 16)}
  for e = 1, E do
    local k = cols[e][i]
    if k ~= '\24' then info[#info + 1] = lkeys[e] .. k end
  end
  if redis.call('SET', P .. 't:' .. txs[i], '0' .. table.concat(info, '\31'), 'NX', 'EX', ttl) then
    out[i] = '1'
    local t = tonumber(ts)
    if t == t then
      local member = string.format('%016d', base + i) .. '\31' .. pay
      for e = 1, E do
        local k = cols[e][i]
        if k ~= '\24' then
          local key = ekeys[e] .. k
          redis.call('ZADD', key, ts, member)
          touched[key] = true
        end
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
  local horizon = '(' .. string.format('%.17g', pruned - span)
  for key in pairs(touched) do
    redis.call('ZREMRANGEBYSCORE', key, '-inf', horizon)
    redis.call('EXPIRE', key, ttl)
  end
end
return table.concat(out)
"""
)

LABELS = (
    _SPLIT
    + r"""
-- ARGV: prefix, ttl, span, n, transaction ids (\31-joined), label times (16 hex digits each, concatenated).
local P, ttl, span, n = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local txs, lts = split(ARGV[5], '\31'), ARGV[6]
local pruned = tonumber(redis.call('GET', P .. 'pruned') or '')
local horizon = pruned and (pruned - span)
local base = redis.call('INCRBY', P .. 'seq', n) - n
local added, touched = 0, {}
for i = 1, n do
  local tkey = P .. 't:' .. txs[i]
  local v = redis.call('GET', tkey)
  if v and string.sub(v, 1, 1) == '0' then
    local info = split(string.sub(v, 2), '\31')
    local t = tonumber(info[1])
    if horizon == nil or not (t < horizon) then
      redis.call('SET', tkey, '1' .. string.sub(v, 2), 'KEEPTTL')
      added = added + 1
      if t == t then
        local lt = string.sub(lts, 16 * i - 15, 16 * i)
        local member = string.format('%016d', base + i) .. '\31' .. info[2] .. lt
        for j = 3, #info do
          redis.call('ZADD', info[j], info[1], member)
          touched[info[j]] = true
        end
      end
    end
  end
end
for key in pairs(touched) do
  if horizon then redis.call('ZREMRANGEBYSCORE', key, '-inf', '(' .. string.format('%.17g', horizon)) end
  redis.call('EXPIRE', key, ttl)
end
return added
"""
)

FETCH = (
    _SPLIT
    + r"""
-- ARGV: prefix, entity, since, span, keys (\31-joined). Returns counts and members per key, both for
-- events and labels; nothing below the pruning horizon is returned (it is what pruning forgot).
local P, entity, lo, span = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local pruned = tonumber(redis.call('GET', P .. 'pruned') or '')
if pruned then
  local h = pruned - span
  local since = tonumber(lo)
  if since == nil or h > since then lo = string.format('%.17g', h) end
end
local ep, lp = P .. 'e:' .. entity .. ':', P .. 'l:' .. entity .. ':'
local counts, parts, lcounts, lparts = {}, {}, {}, {}
for i, k in ipairs(split(ARGV[5], '\31')) do
  local m = redis.call('ZRANGEBYSCORE', ep .. k, lo, '+inf')
  counts[i] = #m
  if #m > 0 then parts[#parts + 1] = table.concat(m, '\31') end
  local l = redis.call('ZRANGEBYSCORE', lp .. k, lo, '+inf')
  lcounts[i] = #l
  if #l > 0 then lparts[#lparts + 1] = table.concat(l, '\31') end
end
return {table.concat(counts, ','), parts, table.concat(lcounts, ','), lparts}
"""
)
