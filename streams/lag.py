"""Consumer lag per stage, topic and partition, sampled by each worker and exported as a Prometheus gauge.

Lag is what the stage's consumer group has yet to commit: the partition's end offset minus the group's committed
offset (or minus the partition's first offset when the group has committed nothing yet, since the stages start at
the earliest message). It is read from the broker, not from the worker's own consumer, so every worker of a group
reports the same group-wide figure for every partition, including partitions assigned to other members; a
dashboard takes `max by (stage, topic, partition)`.

Offsets are asked for with explicit partitions: Tansu does not answer `OffsetFetch` for a whole group.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Optional

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from infra import metrics

log = logging.getLogger("gapstream.lag")


@dataclass(frozen=True)
class Group:
    stage: str
    group_id: str
    topics: tuple[str, ...]


def groups_of(apps: Iterable[Any]) -> list[Group]:
    """The consumer group and input topics of each running stage app (one Faust app per stage)."""
    found = []
    for app in apps:
        group_id = app.conf.id
        stage = group_id.rsplit("-", 1)[-1]
        topics: set[str] = set()
        for agent in app.agents.values():
            topics.update(getattr(agent.channel, "topics", ()) or ())
        found.append(Group(stage, group_id, tuple(sorted(topics))))
    return found


class LagSampler:
    def __init__(self, bootstrap: str, groups: list[Group], interval_s: float = 5.0,
                 client_options: Optional[Mapping[str, Any]] = None) -> None:
        self.bootstrap = bootstrap
        self.client_options = dict(client_options or {})  # the broker's security settings
        self.groups = groups
        self.interval_s = interval_s
        self._admin: Optional[AIOKafkaAdminClient] = None
        self._consumer: Optional[AIOKafkaConsumer] = None
        self._task: Optional[asyncio.Task] = None

    async def start(self) -> "LagSampler":
        self._admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=10000,
                                          **self.client_options)
        await self._admin.start()
        self._consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, group_id=None, enable_auto_commit=False,
                                          **self.client_options)
        await self._consumer.start()
        if self.interval_s > 0:
            self._task = asyncio.create_task(self._loop(), name="gapstream-lag-sampler")
        return self

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for client in (self._consumer, self._admin):
            if client is not None:
                with contextlib.suppress(Exception):
                    await (client.stop() if client is self._consumer else client.close())

    async def _loop(self) -> None:
        while True:
            try:
                await self.sample()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a broker hiccup must not stop sampling, nor the worker
                metrics.LAG_SAMPLE_ERRORS.labels(type(exc).__name__).inc()
                log.warning("consumer lag sample failed: %s: %s", type(exc).__name__, exc)
            await asyncio.sleep(self.interval_s)

    async def sample(self) -> dict[tuple[str, str, int], int]:
        """Read every group's lag once, set the gauges and return {(stage, topic, partition): lag}."""
        assert self._admin is not None and self._consumer is not None, "start() first"
        from streams.broker import partitions_of

        known = await partitions_of(self._consumer, {t for group in self.groups for t in group.topics})
        lags: dict[tuple[str, str, int], int] = {}
        for group in self.groups:
            partitions = [TopicPartition(topic, p) for topic in group.topics for p in known[topic]]
            if not partitions:
                continue
            committed = await self._admin.list_consumer_group_offsets(group.group_id, partitions=partitions)
            ends = await self._consumer.end_offsets(partitions)
            starts = await self._consumer.beginning_offsets(partitions)
            for tp in partitions:
                meta = committed.get(tp)
                position = meta.offset if meta is not None and meta.offset >= 0 else starts.get(tp, 0)
                lag = max(0, ends.get(tp, 0) - position)
                lags[(group.stage, tp.topic, tp.partition)] = lag
                metrics.CONSUMER_LAG.labels(group.stage, tp.topic, str(tp.partition)).set(lag)
        return lags


async def start_for(apps: Iterable[Any], bootstrap: str, interval_s: float,
                    client_options: Optional[Mapping[str, Any]] = None) -> LagSampler:
    return await LagSampler(bootstrap, groups_of(apps), interval_s, client_options).start()
