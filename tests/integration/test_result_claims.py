"""Result claims on the real Redis and broker: one result per (request, phase), also when the publisher dies
before sending (its claim is taken over and the result sent) or after sending but before confirming (the result
found on `results` is not sent again)."""

import asyncio
import json

import pytest
import redis.asyncio as aioredis

from infra.result_claims import ResultClaims, publish_once
from infra.settings import Settings
from streams.client import ensure_topics, new_producer
from streams.result_log import KafkaResultLog
from tests.integration.kafka_tools import read_topic

pytestmark = pytest.mark.asyncio


@pytest.fixture
async def setup(broker, redis_url, tmp_path, unique):
    settings = Settings.from_env({"GAPSTREAM_HOME": str(tmp_path), "GAPSTREAM_TOPIC_PREFIX": f"rc{unique}."})
    settings = await ensure_topics(broker.bootstrap, settings)  # resolved for the broker, as a client does
    client = aioredis.Redis.from_url(redis_url)
    claims = ResultClaims(client, prefix=f"rc{unique}:", lease_s=0.5)
    log = KafkaResultLog(broker.bootstrap, settings)
    await log.start()
    producer = new_producer(broker.bootstrap, settings)
    await producer.start()

    async def send_result(request_id, status="completed"):
        body = json.dumps({"request_id": request_id, "user_id": "eve", "status": status}).encode()
        await producer.send_and_wait(settings.topic("results"), key=request_id.encode(), value=body)

    async def results_for(request_id):
        return [r for r in await read_topic(broker.bootstrap, settings.topic("results"))
                if r.get("request_id") == request_id]

    try:
        yield claims, log, send_result, results_for
    finally:
        await producer.stop()
        await log.stop()
        await client.aclose()


async def test_concurrent_publishers_send_one_result(setup, unique):
    claims, log, send_result, results_for = setup
    rid = f"conc-{unique}"
    outcomes = await asyncio.gather(*(publish_once(claims, rid, lambda: send_result(rid), results=log)
                                      for _ in range(5)))
    assert sorted(outcomes) == [False] * 4 + [True]
    assert len(await results_for(rid)) == 1


async def test_a_publisher_that_died_before_sending_is_taken_over(setup, unique):
    claims, log, send_result, results_for = setup
    rid = f"before-{unique}"
    dead = await claims.begin(rid, marker=await log.marker(rid))  # claimed, then the process died
    assert dead is not None
    assert await publish_once(claims, rid, lambda: send_result(rid), results=log) is True
    assert len(await results_for(rid)) == 1 and await claims.is_published(rid)


async def test_a_publisher_that_died_after_sending_is_not_repeated(setup, unique):
    claims, log, send_result, results_for = setup
    rid = f"after-{unique}"
    dead = await claims.begin(rid, marker=await log.marker(rid))
    assert dead is not None
    await send_result(rid)  # the broker has it; the process died before confirming
    assert await publish_once(claims, rid, lambda: send_result(rid), results=log) is False
    assert len(await results_for(rid)) == 1 and await claims.is_published(rid)
    assert await publish_once(claims, rid, lambda: send_result(rid), results=log) is False


async def test_clarification_and_final_are_claimed_separately(setup, unique):
    claims, log, send_result, results_for = setup
    rid = f"phases-{unique}"
    assert await publish_once(claims, rid, lambda: send_result(rid, "needs_clarification"), "clarification",
                              results=log)
    assert not await publish_once(claims, rid, lambda: send_result(rid, "needs_clarification"), "clarification",
                                  results=log)
    assert await publish_once(claims, rid, lambda: send_result(rid), "final", results=log)
    assert not await publish_once(claims, rid, lambda: send_result(rid, "failed"), "final", results=log)
    assert [r["status"] for r in await results_for(rid)] == ["needs_clarification", "completed"]


async def test_a_result_claimed_by_an_earlier_version_counts_as_published(setup, redis_url, unique):
    claims, log, send_result, results_for = setup
    rid = f"legacy-{unique}"
    await claims.redis.set(f"{claims.prefix}done:result:{rid}", b"1", ex=60)  # the old single SET NX claim
    assert await claims.is_published(rid)
    assert await publish_once(claims, rid, lambda: send_result(rid), results=log) is False
    assert await results_for(rid) == []
