"""The wiring: which stage reads which topic, writes where, and with which backends.

`Worker` runs a chosen set of stages in one process, each stage as its own Faust app and consumer group, so any
split of stages across processes and hosts sees every message once per stage.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Optional

from agents.publisher import build_result, is_final
from infra import metrics
from infra.settings import Settings
from schemas.records import CritiqueRecord
from schemas.topics import (
    CRITIQUES,
    ENRICHED_PROMPTS,
    GAPS,
    IMAGES,
    REQUESTS,
    RESULTS,
    SEARCH_RESULTS,
    TopicSpec,
)
from streams.backends import Backends, open_backends
from streams.client import ensure_topics
from streams.faust_app import make_app
from streams.stages import Delivery, Handler, StageProcessor
from streams import logs

log = logging.getLogger("gapstream.worker")


def stage_handlers(stage: str, backends: Backends) -> list[tuple[TopicSpec, Handler]]:
    """The input topics of a stage and what it does with each record."""
    settings = backends.settings
    if stage == "planner":
        # Requests, follow-ups and answers to clarifying questions (issue 6).
        from streams.clarify import planner_handlers

        return planner_handlers(backends)
    if stage == "searcher":
        from agents.searcher import Searcher
        from infra.search_factory import searcher_options

        searcher = Searcher(backends.search, **searcher_options(settings))

        async def search(record: Any):
            found = await searcher(record)
            metrics.observe_searches(found.searches[len(getattr(record, "searches", None) or []):])
            return [(SEARCH_RESULTS, found)]

        return [(GAPS, search)]
    if stage == "enricher":
        from agents.enricher import Enricher
        from infra.diffusion import generation_defaults

        enricher = Enricher(generation_defaults(settings))
        if backends.llm is not None:
            from agents.llm_enricher import LLMEnricher

            enricher = LLMEnricher(backends.llm, enricher, on_error=settings.llm_on_error)

        async def enrich(record: Any):
            return [(ENRICHED_PROMPTS, await enricher(record))]

        async def revise(record: CritiqueRecord):
            if is_final(record):
                return None  # the publisher's
            return [(ENRICHED_PROMPTS, await enricher(record))]

        return [(SEARCH_RESULTS, enrich), (CRITIQUES, revise)]
    if stage == "generator":
        from streams.generator_worker import build_generator

        # One message at a time through StageProcessor; the worker batches with streams.generator_worker instead.
        generator = build_generator(backends.text_to_image, backends.image_store)

        async def generate(record: Any):
            return [(IMAGES, await generator(record))]

        return [(ENRICHED_PROMPTS, generate)]
    if stage == "critic":
        from agents.critic import QualityCritic

        critic = QualityCritic(backends.image_store, accept_score=settings.accept_score)
        if backends.vlm is not None:
            from agents.vlm_critic import VLMCritic

            critic = VLMCritic(backends.vlm, backends.image_store, critic, accept_score=settings.accept_score,
                               on_error=settings.llm_on_error)

        async def critique(record: Any):
            return [(CRITIQUES, await critic(record))]

        return [(IMAGES, critique)]
    if stage == "publisher":

        async def publish(record: CritiqueRecord):
            if not is_final(record):
                return None  # the enricher's
            # The one-result-per-request claim is taken around the send by the StageProcessor (result claims).
            result = build_result(record)
            from streams.clarify import remember_result

            result = await remember_result(backends, result)  # issue 6: accepted results teach the user's memory
            metrics.RESULTS.labels(result.status).inc()
            metrics.ROUNDS.observe(result.rounds)
            metrics.REQUEST_SECONDS.observe(sum(t.seconds for t in result.timings))
            metrics.observe_result(result)
            _count_gaps(result.gaps, "final")
            return [(RESULTS, result)]

        return [(CRITIQUES, publish)]
    raise ValueError(f"unknown stage {stage!r}")


def _count_gaps(gaps: Any, when: str) -> None:
    if when != "final":
        return
    for gap in gaps:
        metrics.GAPS.labels(gap.kind, gap.strategy, gap.status).inc()


class Worker:
    """`async with Worker(settings, bootstrap, redis_url, stages):` runs those stages until the block ends."""

    def __init__(self, settings: Settings, bootstrap: str, redis_url: str, stages: tuple[str, ...]) -> None:
        self.settings = settings
        self.bootstrap = bootstrap
        self.redis_url = redis_url
        self.stages = stages
        self.backends: Optional[Backends] = None
        self.apps: list[Any] = []
        self._senders: dict[str, Any] = {}
        self._sweeper: Optional[asyncio.Task] = None
        self._sweep_stop = asyncio.Event()
        self.watchdog: Any = None  # streams.watchdog.Watchdog when the "watchdog" stage runs here
        self.results_log: Any = None  # streams.result_log.KafkaResultLog: checks a lapsed result claim (issue 7)

    async def start(self) -> None:
        started = time.perf_counter()
        self.settings = await ensure_topics(self.bootstrap, self.settings)  # resolved against the broker
        self.backends = await open_backends(self.settings, self.redis_url, self.stages)
        from streams.result_log import KafkaResultLog

        self.results_log = KafkaResultLog(self.bootstrap, self.settings)
        await self.results_log.start()
        for stage in self.stages:
            if stage == "watchdog" and self.settings.request_deadline_s <= 0:
                continue  # deadlines are off
            self.apps.append(self._build_app(stage))
        await asyncio.gather(*(app.start() for app in self.apps))
        if "planner" in self.stages:  # issue 6: questions nobody answered in time get an `expired` result
            from streams.clarify import sweep

            self._sweeper = asyncio.create_task(sweep(self.backends, self._senders["planner"], self._sweep_stop,
                                                      self.results_log))
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
        if self._sweeper is not None:
            self._sweep_stop.set()
            await asyncio.gather(self._sweeper, return_exceptions=True)
            self._sweeper = None
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

    def _build_app(self, stage: str) -> Any:
        assert self.backends is not None
        settings = self.settings
        app = make_app(settings, stage, self.bootstrap)
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
            metrics.STAGE_MESSAGES_OUT.labels(stage, spec.name(settings.topic_prefix)).inc()

        self._senders[stage] = send

        if stage == "watchdog":
            from streams.watchdog import Watchdog, attach

            async def send_result(key: str, value: bytes) -> None:
                await send(RESULTS, key, value)

            self.watchdog = Watchdog(self.backends._redis, self.backends.claims, settings, send_result,
                                     results_log=self.results_log)
            attach(app, topic, self.watchdog)
            return app
        for source, handler in stage_handlers(stage, self.backends):
            processor = StageProcessor(stage, source, handler, send, settings, self.backends.dedupe,
                                       self.backends.claims, self.results_log)
            if stage == "generator":
                from streams.generator_worker import BatchingGenerator, batching_agent, build_generator

                batcher = BatchingGenerator(processor, build_generator(self.backends.text_to_image,
                                                                       self.backends.image_store),
                                            settings.max_batch)
                app.agent(topic(source), name=f"{stage}.{source.suffix}", concurrency=1)(
                    batching_agent(batcher, settings))
                continue

            async def agent(stream: Any, processor: StageProcessor = processor) -> None:
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

            # Model- and search-bound stages wait on I/O: several messages in flight keep one slow call from
            # holding up every other request. (The generator never gets here: it batches, one agent, above.)
            app.agent(topic(source), name=f"{stage}.{source.suffix}", concurrency=settings.stage_concurrency)(agent)
        return app


def _key_text(key: Optional[bytes]) -> Optional[str]:
    return key.decode("utf-8", "replace")[:128] if key else None
