"""The Worker: runs a chosen set of stages of `streams.topology.TOPOLOGY` in one process, each stage as its own Faust
app and consumer group, so any split of stages across processes and hosts sees every message once per stage.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Optional

from infra import metrics
from infra.settings import Settings
from schemas.topics import RESULTS, TopicSpec
from streams import logs
from streams.backends import BackendOverrides, Backends, open_backends
from streams.client import ensure_topics
from streams.faust_app import make_app
from streams.generator_worker import BatchingGenerator, batching_agent, build_generator
from streams.result_log import KafkaResultLog
from streams.stages import Delivery, StageProcessor
from streams.topology import BY_NAME, Stage, needs_of, stage_handlers
from streams.watchdog import Watchdog, attach

log = logging.getLogger("gapstream.worker")


class Worker:
    """`async with Worker(settings, bootstrap, redis_url, stages):` runs those stages until the block ends.
    `overrides` supplies backends instead of those the settings choose (the benchmarks' simulated models)."""

    def __init__(self, settings: Settings, bootstrap: str, redis_url: str, stages: tuple[str, ...],
                 overrides: Optional[BackendOverrides] = None) -> None:
        self.settings = settings
        self.bootstrap = bootstrap
        self.redis_url = redis_url
        self.stages = stages
        self.overrides = overrides
        self.backends: Optional[Backends] = None
        self.apps: list[Any] = []
        self._senders: dict[str, Any] = {}
        self._timers: list[asyncio.Task] = []
        self._stop_timers = asyncio.Event()
        self.watchdog: Optional[Watchdog] = None  # when the "watchdog" stage runs here
        self.results_log: Optional[KafkaResultLog] = None  # checks a lapsed result claim (issue 7)

    async def start(self) -> None:
        started = time.perf_counter()
        self.settings = await ensure_topics(self.bootstrap, self.settings)  # resolved against the broker
        self.backends = await open_backends(self.settings, self.redis_url, needs_of(self.stages), self.overrides)
        self.results_log = KafkaResultLog(self.bootstrap, self.settings)
        await self.results_log.start()
        for name in self.stages:
            if name == "watchdog" and self.settings.request_deadline_s <= 0:
                continue  # deadlines are off
            self.apps.append(self._build_app(BY_NAME[name]))
        await asyncio.gather(*(app.start() for app in self.apps))
        for name in self.stages:
            timer = BY_NAME[name].timer
            if timer is not None:  # e.g. the planner's: questions nobody answered in time get an `expired` result
                self._timers.append(asyncio.create_task(
                    timer(self.backends, self._senders[name], self._stop_timers, self.results_log)))
        if self.watchdog is not None:
            self.watchdog.start()
        log.info("stages %s started in %.2f s", ",".join(self.stages), time.perf_counter() - started)

    async def wait_assigned(self, timeout_s: float = 30.0) -> None:
        """Until every stage's consumer owns partitions (handy before measuring; not needed for correctness)."""
        deadline = time.monotonic() + timeout_s
        while not all(app.consumer.assignment() for app in self.apps):
            if time.monotonic() > deadline:
                raise TimeoutError("stages did not join their consumer groups in time")
            await asyncio.sleep(0.05)

    async def stop(self) -> None:
        self._stop_timers.set()
        await asyncio.gather(*self._timers, return_exceptions=True)
        self._timers.clear()
        if self.watchdog is not None:
            await self.watchdog.stop()
        await asyncio.gather(*(app.stop() for app in self.apps), return_exceptions=True)
        self.apps.clear()
        if self.backends is not None:
            await self.backends.aclose()
            self.backends = None
        if self.results_log is not None:
            await self.results_log.stop()
            self.results_log = None

    async def __aenter__(self) -> "Worker":
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _build_app(self, stage: Stage) -> Any:
        assert self.backends is not None
        settings = self.settings
        app = make_app(settings, stage.name, self.bootstrap)
        topics: dict[str, Any] = {}

        def topic(spec: TopicSpec) -> Any:
            if spec.suffix not in topics:
                topics[spec.suffix] = app.topic(
                    spec.name(settings.topic_prefix), key_type=bytes, value_type=bytes,
                    partitions=settings.topic_partitions,
                )
            return topics[spec.suffix]

        async def send(spec: TopicSpec, key: str, value: bytes) -> None:
            # Wait for the broker's ack: the input is only acked (and its offset committed) after this returns.
            delivered = await topic(spec).send(key=key.encode("utf-8"), value=value)
            await delivered
            metrics.STAGE_MESSAGES_OUT.labels(stage.name, spec.name(settings.topic_prefix)).inc()

        self._senders[stage.name] = send

        if stage.handlers is None:  # the watchdog: observes every pipeline topic, answers only overdue requests
            async def send_result(key: str, value: bytes) -> None:
                await send(RESULTS, key, value)

            self.watchdog = Watchdog(self.backends.redis, self.backends.claims, settings, send_result,
                                     results_log=self.results_log)
            attach(app, topic, self.watchdog)
            return app
        for source, handler in stage_handlers(stage, self.backends):
            processor = StageProcessor(stage.name, source, handler, send, settings, self.backends.dedupe,
                                       self.backends.claims, self.results_log)
            name = f"{stage.name}.{source.suffix}"
            if stage.batched:
                assert self.backends.text_to_image is not None
                batcher = BatchingGenerator(processor, build_generator(self.backends.text_to_image,
                                                                       self.backends.image_store),
                                            settings.max_batch)
                app.agent(topic(source), name=name, concurrency=1)(batching_agent(batcher, settings))
                continue
            # Model- and search-bound stages wait on I/O: several messages in flight keep one slow call from
            # holding up every other request. (A batched stage takes its messages in one agent, above.)
            app.agent(topic(source), name=name, concurrency=settings.stage_concurrency)(one_at_a_time(processor))
        return app


def one_at_a_time(processor: StageProcessor) -> Any:
    """A Faust agent that hands each message to the processor, with the request's id bound to its log lines."""

    async def agent(stream: Any) -> None:
        async for event in stream.events():
            message = event.message
            metrics.STAGE_MESSAGES_IN.labels(processor.stage, message.topic).inc()
            # Messages are keyed by request_id: every log line of this message names it and the stage.
            with logs.bound(processor.stage, _key_text(message.key)):
                started = time.perf_counter()
                await processor.process(Delivery(
                    topic=message.topic, partition=message.partition, offset=message.offset,
                    key=message.key, value=message.value or b"",
                ))
                log.info("handled %s[%s]@%s in %.0f ms", message.topic, message.partition,
                         message.offset, (time.perf_counter() - started) * 1000)

    return agent


def _key_text(key: Optional[bytes]) -> Optional[str]:
    return key.decode("utf-8", "replace")[:128] if key else None
