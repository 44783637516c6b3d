"""Request deadlines on a real broker and Redis: a stage that never answers yields one `failed` result naming it,
and the real result, when it comes after all, does not make a second one."""

import asyncio
import time

import pytest

from schemas.records import ImageRequest
from streams.client import submit_and_wait
from streams.pipeline import Worker
from tests.integration.kafka_tools import isolated_settings, read_topic

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
        async with Worker(settings, broker.bootstrap, redis_url, ("generator",)):
            deadline = time.monotonic() + 90
            critiques = []
            while not critiques and time.monotonic() < deadline:
                critiques = await _results_for(broker.bootstrap, settings.topic("critiques"), request.request_id)
                await asyncio.sleep(0.5)
            assert critiques, "the generator never produced the late images"
            await asyncio.sleep(3)  # time for the publisher to see the final critique
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
