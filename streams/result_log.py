"""Reads `results` for the result claims: where a request's result will land, and whether it is there already.

A result claim whose holder died is taken over with the `partition@end offset` the holder noted before sending
(`infra.result_claims`); `published_since` reads that partition from there to its end for the request's key. The
partition is the producer's own choice (aiokafka's default partitioner: murmur2 of the key), computed the same way.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Optional

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.partitioner import DefaultPartitioner

from infra.result_claims import phase_of
from infra.settings import Settings
from schemas.topics import RESULTS


class KafkaResultLog:
    def __init__(self, bootstrap: str, settings: Settings) -> None:
        from streams.faust_app import kafka_client_options

        self.topic = RESULTS.name(settings.topic_prefix)
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
            fetch_max_wait_ms=settings.fetch_wait_ms, **kafka_client_options(settings),
        )
        self._partitioner = DefaultPartitioner()
        self._scan = asyncio.Lock()  # one assignment at a time on the shared consumer
        # The partitions of `results`, read again at most every PARTITIONS_MAX_AGE_S: an operator may add some, and
        # the producer then spreads keys over the new count once its own metadata refreshes.
        self._partitions: list[int] = []
        self._partitions_read = 0.0

    PARTITIONS_MAX_AGE_S = 60.0

    async def start(self) -> None:
        await self._consumer.start()
        await self._read_partitions()

    async def _read_partitions(self) -> None:
        from streams.broker import partitions_of

        self._partitions = (await partitions_of(self._consumer, [self.topic]))[self.topic]
        self._partitions_read = time.monotonic()

    async def stop(self) -> None:
        await self._consumer.stop()

    async def _partition(self, request_id: str) -> TopicPartition:
        if time.monotonic() - self._partitions_read > self.PARTITIONS_MAX_AGE_S or not self._partitions:
            await self._read_partitions()
        partitions = self._partitions
        if not partitions:
            raise ConnectionError(f"topic {self.topic} has no partitions yet")
        return TopicPartition(self.topic, self._partitioner(request_id.encode("utf-8"), partitions, partitions))

    async def marker(self, request_id: str) -> str:
        tp = await self._partition(request_id)
        end = (await self._consumer.end_offsets([tp]))[tp]
        return f"{tp.partition}@{end}"

    async def published_since(self, request_id: str, phase: str, marker: str) -> bool:
        try:
            partition, offset = (int(x) for x in marker.split("@", 1))
        except ValueError:
            return False
        tp = TopicPartition(self.topic, partition)
        key = request_id.encode("utf-8")
        async with self._scan:
            end = (await self._consumer.end_offsets([tp]))[tp]
            if offset >= end:
                return False
            self._consumer.assign([tp])
            self._consumer.seek(tp, offset)
            while await self._consumer.position(tp) < end:
                batches = await self._consumer.getmany(tp, timeout_ms=1000, max_records=500)
                for message in batches.get(tp, []):
                    if message.key == key and _phase(message.value) == phase:
                        return True
        return False


def _phase(value: Optional[bytes]) -> Optional[str]:
    try:
        status = json.loads(value or b"").get("status")
    except (ValueError, AttributeError):
        return None
    return phase_of(status) if isinstance(status, str) else None
