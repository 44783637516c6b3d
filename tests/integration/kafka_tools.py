"""Small aiokafka helpers for tests: what a user's own client would do."""

import contextlib
import json
import os
import uuid

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from infra.settings import Settings
from streams.broker import for_broker, partitions_of


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


@contextlib.asynccontextmanager
async def running_pipeline(settings, bootstrap: str, redis_url: str):
    """Every stage in this process, plus a client's producer and result watcher: (watcher, producer)."""
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
            yield watcher, producer
        finally:
            await producer.stop()
            await watcher.stop()
