"""Redis adapters: per-user memory behind `agents.ports.MemoryStore`, and the dedupe keys that make stages idempotent.

Memory of one user lives under three keys, `{prefix}mem:{user_id}:items|order|seq`, so forgetting a user is three
DELs and no other user's data shares a key with theirs.
"""

from __future__ import annotations

import re
from typing import Any, Optional, Sequence

import redis.asyncio as aioredis

from schemas.records import USER_ID_PATTERN, MemoryItem

_USER_ID = re.compile(USER_ID_PATTERN)
# Dedupe keys are built by the wiring from request ids and stage names; whitespace or control characters there
# mean a bug upstream, not a key worth storing.
_DEDUPE_KEY = re.compile(r"^[\x21-\x7e]{1,512}$")

# One round trip adds many items atomically: HSETNX keeps `add` idempotent by id, and only a newly stored item takes
# a sequence number, so redelivered adds never reorder memory. The INCR counter (not a clock) orders items added in
# the same millisecond, which "newest wins" relies on.
_ADD_SCRIPT = """
local added = {}
for i = 1, #ARGV - 1, 2 do
  if redis.call('HSETNX', KEYS[1], ARGV[i], ARGV[i + 1]) == 1 then
    redis.call('ZADD', KEYS[2], redis.call('INCR', KEYS[3]), ARGV[i])
    added[#added + 1] = ARGV[i]
  end
end
local ttl = tonumber(ARGV[#ARGV])
if ttl > 0 and #added > 0 then
  for k = 1, 3 do redis.call('EXPIRE', KEYS[k], ttl) end
end
return added
"""

_FORGET_ONE_SCRIPT = """
local removed = redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
if redis.call('HLEN', KEYS[1]) == 0 then
  redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
end
return removed
"""

_FORGET_ALL_SCRIPT = """
local count = redis.call('HLEN', KEYS[1])
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
return count
"""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else value


class RedisMemoryStore:
    """`MemoryStore` over Redis: items oldest first, `add` idempotent by item id, `forget` per item or per user.

    With `ttl_s > 0` a user's memory expires `ttl_s` seconds after the last write that added something.
    """

    def __init__(
        self, client: aioredis.Redis, *, prefix: str = "gapstream:", ttl_s: int = 0, owns_client: bool = False
    ) -> None:
        if ttl_s < 0:
            raise ValueError(f"ttl_s must be >= 0, got {ttl_s}")
        self.redis = client
        self.prefix = prefix
        self.ttl_s = ttl_s
        self._owns_client = owns_client
        self._add = client.register_script(_ADD_SCRIPT)
        self._forget_one = client.register_script(_FORGET_ONE_SCRIPT)
        self._forget_all = client.register_script(_FORGET_ALL_SCRIPT)

    @classmethod
    def from_url(cls, url: str, *, prefix: str = "gapstream:", ttl_s: int = 0) -> "RedisMemoryStore":
        return cls(aioredis.Redis.from_url(url), prefix=prefix, ttl_s=ttl_s, owns_client=True)

    def keys(self, user_id: str) -> tuple[str, str, str]:
        """The user's items hash, order sorted set and sequence counter; the user id is checked first."""
        if not isinstance(user_id, str) or not _USER_ID.fullmatch(user_id):
            raise ValueError(f"invalid user_id {user_id!r}: must match {USER_ID_PATTERN}")
        base = f"{self.prefix}mem:{user_id}:"
        return base + "items", base + "order", base + "seq"

    async def items(self, user_id: str) -> list[MemoryItem]:
        items_key, order_key, _ = self.keys(user_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.zrange(order_key, 0, -1)
            pipe.hgetall(items_key)
            order, stored = await pipe.execute()
        stored = {_text(k): _text(v) for k, v in stored.items()}
        ids = [_text(i) for i in order]
        ids += sorted(set(stored) - set(ids))  # never expected; shown last rather than lost
        return [MemoryItem.model_validate_json(stored[i]) for i in ids if i in stored]

    async def add(self, user_id: str, items: Sequence[MemoryItem]) -> list[MemoryItem]:
        keys = self.keys(user_id)
        if not items:
            return []
        # A repeated id within one call: the first occurrence wins, as it would across calls.
        args: list[str] = []
        for item in items:
            args += [item.id, item.model_dump_json()]
        added = {_text(i) for i in await self._add(keys=list(keys), args=[*args, self.ttl_s])}
        result = []
        for item in items:
            if item.id in added:
                result.append(item)
                added.discard(item.id)
        return result

    async def forget(self, user_id: str, item_id: Optional[str] = None) -> int:
        keys = list(self.keys(user_id))
        if item_id is None:
            return int(await self._forget_all(keys=keys))
        return int(await self._forget_one(keys=keys, args=[item_id]))

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
        return bool(await self.redis.exists(self.key(key)))

    async def mark(self, key: str, ttl_s: int) -> None:
        await self.redis.set(self.key(key), b"1", ex=self._ttl(ttl_s))

    async def claim(self, key: str, ttl_s: int) -> bool:
        """True for exactly one caller until the key expires or is released (SET NX EX)."""
        return bool(await self.redis.set(self.key(key), b"1", ex=self._ttl(ttl_s), nx=True))

    async def release(self, key: str) -> None:
        """Drop a claim whose work failed, so a redelivery can claim it again."""
        await self.redis.delete(self.key(key))

    async def aclose(self) -> None:
        if self._owns_client:
            await self.redis.aclose()
