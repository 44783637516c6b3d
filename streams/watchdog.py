"""Request deadlines: a request that waits on one stage longer than `GAPSTREAM_REQUEST_DEADLINE_S` gets a `failed`
result naming that stage, so a client reading `results` never waits forever.

The watchdog is a support stage (its own consumer group, `<app_id>-watchdog`) that reads every pipeline topic and
`results`. Each message moves its request's deadline to `message time + deadline` and notes the stage that must
answer next; state lives in Redis, so any number of watchdogs share it and a restarted one picks up where the last
left off:

- `{namespace}watch:due` — a sorted set of request ids by deadline (epoch seconds);
- `{namespace}watch:req:{request_id}` — `rank|stage|user_id`, expiring on its own (namespace: `{app_id}:`).

`rank` = round × 10 + hop keeps the state moving forward only: topics are consumed independently, so an older hop
may be read after a newer one. A result is the last rank. The sweep takes each overdue id with ZREM (one sweeper
wins) and publishes through the same result claim as the publisher, so when the real result arrives later (or
arrived first) there is still only one.

The deadline is per stage, not per request: a long revise loop that keeps moving is not failed, a stage that never
answers is.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from typing import Any, Awaitable, Callable, Optional

from agents.publisher import timed_out_result
from infra import metrics
from infra.result_claims import ResultClaims, publish_once
from infra.settings import Settings
from schemas.records import REQUEST_ID_PATTERN
from schemas.topics import CRITIQUES, ENRICHED_PROMPTS, GAPS, IMAGES, REQUESTS, RESULTS, SEARCH_RESULTS, TopicSpec

log = logging.getLogger("gapstream.watchdog")

# The topic a message is on → (hop, the stage that must answer it).
HOPS: dict[str, tuple[int, str]] = {
    REQUESTS.suffix: (0, "planner"),
    GAPS.suffix: (1, "searcher"),
    SEARCH_RESULTS.suffix: (2, "enricher"),
    ENRICHED_PROMPTS.suffix: (3, "generator"),
    IMAGES.suffix: (4, "critic"),
    CRITIQUES.suffix: (5, "enricher"),  # "publisher" when the verdict is final
}
WATCHED: tuple[TopicSpec, ...] = (REQUESTS, GAPS, SEARCH_RESULTS, ENRICHED_PROMPTS, IMAGES, CRITIQUES, RESULTS)
DONE_RANK = 1_000_000
_REQUEST_ID = re.compile(REQUEST_ID_PATTERN)

# Move a request forward (never back), or finish it. KEYS: due zset, request key. ARGV: rank, deadline, info, ttl, id.
_OBSERVE = """
local cur = redis.call('GET', KEYS[2])
if cur then
  local r = tonumber(string.match(cur, '^(%d+)|'))
  if r and r >= tonumber(ARGV[1]) then return 0 end
end
redis.call('SET', KEYS[2], ARGV[1] .. '|' .. ARGV[3], 'EX', ARGV[4])
if tonumber(ARGV[1]) >= DONE_RANK then
  redis.call('ZREM', KEYS[1], ARGV[5])
else
  redis.call('ZADD', KEYS[1], ARGV[2], ARGV[5])
end
return 1
""".replace("DONE_RANK", str(DONE_RANK))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class Watchdog:
    def __init__(self, client: Any, claims: ResultClaims, settings: Settings,
                 send_result: Callable[[str, bytes], Awaitable[None]], *, results_log: Any = None) -> None:
        self.redis = client
        self.claims = claims
        self.settings = settings
        self.send_result = send_result
        self.results_log = results_log
        self.deadline_s = settings.request_deadline_s
        base = f"{settings.redis_namespace}watch:"
        self.due_key = base + "due"
        self.req_prefix = base + "req:"
        self._observe = client.register_script(_OBSERVE)
        self._task: Optional[asyncio.Task] = None

    async def observe(self, suffix: str, value: Optional[bytes], timestamp: Optional[float]) -> None:
        """Note one message; never raises (a watchdog that cannot watch must not stop anything else)."""
        try:
            payload = json.loads(value or b"")
        except (ValueError, UnicodeDecodeError):
            return  # the stage dead-letters it
        if not isinstance(payload, dict):
            return
        request_id, user_id = payload.get("request_id"), payload.get("user_id")
        if not isinstance(request_id, str) or not _REQUEST_ID.fullmatch(request_id) or not isinstance(user_id, str):
            return
        if suffix == RESULTS.suffix:
            if payload.get("status") == "needs_clarification":
                # Waiting on the user is not a stuck stage: the deadline moves past the question's expiry (issue 6),
                # when the clarification sweeper publishes `expired`; the final result still ends it.
                await self._wait_for_user(request_id, payload.get("expires_at"))
                return
            rank, stage = DONE_RANK, "done"
        else:
            hop, stage = HOPS[suffix]
            round_ = payload.get("round", 0)
            round_ = round_ if isinstance(round_, int) and 0 <= round_ < 1000 else 0
            verdict = (payload.get("critique") or {}).get("verdict") if suffix == CRITIQUES.suffix else None
            if verdict is not None and verdict != "revise":
                stage = "publisher"
            rank = round_ * 10 + hop
        seen_at = timestamp if timestamp else time.time()
        ttl = int(max(self.deadline_s * 4, 3600))
        info = f"{stage}|{user_id[:128].replace('|', '_')}"
        try:
            await self._observe(keys=[self.due_key, self.req_prefix + request_id],
                                args=[rank, seen_at + self.deadline_s, info, ttl, request_id])
        except Exception as exc:
            log.warning("watchdog cannot record %s (%s)", suffix, type(exc).__name__)

    async def _wait_for_user(self, request_id: str, expires_at: Any) -> None:
        from datetime import datetime

        try:
            until = datetime.fromisoformat(expires_at).timestamp() if isinstance(expires_at, str) else time.time()
            # XX: only a request still tracked; one already finished (or resumed past it) is left alone.
            await self.redis.zadd(self.due_key, {request_id: until + self.deadline_s}, xx=True)
        except Exception as exc:
            log.warning("watchdog cannot extend %s for its question (%s)", request_id, type(exc).__name__)

    async def sweep(self, now: Optional[float] = None) -> int:
        """Fail every overdue request whose result is not out; the number of failed results published."""
        now = time.time() if now is None else now
        published = 0
        for raw in await self.redis.zrangebyscore(self.due_key, "-inf", now, start=0, num=100):
            request_id = _text(raw)
            if not await self.redis.zrem(self.due_key, request_id):
                continue  # another watchdog took it
            info = await self.redis.get(self.req_prefix + request_id)
            stage, user_id = "unknown", ""
            parts = _text(info).split("|", 2) if info else []
            if len(parts) == 3:
                _, stage, user_id = parts
            try:
                if await self._fail(request_id, user_id, stage):
                    published += 1
            except Exception as exc:
                log.warning("watchdog could not fail %s (%s); will retry", request_id, type(exc).__name__)
                await self.redis.zadd(self.due_key, {request_id: now + self.settings.watchdog_interval_s})
        return published

    async def _fail(self, request_id: str, user_id: str, stage: str) -> bool:
        if await self.claims.is_published(request_id):
            return False
        result = timed_out_result(request_id, user_id, stage, self.deadline_s)
        if result is None:
            return False
        body = result.model_dump_json().encode()

        async def send() -> None:
            await self.send_result(request_id, body)

        if await publish_once(self.claims, request_id, send, results=self.results_log):
            metrics.RESULTS.labels("failed").inc()
            log.warning("request %s failed by the watchdog: waiting on %s", request_id, stage)
            return True
        return False

    async def run(self) -> None:
        while True:
            try:
                await self.sweep()
            except Exception as exc:  # Redis down: try again next tick
                log.warning("watchdog sweep failed (%s)", type(exc).__name__)
            await asyncio.sleep(self.settings.watchdog_interval_s)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self.run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
            self._task = None


def attach(app: Any, topic: Callable[[TopicSpec], Any], watchdog: Watchdog) -> None:
    """The watchdog's agents: one per watched topic, each only noting what passes."""
    for spec in WATCHED:

        async def agent(stream: Any, suffix: str = spec.suffix) -> None:
            async for event in stream.events():
                message = event.message
                await watchdog.observe(suffix, message.value, message.timestamp)

        app.agent(topic(spec), name=f"watchdog.{spec.suffix}")(agent)
