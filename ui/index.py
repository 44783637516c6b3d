"""The web page's index of results: what the history gallery and result pages read.

The `results` topic is the record of every request, but it cannot be looked up by request or by user. The UI reads
it from the beginning (every partition, no consumer group: each UI process sees every result) and keeps each
result in Redis under the UI's own keys, so the index survives a restart of the UI and is shared by several UI
processes; writing is idempotent, so re-reading the topic after a restart changes nothing.

Keys (prefix `{app_id}:ui:`): `result:{request_id}` the latest result JSON (a final result is never replaced by a
late `needs_clarification`); `hist:{user_id}` a sorted set request_id -> finished time. Both expire with
GAPSTREAM_MEMORY_HISTORY_TTL_S, like the history the planner remembers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from datetime import datetime
from typing import Any, Awaitable, Callable, Optional

from aiokafka import AIOKafkaConsumer, TopicPartition

from infra.settings import Settings
from schemas.records import REQUEST_ID_PATTERN, USER_ID_PATTERN, ResultRecord
from schemas.topics import RESULTS

log = logging.getLogger("gapstream.ui.index")
_USER = re.compile(USER_ID_PATTERN)
_REQUEST = re.compile(REQUEST_ID_PATTERN)

# KEYS: result, hist. ARGV: json, status, request_id, finished epoch, ttl. A `needs_clarification` arriving after the
# final result (a redelivery, or a re-read of the topic) must not turn a finished request back into a question.
_PUT = """
local old = redis.call('GET', KEYS[1])
if old and ARGV[2] == 'needs_clarification' then
  local ok, rec = pcall(cjson.decode, old)
  if ok and rec['status'] ~= 'needs_clarification' then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[5])
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[5])
return 1
"""


def _epoch(iso: str) -> float:
    try:
        return datetime.fromisoformat(iso).timestamp()
    except ValueError:
        return 0.0


class ResultIndex:
    def __init__(self, redis: Any, settings: Settings,
                 on_result: Optional[Callable[[ResultRecord], Awaitable[None]]] = None) -> None:
        self.redis = redis
        self.settings = settings
        self.prefix = f"{settings.redis_namespace}ui:"
        self.ttl_s = settings.memory_history_ttl_s
        self.on_result = on_result
        self._put = redis.register_script(_PUT)
        self._consumer: Optional[AIOKafkaConsumer] = None
        self._task: Optional[asyncio.Task] = None

    def _result_key(self, request_id: str) -> str:
        if not _REQUEST.fullmatch(request_id or ""):
            raise ValueError(f"invalid request id {request_id!r}")
        return f"{self.prefix}result:{request_id}"

    def _hist_key(self, user_id: str) -> str:
        if not _USER.fullmatch(user_id or ""):
            raise ValueError(f"invalid user id {user_id!r}")
        return f"{self.prefix}hist:{user_id}"

    async def put(self, result: ResultRecord) -> bool:
        """Index one result; False when it was older news than what is indexed."""
        if not (_REQUEST.fullmatch(result.request_id) and _USER.fullmatch(result.user_id)):
            return False  # not a result any page could address
        stored = await self._put(keys=[self._result_key(result.request_id), self._hist_key(result.user_id)],
                                 args=[result.model_dump_json(), result.status, result.request_id,
                                       _epoch(result.finished_at), self.ttl_s])
        return bool(stored)

    async def get(self, request_id: str) -> Optional[ResultRecord]:
        try:
            raw = await self.redis.get(self._result_key(request_id))
        except ValueError:
            return None
        return ResultRecord.model_validate_json(raw) if raw else None

    async def history(self, user_id: str, page: int, per_page: int) -> tuple[list[ResultRecord], int]:
        """One page of the user's results, newest first, and how many there are in all."""
        key = self._hist_key(user_id)
        total = await self.redis.zcard(key)
        start = max(page - 1, 0) * per_page
        ids = await self.redis.zrevrange(key, start, start + per_page - 1)
        if not ids:
            return [], total
        raws = await self.redis.mget([self._result_key(i.decode()) for i in ids])
        gone = [i for i, raw in zip(ids, raws) if raw is None]
        if gone:  # the result expired before its place in the gallery did
            await self.redis.zrem(key, *gone)
        return [ResultRecord.model_validate_json(raw) for raw in raws if raw is not None], total - len(gone)

    async def forget_user(self, user_id: str) -> None:
        """"Forget everything" also empties the gallery: the results stay on the topic, not on this page."""
        key = self._hist_key(user_id)
        ids = await self.redis.zrange(key, 0, -1)
        await self.redis.delete(key, *[self._result_key(i.decode()) for i in ids])

    async def start(self, bootstrap: str) -> None:
        from streams.broker import partitions_of
        from streams.faust_app import kafka_client_options

        topic = RESULTS.name(self.settings.topic_prefix)
        self._consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                                          fetch_max_wait_ms=self.settings.fetch_wait_ms,
                                          auto_offset_reset="earliest", **kafka_client_options(self.settings))
        await self._consumer.start()
        partitions = (await partitions_of(self._consumer, [topic]))[topic]
        if not partitions:
            raise ConnectionError(f"topic {topic} does not exist on the broker")
        tps = [TopicPartition(topic, p) for p in partitions]
        self._consumer.assign(tps)
        await self._consumer.seek_to_beginning(*tps)
        self._task = asyncio.create_task(self._read(), name="gapstream-ui-index")

    async def _read(self) -> None:
        assert self._consumer is not None
        while True:
            try:
                batches = await self._consumer.getmany(timeout_ms=1000)
                for messages in batches.values():
                    for message in messages:
                        await self._one(message.value)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis or broker trouble: keep the page up, try again shortly
                log.warning("result index: %s: %s", type(exc).__name__, exc)
                await asyncio.sleep(1.0)

    async def _one(self, value: Optional[bytes]) -> None:
        try:
            result = ResultRecord.model_validate_json(value or b"")
        except ValueError:
            return  # not a result record: nothing a page could show
        if await self.put(result) and self.on_result is not None:
            await self.on_result(result)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None
