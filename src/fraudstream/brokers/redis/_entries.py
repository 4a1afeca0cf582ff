"""How a message is stored in a Redis stream entry: the payload as JSON in one field and the key in
another, appended a batch at a time by one script; and reading entries back, also those written by
other producers. Split from :mod:`fraudstream.brokers.redis`."""

from __future__ import annotations

from typing import Any

import orjson

from fraudstream.brokers.base import Message

PAYLOAD, KEY = b"p", b"k"
#: Messages per publishing script call: Redis serves nobody else while one runs.
PUBLISH_CHUNK = 5_000
#: The key argument of a message without a key: never valid UTF-8, so no ``str`` key encodes to it.
NO_KEY = b"\xff"
#: Appends a batch of messages, ``ARGV`` = the consumer group ('' for none), then payload, key, payload,
#: key ...; returns the stream's length. The group is created first when it is missing, in the same
#: atomic call: a Redis that restarted empty, was flushed or failed over has lost it, and a stream
#: without its group would be capped by length with its messages unread. One call instead of one
#: ``XADD`` each, whose packing and reading per message through redis-py's pipeline cost the client
#: several times the script's arguments.
PUBLISH = f"""
local stream, group = KEYS[1], ARGV[1]
if group ~= '' then
  redis.pcall('XGROUP', 'CREATE', stream, group, '0', 'MKSTREAM')  -- BUSYGROUP when it exists: fine
end
for i = 2, #ARGV, 2 do
  if ARGV[i + 1] == '\\{NO_KEY[0]}' then
    redis.call('XADD', stream, '*', '{PAYLOAD.decode()}', ARGV[i])
  else
    redis.call('XADD', stream, '*', '{PAYLOAD.decode()}', ARGV[i], '{KEY.decode()}', ARGV[i + 1])
  end
end
return redis.call('XLEN', stream)
"""
#: Marks this consumer alive until ``dead_after`` milliseconds from now by Redis's clock (one clock for
#: every host): ``KEYS[1]`` the group's heartbeat set, ``ARGV`` = consumer, milliseconds.
BEAT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
"""
#: ``{dead, late}``: the consumers of ``KEYS[1]``'s group ``ARGV[1]`` holding pending entries whose
#: heartbeat in ``KEYS[2]`` has run out, with the consumer ``ARGV[3]`` that holds what was handed back,
#: leaving out the caller ``ARGV[2]``; and 1 when another consumer holding pending entries is late
#: with its beats (less than ``ARGV[5]`` ms of its heartbeat left) without being dead yet, else 0.
#: A dead consumer with nothing pending whose heartbeat ran out more than ``ARGV[4]`` ms ago is removed
#: from the group and the set. A consumer with no heartbeat at all (a client of another kind) is not
#: judged: its entries are reclaimed once idle.
DEAD = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local dead, late = {}, 0
for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
  local info = {}
  for i = 1, #c, 2 do info[c[i]] = c[i + 1] end
  local name, pending = info['name'], tonumber(info['pending'])
  if name ~= ARGV[2] then
    local beat = tonumber(redis.call('ZSCORE', KEYS[2], name))
    if name == ARGV[3] or (beat and beat < now) then
      if pending > 0 then
        table.insert(dead, name)
      elseif beat and beat < now - tonumber(ARGV[4]) then
        redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], name)
        redis.call('ZREM', KEYS[2], name)
      end
    elseif beat and pending > 0 and beat - now < tonumber(ARGV[5]) then
      late = 1
    end
  end
end
return {dead, late}
"""
ORJSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


def text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def entry_id(value: bytes | str) -> tuple[int, int]:
    ms, _, seq = text(value).partition("-")
    return int(ms), int(seq or 0)


def encode(payload: Any) -> bytes:
    return orjson.dumps(payload, default=str, option=ORJSON_OPTIONS)


def decode(fields: dict[bytes, bytes]) -> Any:
    raw = fields.get(PAYLOAD)
    if raw is None:  # written by another producer, one field per attribute
        return {text(k): text(v) for k, v in fields.items()}
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw.decode("utf-8", errors="replace")


def unparsed(response: Any, **options: Any) -> Any:
    """A response callback that leaves the reply as the parser gave it (see :func:`reply_entries`)."""
    return response


def reply_entries(reply: Any) -> list[tuple[bytes, dict[bytes, bytes] | None]]:
    """``XREADGROUP``'s entries as (id, fields), from the reply as it came off the wire, whether the
    connection speaks RESP2 (a list per stream) or RESP3 (a map), in a fraction of what redis-py's own
    parsing costs the client per entry."""
    if not reply:
        return []
    per_stream = reply.values() if isinstance(reply, dict) else (entries for _, entries in reply)
    out: list[tuple[bytes, dict[bytes, bytes] | None]] = []
    for entries in per_stream:
        for raw_id, flat in entries:
            if flat is None:  # deleted since it was delivered
                out.append((raw_id, None))
            else:
                pairs = iter(flat)
                out.append((raw_id, dict(zip(pairs, pairs, strict=True))))
    return out


def message_of(raw_id: bytes, fields: dict[bytes, bytes], deliveries: int = 1) -> Message:
    """The message an entry holds."""
    key = fields.get(KEY)
    return Message(text(raw_id), None if key is None else text(key), decode(fields), deliveries)
