"""Request deadlines on a real broker and Redis: a stage that never answers yields one `failed` result naming it,
and the real result, when it comes after all, does not make a second one; a request whose every stage answers in
time is never failed, however long the whole request takes."""

import asyncio
import json
import time

import pytest
from aiokafka import AIOKafkaProducer

from schemas.records import ImageRequest
from streams.client import submit_and_wait
from streams.pipeline import Worker
from tests.integration.kafka_tools import isolated_settings, read_topic, wait_until_idle

pytestmark = pytest.mark.asyncio


def _settings(tmp_path, **env):
    # The deadline: long enough that no working stage of a heavily loaded test machine misses it, short enough
    # for a test.
    return isolated_settings(tmp_path, "wd", **{"GAPSTREAM_REQUEST_DEADLINE_S": "15",
                                                "GAPSTREAM_WATCHDOG_INTERVAL_S": "0.3", **env})


async def _results_for(bootstrap, topic, request_id):
    return [r for r in await read_topic(bootstrap, topic) if r.get("request_id") == request_id]


async def test_a_stuck_stage_gets_a_failed_result_naming_it_and_no_second_result_later(
        broker, redis_url, tmp_path, unique):
    settings = _settings(tmp_path)
    no_generator = ("planner", "searcher", "enricher", "critic", "publisher", "watchdog")
    request = ImageRequest(request_id=f"stuck-{unique}", user_id=f"u-{unique}", prompt="a red kite", max_rounds=1)
    async with Worker(settings, broker.bootstrap, redis_url, no_generator) as worker:
        await worker.wait_assigned(60)
        result = await submit_and_wait(broker.bootstrap, settings, request, timeout_s=180)
        assert result.status == "failed"
        assert "generator" in result.error and "GAPSTREAM_REQUEST_DEADLINE_S" in result.error

        # The generator comes back: the request goes through to a final critique, whose publisher finds the claim.
        async with Worker(settings, broker.bootstrap, redis_url, ("generator",)) as generator:
            deadline = time.monotonic() + 90
            critiques = []
            while not critiques and time.monotonic() < deadline:
                critiques = await _results_for(broker.bootstrap, settings.topic("critiques"), request.request_id)
                await asyncio.sleep(0.5)
            assert critiques, "the generator never produced the late images"
            # The publisher has handled the final critique (and sent a second result, were the claim broken).
            await wait_until_idle(broker.bootstrap, [*worker.apps, *generator.apps], timeout_s=90)
    results = await _results_for(broker.bootstrap, settings.topic("results"), request.request_id)
    assert [r["status"] for r in results] == ["failed"]


async def test_a_moving_request_is_not_failed(broker, redis_url, tmp_path, unique):
    from streams.topology import STAGES

    settings = _settings(tmp_path, GAPSTREAM_REQUEST_DEADLINE_S="300")
    request = ImageRequest(request_id=f"ok-{unique}", user_id=f"u-{unique}", prompt="a blue kite")
    async with Worker(settings, broker.bootstrap, redis_url, (*STAGES, "watchdog")) as worker:
        await worker.wait_assigned(60)
        result = await submit_and_wait(broker.bootstrap, settings, request, timeout_s=90)
        assert result.status == "completed", result.error
        await asyncio.sleep(1.0)
        due = await worker.watchdog.redis.zscore(worker.watchdog.due_key, request.request_id)
        assert due is None  # the result took it off the watch list


async def _wait_for_results(bootstrap, topic, request_id, timeout_s):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = await _results_for(bootstrap, topic, request_id)
        if found:
            return found
        await asyncio.sleep(0.5)
    raise AssertionError(f"no result for {request_id} within {timeout_s:g} s")


async def test_each_hop_in_time_is_never_failed_however_long_the_request_and_a_stuck_one_fails_once(
        broker, redis_url, tmp_path, unique):
    """The watchdog on its own, the test playing the stages: `moving` takes longer than the deadline in all, each
    stage answering well within it; `stuck` stops after the planner. `sentinel`, stuck from its first message on,
    is sent after `moving` finished, so its failure proves the watchdog swept past every deadline `moving` had."""
    deadline_s = 8.0
    settings = _settings(tmp_path, GAPSTREAM_REQUEST_DEADLINE_S=f"{deadline_s:g}")
    user = f"u-{unique}"
    moving, stuck, sentinel = f"moving-{unique}", f"stuck-{unique}", f"sentinel-{unique}"
    results_topic = settings.topic("results")
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, enable_idempotence=False)

    async def hop(suffix: str, request_id: str, **fields) -> None:
        body = {"request_id": request_id, "user_id": user, "round": 0, **fields}
        await producer.send_and_wait(settings.topic(suffix), key=request_id.encode(), value=json.dumps(body).encode())

    async with Worker(settings, broker.bootstrap, redis_url, ("watchdog",)) as worker:
        await worker.wait_assigned(60)
        await producer.start()
        try:
            await hop("requests", stuck)
            await hop("gaps", stuck)  # and the searcher never answers
            started = time.monotonic()
            for suffix, fields in [("requests", {}), ("gaps", {}), ("search-results", {}), ("enriched-prompts", {}),
                                   ("images", {}), ("critiques", {"critique": {"verdict": "exhausted"}})]:
                await hop(suffix, moving, **fields)
                await asyncio.sleep(deadline_s / 5)
            await hop("results", moving, status="completed")
            # Past one deadline from its first message: a watchdog timing the request, not the stage, fails it.
            assert time.monotonic() - started > deadline_s
            await hop("requests", sentinel)
            sentinel_results = await _wait_for_results(broker.bootstrap, results_topic, sentinel, deadline_s + 60)
            assert await worker.watchdog.redis.zscore(worker.watchdog.due_key, moving) is None
        finally:
            await producer.stop()

    assert [(r["status"], "planner" in r["error"]) for r in sentinel_results] == [("failed", True)]
    results = await read_topic(broker.bootstrap, results_topic)
    statuses = {rid: [r["status"] for r in results if r.get("request_id") == rid] for rid in (moving, stuck)}
    assert statuses == {moving: ["completed"], stuck: ["failed"]}  # the completed one is the test's own
    [failed] = [r for r in results if r.get("request_id") == stuck]
    assert "searcher" in failed["error"] and "GAPSTREAM_REQUEST_DEADLINE_S" in failed["error"]
