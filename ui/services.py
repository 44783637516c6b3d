"""What the web page does to the system: publish requests and answers, read results, memory and dead letters.

Everything goes through the same public contracts as any other client: the topics (`streams.client`), the
user's memory in Redis (`infra.redis_memory`), the pending questions (`infra.redis_clarify`), dead letters
(`streams.dlq`). The pages (`ui.app`) only call this class, so tests can hand them a fake.
"""

from __future__ import annotations

import asyncio
import json
import mimetypes
from pathlib import Path
from typing import Any, Optional
from urllib.parse import quote

from infra.settings import Settings
from schemas.records import ImageRequest, MemoryItem, ResultRecord
from schemas.questions import AnswerRecord
from schemas.topics import ANSWERS
from ui.index import ResultIndex
from ui.live import Channel, LiveHub

# Only pictures leave the image store: anything else under its root (a stray HTML file) is never served.
IMAGE_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp",
               ".gif": "image/gif"}


class Refused(ValueError):
    """The request cannot be done as asked; the message is shown to the user."""


def image_url(uri: str) -> str:
    """The page's address of an image-store URI; `/image` checks it against the store again."""
    return "/image?uri=" + quote(uri or "", safe="")


def result_url(user_id: str, request_id: str) -> str:
    return f"/u/{quote(user_id, safe='')}/r/{quote(request_id, safe='')}"


class Services:
    def __init__(self, settings: Settings) -> None:
        if not settings.kafka_bootstrap or not settings.redis_url:
            raise ValueError("the web page's services need a broker and a Redis (started by `gapstream ui`)")
        self.settings = settings
        self.bootstrap = settings.kafka_bootstrap
        self.redis: Any = None
        self.producer: Any = None
        self.memory: Any = None
        self.pending: Any = None
        self.images: Any = None
        self.index: Optional[ResultIndex] = None
        self.live = LiveHub(self.bootstrap, settings, image_url)

    async def start(self) -> "Services":
        import redis.asyncio as aioredis

        from streams.backends import memory_store_for, open_image_store, pending_questions_for
        from streams.client import ensure_topics, new_producer

        settings = self.settings
        self.redis = aioredis.Redis.from_url(settings.redis_url, socket_timeout=5, socket_connect_timeout=3)
        # The same keys the planner reads: the deployment's one namespace.
        self.memory = memory_store_for(settings, self.redis)
        self.pending = pending_questions_for(settings, self.redis)
        self.images = open_image_store(settings.image_store, s3_endpoint_url=settings.s3_endpoint_url,
                                       s3_region=settings.s3_region)
        # Resolved against the broker (kind, replication): the producer and every reader suit it.
        self.settings = settings = await ensure_topics(self.bootstrap, settings)
        self.live.settings = settings
        self.producer = new_producer(self.bootstrap, settings)
        await self.producer.start()
        self.index = ResultIndex(self.redis, settings, on_result=self._on_result)
        await self.index.start(self.bootstrap)
        return self

    async def aclose(self) -> None:
        await self.live.aclose()
        if self.index is not None:
            await self.index.stop()
        if self.producer is not None:
            await self.producer.stop()
        if self.redis is not None:
            await self.redis.aclose()

    async def __aenter__(self) -> "Services":
        try:
            return await self.start()
        except BaseException:
            await self.aclose()
            raise

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _on_result(self, result: ResultRecord) -> None:
        await self.live.result(result, result_url(result.user_id, result.request_id))

    # Requests and answers -------------------------------------------------------------------------------------

    async def submit(self, request: ImageRequest) -> None:
        from streams.client import publish_request

        await self.live.open(request.request_id, request.user_id)  # watching before publishing: no stage is missed
        await publish_request(self.producer, self.settings, request)

    async def question(self, request_id: str) -> Optional[tuple[str, str]]:
        """(state, user_id) of the request's clarifying question, or None if it never asked one."""
        seen = await self.pending.peek(request_id)
        return (seen.state, seen.user_id) if seen else None

    async def answer(self, answer: AnswerRecord) -> None:
        """Publish an answer the planner will take: the same checks as `gapstream answer`, said at once."""
        seen = await self.pending.peek(answer.request_id)
        if seen is None:
            raise Refused("no question is waiting for this request")
        if seen.user_id != answer.user_id:
            raise Refused("this request belongs to another user")
        if seen.state != "waiting":
            raise Refused(f"this question was already {seen.state}")
        await self.live.open(answer.request_id, answer.user_id)
        await self.producer.send_and_wait(ANSWERS.name(self.settings.topic_prefix),
                                          key=answer.request_id.encode(), value=answer.model_dump_json().encode())

    def channel(self, request_id: str) -> Optional[Channel]:
        return self.live.get(request_id)

    async def follow(self, request_id: str) -> Channel:
        """The request's channel; a request this process did not submit (the CLI's, or before a restart) is
        followed from now on."""
        return self.live.get(request_id) or await self.live.open(request_id)

    # Results, history, memory ---------------------------------------------------------------------------------

    async def result(self, request_id: str) -> Optional[ResultRecord]:
        assert self.index is not None
        return await self.index.get(request_id)

    async def history(self, user_id: str, page: int, per_page: int) -> tuple[list[ResultRecord], int]:
        assert self.index is not None
        return await self.index.history(user_id, page, per_page)

    async def memory_items(self, user_id: str) -> list[MemoryItem]:
        return list(reversed(await self.memory.items(user_id)))  # newest first, as the page lists them

    async def forget(self, user_id: str, item_id: Optional[str] = None) -> int:
        removed = await self.memory.forget(user_id, item_id)
        if item_id is None:
            assert self.index is not None
            await self.index.forget_user(user_id)
        return removed

    # Images and dead letters ----------------------------------------------------------------------------------

    async def image(self, uri: str) -> tuple[bytes, str]:
        """An image's bytes and type, only from inside the image store (its own checks refuse anything outside
        the root: `..`, other absolute paths, other hosts or buckets)."""
        suffix = Path(uri.split("?", 1)[0]).suffix.lower()
        kind = IMAGE_TYPES.get(suffix) or mimetypes.types_map.get(suffix, "")
        if kind not in IMAGE_TYPES.values():
            raise Refused("not an image")
        try:
            data = await asyncio.to_thread(self.images.get, uri)
        except (ValueError, OSError) as exc:
            raise Refused(f"no such image: {exc}") from None
        return data, kind

    async def dead_letters(self) -> list[Any]:
        from streams.dlq import read_letters

        return list(reversed(await read_letters(self.settings)))  # newest first

    async def replay(self, letter_id: str) -> str:
        """Re-publish one dead letter's original payload, as `gapstream dlq replay` does."""
        from streams.dlq import publish_letters, replayable  # the CLI's own rules: one place decides what replays

        letters = await self.dead_letters()
        letter = next((lt for lt in letters if lt.id == letter_id), None)
        if letter is None:
            raise Refused(f"no dead letter {letter_id}")
        why = replayable(letter, self.settings.topic_prefix)
        if why:
            raise Refused(f"cannot replay {letter_id}: {why}")
        await publish_letters(self.settings, [letter])
        return letter.record.topic


def letter_view(letter: Any) -> dict[str, Any]:
    """A dead letter as the page lists it; its payload pretty-printed when it is JSON."""
    record = letter.record
    if record is None:
        return {"id": letter.id, "readable": False}
    payload = record.payload
    try:
        payload = json.dumps(json.loads(payload), indent=2)[:4000]
    except ValueError:
        payload = payload[:4000]
    return {"id": letter.id, "readable": True, "stage": record.stage, "error_class": record.error_class,
            "error": record.error, "at": record.at, "topic": record.topic, "request_id": record.request_id,
            "retriable": record.retriable, "payload": payload}
