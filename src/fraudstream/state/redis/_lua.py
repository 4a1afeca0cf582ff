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
grace`` behind it, moved in the same steps as in memory), ``P heads`` lists each log entry's id and
newest time (what trimming reads). ``P epoch`` marks a state that was initialised: set when it was
created empty or rebuilt from storage, it is what tells a state that was lost (Redis restarted without
persistence, flushed, failed over, expired) from one that holds what it should. While a process
rebuilds the state it holds ``b:<token>``, expiring after :data:`BUILD_TTL` seconds unless its writes
refresh it. Every write names the epoch its caller read and is refused (an error starting with
:data:`STALE`) under another one, so nothing scored against a lost state is written into a new one.
Every write refreshes the expiry of these keys, so a state nobody writes to for ``ttl`` seconds
disappears whole.
Keys are built inside the scripts, so this targets a single Redis (or a replica set), not Redis Cluster.
"""

from __future__ import annotations

#: Seconds a rebuild's ``b:<token>`` epoch outlives the rebuilder's last write: how long other processes
#: wait for a rebuilder that died before one of them rebuilds the state instead.
BUILD_TTL = 300
#: The first word of the error a write under another epoch gets.
STALE = "FRAUDSTREAM_STALE_EPOCH"

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
-- The error a write gets unless the state's epoch is E, the one its caller read; nil when it is.
local function stale(P, E)
  if redis.call('GET', P .. 'epoch') ~= E then
    return redis.error_reply('@STALE@ the state is not the one this process read')
  end
  return nil
end
-- Refreshes the expiry of the state's keys; a rebuild's epoch keeps its own, short one.
local function begin(P, ttl, E)
  for _, k in ipairs({'newest', 'pruned', 'log', 'heads'}) do redis.call('EXPIRE', P .. k, ttl) end
  redis.call('EXPIRE', P .. 'epoch', string.sub(E, 1, 2) == 'b:' and @BUILD_TTL@ or ttl)
end
-- Appends an entry to the log, and its id and newest time to 'heads' (the log's times alone, for trim).
local function append(P, t, ttl, ...)
  local id = redis.call('XADD', P .. 'log', '*', 't', t, ...)
  redis.call('RPUSH', P .. 'heads', id .. ' ' .. t)
  redis.call('EXPIRE', P .. 'log', ttl)
  redis.call('EXPIRE', P .. 'heads', ttl)
end
-- Drops up to 64 of the log's oldest entries while their newest time is behind the horizon. A few per
-- write, reading the short 'heads' list, not the entries: a step of the horizon can leave millions of
-- small entries behind it, and replicas drop what lingers themselves.
local function trim(P, horizon)
  local cut = nil
  for _ = 1, 64 do
    local head = redis.call('LINDEX', P .. 'heads', 0)
    if not head then break end
    local gap = string.find(head, ' ', 1, true)
    if not (tonumber(string.sub(head, gap + 1)) < horizon) then break end
    redis.call('LPOP', P .. 'heads')
    cut = string.sub(head, 1, gap - 1)
  end
  if cut then
    local ms, seq = string.match(cut, '(%d+)-(%d+)')
    redis.call('XTRIM', P .. 'log', 'MINID', ms .. '-' .. (tonumber(seq) + 1))
  end
end
""".replace("@STALE@", STALE).replace("@BUILD_TTL@", str(BUILD_TTL))

RECORD = (
    _COMMON
    + r"""
-- ARGV: prefix, ttl, span (retention + grace), prune interval, entity map, transaction ids (\31-joined),
-- the batch's newest event time ('' for none), float columns (bytes, timestamps first), identifier columns
-- (text), the epoch the caller read. Returns one '1' or '0' per row: whether it was new. When a row was
-- not, the newest time is taken again over the new rows alone: a repeated id may come with another time,
-- which must not count.
local P, ttl, span, every = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local E = ARGV[10]
local refused = stale(P, E)
if refused then return refused end
local txs, top = split(ARGV[6], '\31'), tonumber(ARGV[7])
local out, any, all = {}, false, true
for i = 1, #txs do
  if redis.call('SET', P .. 'x:' .. txs[i], '0', 'NX', 'EX', ttl) then
    out[i], any = '1', true
  else
    out[i], all = '0', false
  end
end
local flags = table.concat(out)
if not any then return flags end
if not all then
  top = nil
  for i = 1, #txs do
    if out[i] == '1' then
      local t = struct.unpack('<d', ARGV[8], 8 * i - 7)
      if t == t and (top == nil or t > top) then top = t end
    end
  end
end
begin(P, ttl, E)
local pruned = tonumber(redis.call('GET', P .. 'pruned') or '')
if top ~= nil then
  local newest = tonumber(redis.call('GET', P .. 'newest') or '')
  if newest == nil or top > newest then
    redis.call('SET', P .. 'newest', string.format('%.17g', top), 'EX', ttl)
  end
  -- Pruning moves in steps, as in memory: the horizon is fixed at the newest time of the last prune.
  if pruned == nil or top - pruned >= every then
    pruned = top
    redis.call('SET', P .. 'pruned', string.format('%.17g', top), 'EX', ttl)
  end
end
local p = pruned and string.format('%.17g', pruned) or ''
append(P, top and string.format('%.17g', top) or NONE, ttl,
  'p', p, 'n', ARGV[5], 'x', ARGV[6], 'f', ARGV[8], 's', ARGV[9], 'm', flags)
if pruned then trim(P, pruned - span) end
return flags
"""
)

LABELS = (
    _COMMON
    + r"""
-- ARGV: prefix, ttl, transaction ids (\31-joined), label times (\31-joined exact float strings), the newest
-- of those transactions' times ('' for none), the epoch the caller read. The caller passes only
-- transactions its replica holds (recorded and not pruned). Returns how many fraud labels were new; logs
-- those.
local P, ttl, E = ARGV[1], tonumber(ARGV[2]), ARGV[6]
local refused = stale(P, E)
if refused then return refused end
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
begin(P, ttl, E)
local t = ARGV[5] ~= '' and ARGV[5] or NONE
append(P, t, ttl, 'l', table.concat(ids, '\31'), 'lt', table.concat(times, '\31'))
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

SWAP = r"""
-- ARGV: prefix, the epoch expected ('' for none), the new epoch ('' to delete it), its expiry in seconds.
-- Sets the epoch only if it is the one expected (creating a state, claiming or finishing a rebuild, giving
-- one up); returns 1 when it did.
local key = ARGV[1] .. 'epoch'
if (redis.call('GET', key) or '') ~= ARGV[2] then return 0 end
if ARGV[3] == '' then redis.call('DEL', key) else redis.call('SET', key, ARGV[3], 'EX', ARGV[4]) end
return 1
"""
