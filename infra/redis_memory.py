"""Redis adapters: per-user memory behind `agents.ports.MemoryStore`, and the dedupe keys that make stages idempotent.

One user's memory lives under `{prefix}mem:{user_id}:` and nowhere else:

- `items` (hash id -> MemoryItem JSON) and `order` (sorted set id -> write sequence, from the `seq` counter): every
  item, oldest first; "newest wins" reads this order;
- `hist` (sorted set id -> expiry epoch): the history items among them, capped and expiring;
- `conv` (hash request_id -> conversation turn JSON) and `convorder` (sorted set request_id -> expiry epoch): what
  a follow-up request (`parent_request_id`) starts from, capped and expiring like history;
- `vec:{model}` (hash id -> float16 bytes): each item's embedding for that model, computed once when the item is
  first matched by meaning (`agents/semantic.py`) and read with the items, never recomputed per request;
- `keys` (set): the index of every key above that holds data, so `forget` deletes all of them (the vectors too).

The user id is validated before any key is built and keys are never matched by pattern, so no input can address
another user's keys. All writes are single Lua scripts: atomic, and idempotent by item id / request id.
"""

from __future__ import annotations

import json
import logging
import re
import time
from typing import Any, Optional, Sequence

import redis.asyncio as aioredis
from pydantic import TypeAdapter, ValidationError

from infra.redis_batch import CoalescedCommands
from schemas.records import REQUEST_ID_PATTERN, USER_ID_PATTERN, MemoryItem

_USER_ID = re.compile(USER_ID_PATTERN)
_REQUEST_ID = re.compile(REQUEST_ID_PATTERN)
# Dedupe keys are built by the wiring from request ids and stage names; whitespace or control characters there
# mean a bug upstream, not a key worth storing.
_DEDUPE_KEY = re.compile(r"^[\x21-\x7e]{1,512}$")

# KEYS: items, order, seq, hist, index, conv, convorder. ARGV: now, ttl, cap, then (id, json, expiry) triples.
# HSETNX keeps `add` idempotent by id, and only a newly stored item takes a sequence number, so redelivered adds
# never reorder memory. The INCR counter (not a clock) orders items added in the same millisecond, which "newest
# wins" relies on. History past its expiry or beyond the cap is dropped here, on every write.
_ADD_SCRIPT = """
local now, ttl, cap = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local added = {}
for i = 4, #ARGV - 2, 3 do
  if redis.call('HSETNX', KEYS[1], ARGV[i], ARGV[i + 1]) == 1 then
    redis.call('ZADD', KEYS[2], redis.call('INCR', KEYS[3]), ARGV[i])
    local expiry = tonumber(ARGV[i + 2])
    if expiry > 0 then redis.call('ZADD', KEYS[4], expiry, ARGV[i]) end
    added[#added + 1] = ARGV[i]
  end
end
local drop = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', now)
local over = redis.call('ZCARD', KEYS[4]) - #drop - cap
if over > 0 then
  for _, id in ipairs(redis.call('ZRANGE', KEYS[4], #drop, #drop + over - 1)) do drop[#drop + 1] = id end
end
for _, id in ipairs(drop) do
  redis.call('HDEL', KEYS[1], id)
  redis.call('ZREM', KEYS[2], id)
  redis.call('ZREM', KEYS[4], id)
end
if #added > 0 then
  redis.call('SADD', KEYS[5], KEYS[1], KEYS[2], KEYS[3], KEYS[4])
  if ttl > 0 then
    for k = 1, 5 do redis.call('EXPIRE', KEYS[k], ttl) end
  end
end
return added
"""

# KEYS as above. ARGV: id. A history item takes its conversation turn with it.
_FORGET_ONE_SCRIPT = """
local stored = redis.call('HGET', KEYS[1], ARGV[1])
local removed = 0
if stored then
  removed = redis.call('HDEL', KEYS[1], ARGV[1])
  local ok, item = pcall(cjson.decode, stored)
  if ok and item['kind'] == 'history' and type(item['request_id']) == 'string' then
    redis.call('HDEL', KEYS[6], item['request_id'])
    redis.call('ZREM', KEYS[7], item['request_id'])
  end
end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[4], ARGV[1])
for _, key in ipairs(redis.call('SMEMBERS', KEYS[5])) do
  if string.find(key, ':vec:', 1, true) then redis.call('HDEL', key, ARGV[1]) end
end
if redis.call('HLEN', KEYS[1]) == 0 and redis.call('HLEN', KEYS[6]) == 0 then
  for _, key in ipairs(redis.call('SMEMBERS', KEYS[5])) do redis.call('DEL', key) end
  redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7])
end
return removed
"""

# The index names every key that ever held data; the fixed keys are deleted too, in case the index itself was lost.
_FORGET_ALL_SCRIPT = """
local count = redis.call('HLEN', KEYS[1])
for _, key in ipairs(redis.call('SMEMBERS', KEYS[5])) do redis.call('DEL', key) end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7])
return count
"""

# KEYS: conv, convorder, index. ARGV: now, ttl, cap, request_id, json, expiry.
_PUT_TURN_SCRIPT = """
local now, ttl, cap = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local new = redis.call('HSETNX', KEYS[1], ARGV[4], ARGV[5])
if new == 1 then redis.call('ZADD', KEYS[2], tonumber(ARGV[6]), ARGV[4]) end
local drop = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)
local over = redis.call('ZCARD', KEYS[2]) - #drop - cap
if over > 0 then
  for _, id in ipairs(redis.call('ZRANGE', KEYS[2], #drop, #drop + over - 1)) do drop[#drop + 1] = id end
end
for _, id in ipairs(drop) do
  redis.call('HDEL', KEYS[1], id)
  redis.call('ZREM', KEYS[2], id)
end
redis.call('SADD', KEYS[3], KEYS[1], KEYS[2])
if ttl > 0 then
  for k = 1, 3 do redis.call('EXPIRE', KEYS[k], ttl) end
end
return new
"""


# KEYS: items, order. Every item in order as one JSON array: one bulk string to parse instead of two per item,
# which is most of a lookup's cost with the pure-Python RESP parser. Ids missing from `order` (never expected)
# come last rather than being lost.
_READ_SCRIPT = """
local ids = redis.call('ZRANGE', KEYS[2], 0, -1)
local out, seen = {}, {}
if #ids > 0 then
  local values = redis.call('HMGET', KEYS[1], unpack(ids))
  for i, value in ipairs(values) do
    if value then out[#out + 1] = value; seen[ids[i]] = true end
  end
end
if redis.call('HLEN', KEYS[1]) > #out then
  local all = redis.call('HGETALL', KEYS[1])
  for i = 1, #all, 2 do
    if not seen[all[i]] then out[#out + 1] = all[i + 1] end
  end
end
return '[' .. table.concat(out, ',') .. ']'
"""

_ITEMS = TypeAdapter(list[MemoryItem])
log = logging.getLogger("gapstream.memory")


def _readable_items(raw: Any) -> list[MemoryItem]:
    """The stored items this version can read. One item written by a newer (or broken) writer must not make the
    user's whole memory unreadable and fail their requests: it is skipped and counted in the log."""
    try:
        return _ITEMS.validate_json(raw)
    except ValidationError:
        pass
    items, skipped = [], 0
    for entry in json.loads(raw):
        try:
            items.append(MemoryItem.model_validate(entry))
        except ValidationError:
            skipped += 1
    log.warning("memory: skipped %d stored item(s) this version cannot read", skipped)
    return items


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _epoch(iso: Optional[str]) -> float:
    if not iso:
        return 0.0
    from datetime import datetime

    try:
        return datetime.fromisoformat(iso).timestamp()
    except ValueError:
        return 0.0


class RedisMemoryStore:
    """`MemoryStore` over Redis: items oldest first, `add` idempotent by item id, `forget` per item or per user.

    With `ttl_s > 0` a user's memory expires `ttl_s` seconds after the last write that added something. History
    items (those with `expires_at`) expire on their own and at most `history_cap` are kept; conversation turns too.
    """

    def __init__(
        self, client: aioredis.Redis, *, prefix: str = "gapstream:", ttl_s: int = 0, owns_client: bool = False,
        history_cap: int = 50,
    ) -> None:
        if ttl_s < 0:
            raise ValueError(f"ttl_s must be >= 0, got {ttl_s}")
        if history_cap < 1:
            raise ValueError(f"history_cap must be >= 1, got {history_cap}")
        self.redis = client
        self.prefix = prefix
        self.ttl_s = ttl_s
        self.history_cap = history_cap
        self._owns_client = owns_client
        self._add = client.register_script(_ADD_SCRIPT)
        self._forget_one = client.register_script(_FORGET_ONE_SCRIPT)
        self._forget_all = client.register_script(_FORGET_ALL_SCRIPT)
        self._put_turn = client.register_script(_PUT_TURN_SCRIPT)
        self._read = client.register_script(_READ_SCRIPT)

    @classmethod
    def from_url(cls, url: str, *, prefix: str = "gapstream:", ttl_s: int = 0,
                 history_cap: int = 50) -> "RedisMemoryStore":
        return cls(aioredis.Redis.from_url(url), prefix=prefix, ttl_s=ttl_s, owns_client=True,
                   history_cap=history_cap)

    def keys(self, user_id: str) -> tuple[str, str, str]:
        """The user's items hash, order sorted set and sequence counter; the user id is checked first."""
        return self._all_keys(user_id)[:3]

    def _all_keys(self, user_id: str) -> tuple[str, str, str, str, str, str, str]:
        if not isinstance(user_id, str) or not _USER_ID.fullmatch(user_id):
            raise ValueError(f"invalid user_id {user_id!r}: must match {USER_ID_PATTERN}")
        base = f"{self.prefix}mem:{user_id}:"
        return (base + "items", base + "order", base + "seq", base + "hist", base + "keys", base + "conv",
                base + "convorder")

    async def items(self, user_id: str) -> list[MemoryItem]:
        items_key, order_key, *_ = self._all_keys(user_id)
        now = time.time()
        # Expired history is deleted on the next write; until then it is simply not read.
        return [item for item in _readable_items(await self._read(keys=[items_key, order_key]))
                if not (item.expires_at and _epoch(item.expires_at) <= now)]

    async def add(self, user_id: str, items: Sequence[MemoryItem]) -> list[MemoryItem]:
        keys = self._all_keys(user_id)
        if not items:
            return []
        # A repeated id within one call: the first occurrence wins, as it would across calls.
        args: list[Any] = [time.time(), self.ttl_s, self.history_cap]
        for item in items:
            args += [item.id, item.model_dump_json(), _epoch(item.expires_at)]
        added = {_text(i) for i in await self._add(keys=list(keys), args=args)}
        result = []
        for item in items:
            if item.id in added:
                result.append(item)
                added.discard(item.id)
        return result

    async def forget(self, user_id: str, item_id: Optional[str] = None) -> int:
        keys = list(self._all_keys(user_id))
        if item_id is None:
            return int(await self._forget_all(keys=keys))
        return int(await self._forget_one(keys=keys, args=[item_id]))

    def _vector_key(self, user_id: str, model: str) -> str:
        if not isinstance(model, str) or not re.fullmatch(r"[\w.@+-]{1,100}", model):
            raise ValueError(f"invalid embedding model name {model!r}")
        return f"{self.prefix}mem:{user_id}:vec:{model}"

    async def vectors(self, user_id: str, model: str) -> dict[str, bytes]:
        """The stored embeddings of this user's items for `model`, by item id (float16 bytes)."""
        self._all_keys(user_id)  # validates the user id
        raw = await self.redis.hgetall(self._vector_key(user_id, model))
        return {_text(k): v for k, v in raw.items()}

    async def put_vectors(self, user_id: str, model: str, vectors: dict[str, bytes]) -> None:
        """Store embeddings beside the items (only for items that still exist), indexed so `forget` drops them."""
        keys = self._all_keys(user_id)
        if not vectors:
            return
        key = self._vector_key(user_id, model)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping=vectors)
            pipe.sadd(keys[4], key)
            if self.ttl_s > 0:
                pipe.expire(key, self.ttl_s)
            pipe.hkeys(keys[0])
            *_, existing = await pipe.execute()
        # An item forgotten while its vector was being computed must not leave an orphan vector behind.
        gone = [i for i in vectors if i.encode() not in set(existing) and i not in set(existing)]
        if gone:
            await self.redis.hdel(key, *gone)

    async def put_turn(self, user_id: str, request_id: str, turn_json: str, expires_at: str) -> bool:
        """Keep what a follow-up of `request_id` starts from; idempotent (the first write of a request wins)."""
        keys = self._all_keys(user_id)
        if not _REQUEST_ID.fullmatch(request_id or ""):
            raise ValueError(f"invalid request_id {request_id!r}")
        args = [time.time(), self.ttl_s, self.history_cap, request_id, turn_json, _epoch(expires_at)]
        return bool(await self._put_turn(keys=[keys[5], keys[6], keys[4]], args=args))

    async def turn(self, user_id: str, request_id: str) -> Optional[str]:
        """The stored turn of one of this user's requests, or None (never another user's: the key is theirs)."""
        keys = self._all_keys(user_id)
        if not _REQUEST_ID.fullmatch(request_id or ""):
            raise ValueError(f"invalid request_id {request_id!r}")
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hget(keys[5], request_id)
            pipe.zscore(keys[6], request_id)
            stored, expiry = await pipe.execute()
        if stored is None or (expiry is not None and float(expiry) <= time.time()):
            return None
        return _text(stored)

    async def aclose(self) -> None:
        """Close the client if this store opened it (`from_url`); a client passed in belongs to the caller."""
        if self._owns_client:
            await self.redis.aclose()


class RedisDedupe:
    """Done-markers and claims on `{prefix}done:{key}`, for idempotent stages under at-least-once delivery."""

    def __init__(self, client: aioredis.Redis, *, prefix: str = "gapstream:", owns_client: bool = False) -> None:
        self.redis = client
        self.prefix = prefix
        self._owns_client = owns_client
        # Every stage checks and marks a key per message: those go out together (infra.redis_batch).
        self._commands = CoalescedCommands(client)

    @classmethod
    def from_url(cls, url: str, *, prefix: str = "gapstream:") -> "RedisDedupe":
        return cls(aioredis.Redis.from_url(url), prefix=prefix, owns_client=True)

    def key(self, key: str) -> str:
        if not isinstance(key, str) or not _DEDUPE_KEY.fullmatch(key):
            raise ValueError(f"invalid dedupe key {key!r}: 1-512 printable ASCII characters without spaces")
        return f"{self.prefix}done:{key}"

    @staticmethod
    def _ttl(ttl_s: int) -> int:
        if not isinstance(ttl_s, int) or ttl_s < 1:
            raise ValueError(f"ttl_s must be a positive integer, got {ttl_s!r}")
        return ttl_s

    async def seen(self, key: str) -> bool:
        return bool(await self._commands.call("exists", self.key(key)))

    async def mark(self, key: str, ttl_s: int) -> None:
        await self._commands.call("set", self.key(key), b"1", ex=self._ttl(ttl_s))

    async def claim(self, key: str, ttl_s: int) -> bool:
        """True for exactly one caller until the key expires or is released (SET NX EX)."""
        return bool(await self.redis.set(self.key(key), b"1", ex=self._ttl(ttl_s), nx=True))

    async def release(self, key: str) -> None:
        """Drop a claim whose work failed, so a redelivery can claim it again."""
        await self.redis.delete(self.key(key))

    async def aclose(self) -> None:
        if self._owns_client:
            await self.redis.aclose()
