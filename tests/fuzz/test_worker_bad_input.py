"""Every named bad-input class through a running worker on the real broker and Redis: one dead letter each with
its reason, a `failed` result where the message names a request, and the worker still serves a good request."""

import asyncio
import base64
import time

import pytest

from schemas.records import ImageRequest
from streams.client import publish_request
from tests.fuzz.bad_inputs import BAD_REQUESTS, with_ids
from tests.integration.kafka_tools import isolated_settings, produce_raw, read_topic, running_pipeline

pytestmark = [pytest.mark.fuzz, pytest.mark.integration]


async def test_bad_messages_become_dead_letters_and_the_worker_stays_up(broker, redis_url, tmp_path, unique):
    settings = isolated_settings(tmp_path, "fz")
    sent = {}
    async with running_pipeline(settings, broker.bootstrap, redis_url) as (watcher, producer):
        for name, raw, routable in BAD_REQUESTS:
            key = f"{name}-{unique}"
            sent[key] = (with_ids(raw, key), routable)
            await produce_raw(broker.bootstrap, settings.topic("requests"), key.encode(), sent[key][0])
        good = ImageRequest(request_id=f"good-{unique}", user_id=f"u-{unique}", prompt="a lighthouse at dusk")
        await publish_request(producer, settings, good)
        result = await watcher.wait(good.request_id, timeout_s=120)
        assert result.status == "completed", result.error

        deadline = time.monotonic() + 60
        letters = []
        while time.monotonic() < deadline:
            letters = await read_topic(broker.bootstrap, settings.topic("dead-letters"))
            if len(letters) >= len(sent):
                break
            await asyncio.sleep(0.5)
    by_key = {}
    for letter in letters:
        by_key.setdefault(letter["key"], []).append(letter)
    missing = sorted(set(sent) - set(by_key))
    assert not missing, f"no dead letter for {missing}"
    for key, (raw, routable) in sent.items():
        [letter] = by_key[key]
        assert letter["stage"] == "planner" and letter["error"].strip() and letter["offset"] is not None
        payload = base64.b64decode(letter["payload"]) if letter["payload_encoding"] == "base64" \
            else letter["payload"].encode()
        assert payload == raw[:len(payload)]
    results = {r["request_id"]: r for r in await read_topic(broker.bootstrap, settings.topic("results"))}
    for key, (_, routable) in sent.items():
        assert (key in results) == routable, key
        if routable:
            assert results[key]["status"] == "failed" and results[key]["error"]
