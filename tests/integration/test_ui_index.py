"""The web page's result index on the real broker and Redis: it reads `results` from the beginning, keeps the
final result over a late question, lists a user's results newest first, and forgets them with the user."""

import asyncio

import pytest
import redis.asyncio as aioredis

from schemas.records import ResultRecord
from streams.client import ensure_topics, new_producer
from tests.integration.kafka_tools import isolated_settings
from ui.index import ResultIndex


def result(request_id, user="alice", status="completed", at="2026-01-01T00:00:00+00:00"):
    return ResultRecord(request_id=request_id, user_id=user, status=status, finished_at=at,
                        question="which logo?" if status == "needs_clarification" else None)


async def test_index_reads_the_topic_and_keeps_final_results(broker, redis_url, tmp_path):
    settings = isolated_settings(tmp_path, "uiidx")
    await ensure_topics(broker.bootstrap, settings)
    producer = new_producer(broker.bootstrap, settings)
    await producer.start()
    topic = settings.topic("results")
    # Published before the index starts: it reads from the beginning.
    for record in (result("r1", status="needs_clarification"), result("r1", at="2026-01-01T00:00:05+00:00"),
                   result("r2", at="2026-01-01T00:00:09+00:00"), result("r3", user="bob")):
        await producer.send_and_wait(topic, key=record.request_id.encode(), value=record.model_dump_json().encode())
    await producer.send_and_wait(topic, key=b"junk", value=b"not json")  # ignored, not fatal
    client = aioredis.Redis.from_url(redis_url)
    seen = []

    async def on_result(record):
        seen.append(record.request_id)

    index = ResultIndex(client, settings, on_result=on_result)
    await index.start(broker.bootstrap)
    try:
        for _ in range(100):
            if {"r1", "r2", "r3"} <= set(seen):
                break
            await asyncio.sleep(0.1)
        assert (await index.get("r1")).status == "completed"
        # A late or replayed question does not turn a finished request back into one.
        assert await index.put(result("r1", status="needs_clarification")) is False
        assert (await index.get("r1")).status == "completed"
        page, total = await index.history("alice", 1, 10)
        assert [r.request_id for r in page] == ["r2", "r1"] and total == 2
        assert [r.request_id for r in (await index.history("bob", 1, 10))[0]] == ["r3"]
        await index.forget_user("alice")
        assert await index.history("alice", 1, 10) == ([], 0) and await index.get("r1") is None
        assert await index.get("r3") is not None
        with pytest.raises(ValueError):
            await index.history("not a user id", 1, 10)
    finally:
        await index.stop()
        await producer.stop()
        keys = [k async for k in client.scan_iter(match=f"{settings.app_id}:ui:*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()
