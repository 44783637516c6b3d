"""Dead letters on the broker: read them, and re-publish their original payloads after a fix.

Used by `gapstream dlq list|show|replay` (`cli.dlq`) and the web page's dead-letter view (`ui.services`).

A dead letter's id is `<partition>:<offset>` on the dead-letters topic. Replay sends the original payload (base64
decoded when it was binary) with its original key to its original topic, where the stage reads it again; the
stages' dedupe and the result claims keep a replay of something that did go through from producing a second result.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Optional

from infra.settings import Settings
from schemas.records import DeadLetter
from schemas.topics import ALL_TOPICS, DEAD_LETTERS

@dataclass(frozen=True)
class Letter:
    partition: int
    offset: int
    record: Optional[DeadLetter]
    raw: bytes

    @property
    def id(self) -> str:
        return f"{self.partition}:{self.offset}"


NEEDS_BOOTSTRAP = "dlq needs GAPSTREAM_KAFKA_BOOTSTRAP=host:port of a running deployment"


def _bootstrap(settings: Settings) -> str:
    if not settings.kafka_bootstrap:
        raise ValueError(NEEDS_BOOTSTRAP)
    return settings.kafka_bootstrap


async def read_letters(settings: Settings) -> list[Letter]:
    """Every dead letter from the beginning of the topic up to its current end."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from streams.faust_app import kafka_client_options

    topic = DEAD_LETTERS.name(settings.topic_prefix)
    consumer = AIOKafkaConsumer(bootstrap_servers=_bootstrap(settings), group_id=None, enable_auto_commit=False,
                                fetch_max_wait_ms=50, **kafka_client_options(settings))
    await consumer.start()
    try:
        from streams.broker import partitions_of

        tps = [TopicPartition(topic, p) for p in (await partitions_of(consumer, [topic]))[topic]]
        if not tps:
            return []
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        letters: list[Letter] = []
        remaining = {tp for tp in tps if ends[tp] > 0}
        while remaining:
            for tp, messages in (await consumer.getmany(timeout_ms=500)).items():
                for message in messages:
                    letters.append(Letter(tp.partition, message.offset, _parse(message.value), message.value or b""))
            for tp in list(remaining):
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
        return sorted(letters, key=lambda letter: (letter.record.at if letter.record else "", letter.id))
    finally:
        await consumer.stop()


def _parse(value: Optional[bytes]) -> Optional[DeadLetter]:
    try:
        return DeadLetter.model_validate_json(value or b"")
    except ValueError:
        return None  # not ours; listed as unreadable rather than hidden


def original_payload(record: DeadLetter) -> bytes:
    if record.payload_encoding == "base64":
        return base64.b64decode(record.payload)
    return record.payload.encode("utf-8")


def replayable(letter: Letter, prefix: str) -> Optional[str]:
    """Why a letter cannot be replayed, or None."""
    r = letter.record
    if r is None:
        return "not a dead-letter record"
    if r.payload_truncated:
        return "its payload was truncated"
    if r.topic not in {spec.name(prefix) for spec in ALL_TOPICS} or r.topic == DEAD_LETTERS.name(prefix):
        return f"its topic {r.topic!r} is not a pipeline topic of prefix {prefix!r}"
    return None


async def publish_letters(settings: Settings, letters: list[Letter]) -> None:
    from streams.broker import for_broker
    from streams.client import new_producer

    settings = await for_broker(_bootstrap(settings), settings)
    producer = new_producer(_bootstrap(settings), settings)
    await producer.start()
    try:
        for letter in letters:
            r = letter.record
            assert r is not None
            await producer.send_and_wait(r.topic, key=r.key.encode() if r.key else None, value=original_payload(r))
    finally:
        await producer.stop()
