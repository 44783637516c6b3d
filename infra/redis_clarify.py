"""Requests waiting for an answer to a clarifying question, in Redis (issue 6).

`{prefix}clarify:{request_id}` is a hash: `state` (waiting | answered | expired), `user_id`, `deadline` (epoch s)
and `data` (the `WaitingQuestion`: the request, the gap asked about and the question, as JSON). `{prefix}clarify:deadlines` orders the
waiting requests by deadline for the sweeper. Every change of state is one Lua script, so an answer and the
sweeper racing at the deadline agree on one outcome: exactly one of them moves the request out of `waiting`.
The hash outlives the deadline by `keep_s` so a redelivered answer still finds what happened to its request.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any, Optional

import redis.asyncio as aioredis

from agents.ports import QuestionStatus, WaitingQuestion
from schemas.records import REQUEST_ID_PATTERN, USER_ID_PATTERN, Gap, ImageRequest

_REQUEST_ID = re.compile(REQUEST_ID_PATTERN)
_USER_ID = re.compile(USER_ID_PATTERN)

# KEYS: hash, deadlines. ARGV: request_id, user_id, deadline, data, keep_s. Only the first ask is stored.
_PUT = """
if redis.call('HSETNX', KEYS[1], 'state', 'waiting') == 0 then return 0 end
redis.call('HSET', KEYS[1], 'user_id', ARGV[2], 'deadline', ARGV[3], 'data', ARGV[4])
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[5]))
redis.call('ZADD', KEYS[2], tonumber(ARGV[3]), ARGV[1])
return 1
"""

# KEYS: hash, deadlines. ARGV: request_id, wanted state, now. Returns {previous state, state now, user_id, data}.
# An answer after the deadline expires the request instead, even if the sweeper has not got to it yet.
_RESOLVE = """
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return false end
local now_state = state
if state == 'waiting' then
  now_state = ARGV[2]
  if ARGV[2] == 'answered' and tonumber(redis.call('HGET', KEYS[1], 'deadline')) <= tonumber(ARGV[3]) then
    now_state = 'expired'
  end
  redis.call('HSET', KEYS[1], 'state', now_state)
  redis.call('ZREM', KEYS[2], ARGV[1])
end
return {state, now_state, redis.call('HGET', KEYS[1], 'user_id'), redis.call('HGET', KEYS[1], 'data')}
"""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _waiting_json(waiting: WaitingQuestion) -> str:
    # The same document as before the port was typed, so questions stored by an older planner still resume.
    return json.dumps({"request": waiting.request.model_dump(mode="json"), "gap": waiting.gap.model_dump(mode="json"),
                       "question": waiting.question})


def _waiting_of(data: Any) -> WaitingQuestion:
    stored = json.loads(_text(data))
    return WaitingQuestion(request=ImageRequest.model_validate(stored["request"]),
                           gap=Gap.model_validate(stored["gap"]), question=stored["question"])


class RedisPendingQuestions:
    """`agents.ports.PendingQuestions` in Redis, under the deployment's namespace."""

    def __init__(self, client: aioredis.Redis, *, prefix: str = "gapstream:") -> None:
        self.redis = client
        self.prefix = prefix
        self._put = client.register_script(_PUT)
        self._resolve = client.register_script(_RESOLVE)

    def _keys(self, request_id: str) -> list[str]:
        if not isinstance(request_id, str) or not _REQUEST_ID.fullmatch(request_id):
            raise ValueError(f"invalid request_id {request_id!r}")
        return [f"{self.prefix}clarify:{request_id}", f"{self.prefix}clarify:deadlines"]

    async def put(self, waiting: WaitingQuestion, deadline: float, keep_s: int) -> bool:
        request = waiting.request
        if not _USER_ID.fullmatch(request.user_id or ""):
            raise ValueError(f"invalid user_id {request.user_id!r}")
        keep = max(1, int(deadline - time.time()) + keep_s)
        return bool(await self._put(keys=self._keys(request.request_id),
                                    args=[request.request_id, request.user_id, deadline, _waiting_json(waiting),
                                          keep]))

    async def peek(self, request_id: str) -> Optional[QuestionStatus]:
        state, user_id, data = await self.redis.hmget(self._keys(request_id)[0], "state", "user_id", "data")
        if state is None:
            return None
        return QuestionStatus(state=_text(state), user_id=_text(user_id), waiting=_waiting_of(data))

    async def resolve(self, request_id: str, wanted: str, now: Optional[float] = None) -> Optional[QuestionStatus]:
        if wanted not in ("answered", "expired"):
            raise ValueError(f"unknown state {wanted!r}")
        out = await self._resolve(keys=self._keys(request_id),
                                  args=[request_id, wanted, time.time() if now is None else now])
        if not out:
            return None
        previous, state, user_id, data = out
        return QuestionStatus(state=_text(state), user_id=_text(user_id), waiting=_waiting_of(data),
                              previous=_text(previous))

    async def due(self, now: Optional[float] = None, limit: int = 100) -> list[str]:
        ids = await self.redis.zrangebyscore(f"{self.prefix}clarify:deadlines", "-inf",
                                             time.time() if now is None else now, start=0, num=limit)
        return [_text(i) for i in ids]
