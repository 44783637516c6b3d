"""A generator worker process SIGKILLed in the middle of a pipeline call loses nothing: after a restart every
request gets exactly one images message (offsets are committed only after a batch's messages are out, and the
dedupe mark stops a redelivered, already-finished request from being rendered twice)."""

import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request

import pytest
from aiokafka import AIOKafkaProducer

from infra.settings import Settings
from schemas.records import EnrichedPromptRecord, GenerationParams, ImageRequest
from streams.client import ensure_topics
from streams.local import free_port
from tests.integration.kafka_tools import read_topic

REQUESTS = 12
DEADLINE_S = 240  # generous: two CPUs shared with other test runs


def _cmd(*args):
    exe = shutil.which("gapstream")
    return [exe, *args] if exe else [sys.executable, "-m", "cli", *args]


def _metric(port: int, name: str) -> float:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
            text = response.read().decode()
    except OSError:
        return -1.0
    values = [float(v) for v in re.findall(rf"^{name}(?:{{[^}}]*}})? ([0-9.e+-]+)$", text, re.M)]
    return sum(values) if values else 0.0


def _start(env, port):
    return subprocess.Popen(_cmd("worker", "--stages", "generator", "--metrics-port", str(port)),
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _record(request_id: str, seed: int) -> bytes:
    request = ImageRequest(request_id=request_id, user_id="kim", prompt=f"a windmill number {seed}")
    # 10 steps: a batch of 4 takes seconds on a busy CPU, a wide window to land the kill inside the call.
    record = EnrichedPromptRecord(
        request_id=request_id, user_id="kim", round=1, request=request, prompt=request.prompt,
        params=GenerationParams(width=64, height=64, steps=10, guidance=1.0, seeds=[seed]),
    )
    return record.model_dump_json().encode()


async def _images_per_request(bootstrap: str, topic: str, ids: set[str]) -> dict[str, int]:
    counts = {request_id: 0 for request_id in ids}
    for message in await read_topic(bootstrap, topic):
        if message.get("request_id") in counts:
            counts[message["request_id"]] += 1
    return counts


async def test_a_worker_killed_mid_batch_loses_nothing_and_duplicates_nothing(broker, redis_url, tmp_path, unique):
    env = {
        **os.environ,
        "GAPSTREAM_HOME": str(tmp_path),
        "GAPSTREAM_KAFKA_BOOTSTRAP": broker.bootstrap,
        "GAPSTREAM_REDIS_URL": redis_url,
        "GAPSTREAM_TOPIC_PREFIX": f"gk{unique}.",
        "GAPSTREAM_APP_ID": f"gk-{unique}",
        "GAPSTREAM_BROKER_SESSION_TIMEOUT": "4",
        "GAPSTREAM_MAX_BATCH": "4",
        "GAPSTREAM_BATCH_WAIT_MS": "200",
    }
    settings = Settings.from_env(env)
    await ensure_topics(broker.bootstrap, settings)
    images_topic = settings.topic("images")
    ids = {f"kill-{unique}-{i}" for i in range(REQUESTS)}

    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, enable_idempotence=False)
    await producer.start()
    try:
        for i, request_id in enumerate(sorted(ids)):
            await producer.send_and_wait(settings.topic("enriched-prompts"), key=request_id.encode(),
                                         value=_record(request_id, 500 + i))
    finally:
        await producer.stop()

    port = free_port()
    first = _start(env, port)
    try:
        # Kill once a batch's messages are out (its events counted) and the next pipeline call is running.
        deadline = time.monotonic() + DEADLINE_S
        while True:
            assert first.poll() is None, first.stderr.read()
            assert time.monotonic() < deadline, "the worker never reached its second batch"
            if _metric(port, "gapstream_stage_events_total") >= 4 and _metric(port, "gapstream_generator_busy") >= 1:
                break
            await asyncio.sleep(0.05)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    finally:
        if first.poll() is None:
            first.kill()
    at_kill = await _images_per_request(broker.bootstrap, images_topic, ids)
    done_at_kill = sum(1 for n in at_kill.values() if n)
    assert 4 <= done_at_kill < REQUESTS, at_kill  # the kill left work undone

    second = _start(env, free_port())
    try:
        deadline = time.monotonic() + DEADLINE_S
        counts = at_kill
        while not all(counts.values()):
            assert second.poll() is None, second.stderr.read()
            assert time.monotonic() < deadline, f"requests without images after the restart: {counts}"
            await asyncio.sleep(1.0)
            counts = await _images_per_request(broker.bootstrap, images_topic, ids)
        # Give a late duplicate (a redelivered batch) the time to show up before counting.
        await asyncio.sleep(3.0)
        counts = await _images_per_request(broker.bootstrap, images_topic, ids)
        assert counts == {request_id: 1 for request_id in ids}
    finally:
        second.send_signal(signal.SIGTERM)
        try:
            second.wait(timeout=30)
        except subprocess.TimeoutExpired:
            second.kill()
            pytest.fail("the restarted worker did not stop on SIGTERM")
    assert second.returncode == 0, second.stderr.read()
