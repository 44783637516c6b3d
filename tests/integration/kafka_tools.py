"""Small aiokafka helpers for tests: what a user's own client would do."""

import asyncio
import contextlib
import json
import os
import time
import uuid

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from infra.settings import Settings
from streams.broker import for_broker, partitions_of
from streams.lag import LagSampler, groups_of


def isolated_settings(home, tag: str, **env: str) -> Settings:
    """Settings of one test's own: its home, topics and consumer groups (`tag` names them), quick group joins,
    and the kind of the suite's broker (tests/conftest.py), as a deployment would set or detect it."""
    run = f"{tag}{uuid.uuid4().hex[:8]}"
    return Settings.from_env({
        "GAPSTREAM_HOME": str(home),
        "GAPSTREAM_BROKER_KIND": os.environ.get("GAPSTREAM_TEST_BROKER", "kafka"),
        "GAPSTREAM_TOPIC_PREFIX": f"{run}.",
        "GAPSTREAM_APP_ID": run,
        "GAPSTREAM_BROKER_SESSION_TIMEOUT": "4",
        **env,
    })


async def read_topic(bootstrap: str, topic: str) -> list[dict]:
    """Every message on a topic from the beginning up to its current end, decoded where JSON."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                                fetch_max_wait_ms=20)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in (await partitions_of(consumer, [topic]))[topic]]
        if not tps:
            return []
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        out: list[dict] = []
        remaining = {tp for tp in tps if ends[tp] > 0}
        while remaining:
            batches = await consumer.getmany(timeout_ms=500)
            for tp, messages in batches.items():
                for message in messages:
                    try:
                        value = json.loads(message.value)
                    except ValueError:
                        value = {"_raw": message.value}
                    out.append(value)
            for tp in list(remaining):
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
        return out
    finally:
        await consumer.stop()


async def produce_raw(bootstrap: str, topic: str, key: bytes, value: bytes) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False)
    await producer.start()
    try:
        await producer.send_and_wait(topic, key=key, value=value)
    finally:
        await producer.stop()


async def wait_until_idle(bootstrap: str, apps, timeout_s: float = 60.0) -> None:
    """Until every stage app of `apps` has committed every message of its input topics and none wrote a new one
    meanwhile: then all that the messages sent so far will cause has happened, since a stage sends its outputs
    before it commits the input. Raises TimeoutError when that does not come within `timeout_s`.

    Two reads of the topics' end offsets bracket the read of the groups' commits: equal ends mean nothing was
    written in between, so a message some stage was still working on would have shown as lag."""
    groups = groups_of(apps)
    sampler = await LagSampler(bootstrap, groups, interval_s=0).start()
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        topics = {topic for group in groups for topic in group.topics}
        partitions = [TopicPartition(t, p) for t, ps in (await partitions_of(consumer, topics)).items() for p in ps]
        deadline = time.monotonic() + timeout_s
        while True:
            before = await consumer.end_offsets(partitions)
            lags = await sampler.sample()
            after = await consumer.end_offsets(partitions)
            if before == after and not any(lags.values()):
                return
            if time.monotonic() > deadline:
                busy = {key: lag for key, lag in lags.items() if lag}
                raise TimeoutError(f"stages still busy after {timeout_s:g} s: lag {busy}")
            await asyncio.sleep(0.2)
    finally:
        await consumer.stop()
        await sampler.aclose()


@contextlib.asynccontextmanager
async def running_worker_pipeline(settings, bootstrap: str, redis_url: str):
    """Every stage in this process, plus a client's producer and result watcher: (worker, watcher, producer)."""
    from streams.topology import STAGES
    from streams.client import ResultWatcher, new_producer
    from streams.pipeline import Worker

    settings = await for_broker(bootstrap, settings)  # the client's producer must suit the broker too
    async with Worker(settings, bootstrap, redis_url, STAGES) as worker:
        await worker.wait_assigned()
        watcher = ResultWatcher(bootstrap, settings)
        await watcher.start()
        producer = new_producer(bootstrap, settings)
        await producer.start()
        try:
            yield worker, watcher, producer
        finally:
            await producer.stop()
            await watcher.stop()


@contextlib.asynccontextmanager
async def running_pipeline(settings, bootstrap: str, redis_url: str):
    """Every stage in this process, plus a client's producer and result watcher: (watcher, producer)."""
    async with running_worker_pipeline(settings, bootstrap, redis_url) as (_, watcher, producer):
        yield watcher, producer
