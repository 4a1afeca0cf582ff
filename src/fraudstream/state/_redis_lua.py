"""The Lua scripts of the Redis feature state: each runs atomically, one call per batch.

Under the prefix ``P``, ``P log`` is a stream with one entry per recorded batch (its events, columnar, and
which rows were new) or per batch of arrived labels (the new fraud labels). Every process replays it, in
order, into its own in-memory replica, so every process holds the same state a single
:class:`~fraudstream.state.memory.MemoryFeatureState` would. An entry's first field ``t`` is the newest
event (or labelled transaction) time in it, so that entries wholly behind the pruning horizon can be
trimmed from the front of the log.

``P x:<transaction_id>`` marks a recorded transaction (``1`` once its fraud label arrived): it is what
makes ``record`` idempotent and ``record_labels`` count a label once. ``P newest`` is the newest event
time, ``P pruned`` the newest time when the pruning rule last fired (the horizon is ``retention +
grace`` behind it, moved in the same steps as in memory), and ``P epoch`` is set when the state is first
written, so replicas notice that it was deleted and started again. Every write refreshes the expiry of
these keys, so a state nobody writes to for ``ttl`` seconds disappears whole.
Keys are built inside the scripts, so this targets a single Redis (or a replica set), not Redis Cluster.
"""

from __future__ import annotations

_COMMON = r"""
local NONE = '-1e308'  -- the time of an entry without one: the first trimmed
local function split(s, sep)
  local out, pos = {}, 1
  while true do
    local j = string.find(s, sep, pos, true)
    if not j then out[#out + 1] = string.sub(s, pos); return out end
    out[#out + 1] = string.sub(s, pos, j - 1)
    pos = j + 1
  end
end
local function begin(P, ttl)
  if redis.call('EXISTS', P .. 'epoch') == 0 then
    local now = redis.call('TIME')
    redis.call('SET', P .. 'epoch', now[1] .. '.' .. now[2])
  end
  for _, k in ipairs({'epoch', 'newest', 'pruned', 'log'}) do redis.call('EXPIRE', P .. k, ttl) end
end
-- Drops the log's oldest entries while their newest time is behind the horizon (each entry's first field).
local function trim(P, horizon)
  local log = P .. 'log'
  while true do
    local first = redis.call('XRANGE', log, '-', '+', 'COUNT', 64)
    local keep = nil
    for _, e in ipairs(first) do
      if not (tonumber(e[2][2]) < horizon) then keep = e[1]; break end
    end
    if keep then redis.call('XTRIM', log, 'MINID', keep); return end
    if #first < 64 then redis.call('DEL', log); return end
    local ms, seq = string.match(first[#first][1], '(%d+)-(%d+)')
    redis.call('XTRIM', log, 'MINID', ms .. '-' .. (tonumber(seq) + 1))
  end
end
"""

RECORD = (
    _COMMON
    + r"""
-- ARGV: prefix, ttl, span (retention + grace), prune interval, entity map, transaction ids (\31-joined),
-- the batch's newest event time ('' for none), float columns (bytes), identifier columns (text).
-- Returns one '1' or '0' per row: whether it was new. The batch's newest time stands for its new rows'
-- newest: a row already recorded is no newer than the state's newest event, so newest and pruned come
-- out the same.
local P, ttl, span, every = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local txs, top = split(ARGV[6], '\31'), tonumber(ARGV[7])
local out, any = {}, false
for i = 1, #txs do
  if redis.call('SET', P .. 'x:' .. txs[i], '0', 'NX', 'EX', ttl) then
    out[i], any = '1', true
  else
    out[i] = '0'
  end
end
local flags = table.concat(out)
if not any then return flags end
begin(P, ttl)
local pruned = tonumber(redis.call('GET', P .. 'pruned') or '')
local moved = false
if top ~= nil then
  local newest = tonumber(redis.call('GET', P .. 'newest') or '')
  if newest == nil or top > newest then
    redis.call('SET', P .. 'newest', string.format('%.17g', top), 'EX', ttl)
  end
  -- Pruning moves in steps, as in memory: the horizon is fixed at the newest time of the last prune.
  if pruned == nil or top - pruned >= every then
    pruned, moved = top, true
    redis.call('SET', P .. 'pruned', string.format('%.17g', top), 'EX', ttl)
  end
end
local p = pruned and string.format('%.17g', pruned) or ''
local t = top and string.format('%.17g', top) or NONE
redis.call('XADD', P .. 'log', '*', 't', t, 'p', p, 'n', ARGV[5], 'x', ARGV[6], 'f', ARGV[8], 's', ARGV[9],
  'm', flags)
redis.call('EXPIRE', P .. 'log', ttl)
if moved then trim(P, pruned - span) end
return flags
"""
)

LABELS = (
    _COMMON
    + r"""
-- ARGV: prefix, ttl, transaction ids (\31-joined), label times (\31-joined exact float strings), the newest
-- of those transactions' times. The caller passes only transactions its replica holds (recorded and not
-- pruned). Returns how many fraud labels were new; logs those.
local P, ttl = ARGV[1], tonumber(ARGV[2])
local txs, lts = split(ARGV[3], '\31'), split(ARGV[4], '\31')
local ids, times = {}, {}
for i = 1, #txs do
  local xkey = P .. 'x:' .. txs[i]
  if redis.call('GET', xkey) == '0' then
    redis.call('SET', xkey, '1', 'KEEPTTL')
    ids[#ids + 1], times[#times + 1] = txs[i], lts[i]
  end
end
if #ids == 0 then return 0 end
begin(P, ttl)
redis.call('XADD', P .. 'log', '*', 't', ARGV[5], 'l', table.concat(ids, '\31'),
  'lt', table.concat(times, '\31'))
redis.call('EXPIRE', P .. 'log', ttl)
return #ids
"""
)

READ = r"""
-- ARGV: prefix, the last entry id read ('' for none), most entries to return.
-- Returns the epoch ('' when the state is absent), 1 when the entry read last is still there or was
-- trimmed (0 when the log lost it otherwise: restored from an older copy), then the entries after it.
local P, last, count = ARGV[1], ARGV[2], ARGV[3]
local log = P .. 'log'
local epoch = redis.call('GET', P .. 'epoch') or ''
if last == '' then return {epoch, 1, redis.call('XRANGE', log, '-', '+', 'COUNT', count)} end
local kept = 1
if #redis.call('XRANGE', log, last, last) == 0 then
  local first = redis.call('XRANGE', log, '-', '+', 'COUNT', 1)
  local lm, ls = string.match(last, '(%d+)-(%d+)')
  local fm, fs = string.match(first[1] and first[1][1] or '0-0', '(%d+)-(%d+)')
  lm, ls, fm, fs = tonumber(lm), tonumber(ls), tonumber(fm), tonumber(fs)
  if not (fm > lm or (fm == lm and fs > ls)) then kept = 0 end
end
return {epoch, kept, redis.call('XRANGE', log, '(' .. last, '+', 'COUNT', count)}
"""
