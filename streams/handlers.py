"""What each stage does with a record of each topic it reads: the stage's agent (from `agents/`) built over its
backends, plus the metrics the wiring keeps. The rows of `streams.topology.TOPOLOGY` name these builders.

A handler returns the records it produces (or None: not this stage's to handle); the topology routes each record
to the one topic of the stage's `writes` whose record type it is.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Awaitable, Callable, Optional, Sequence

from pydantic import BaseModel

from agents.critic import QualityCritic
from agents.enricher import Enricher
from agents.learning import remember
from agents.llm_enricher import LLMEnricher
from agents.llm_planner import LLMPlanner
from agents.planner import HeuristicPlanner
from agents.planner_stage import PlannerStage
from agents.publisher import build_result, is_final
from agents.searcher import Searcher
from agents.vlm_critic import VLMCritic
from infra import metrics
from infra.diffusion import generation_defaults
from infra.result_claims import ResultLog, phase_of, publish_once
from schemas.records import CritiqueRecord, ResultRecord
from schemas.topics import (
    ANSWERS,
    CRITIQUES,
    ENRICHED_PROMPTS,
    GAPS,
    IMAGES,
    REQUESTS,
    RESULTS,
    SEARCH_RESULTS,
    TopicSpec,
)
from streams.backends import Backends, searcher_options
from streams.generator_worker import build_generator
from streams.stages import Sender, encode

log = logging.getLogger("gapstream.handlers")

RecordHandler = Callable[[Any], Awaitable[Optional[Sequence[BaseModel]]]]
Handlers = dict[TopicSpec, RecordHandler]


def count_final_gaps(result: ResultRecord) -> None:
    for gap in result.gaps:
        metrics.GAPS.labels(gap.kind, gap.strategy, gap.status).inc()


def planner_stage(backends: Backends) -> PlannerStage:
    settings = backends.settings
    planner: Any = HeuristicPlanner(backends.memory, embedder=backends.embedder)
    if backends.llm is not None:
        planner = LLMPlanner(backends.llm, backends.memory, planner, on_error=settings.llm_on_error)
    return PlannerStage(planner, backends.memory, backends.pending,
                        clarification_timeout_s=settings.clarification_timeout_s)


def planner(backends: Backends) -> Handlers:
    """Requests and follow-ups, and answers to the planner's clarifying questions (issue 6)."""
    stage = planner_stage(backends)

    def counted(handle: RecordHandler) -> RecordHandler:
        async def handler(record: Any) -> Optional[Sequence[BaseModel]]:
            outputs = await handle(record)
            for out in outputs or ():
                if isinstance(out, ResultRecord):  # needs_clarification, or expired for a late answer
                    metrics.RESULTS.labels(out.status).inc()
            return outputs

        return handler

    return {REQUESTS: counted(stage.on_request), ANSWERS: counted(stage.on_answer)}


async def expire_questions(backends: Backends, send: Sender, stop: asyncio.Event,
                           results_log: Optional[ResultLog] = None) -> None:
    """The planner's timer: every `clarification_sweep_s`, an `expired` result for each question past its deadline.
    Any number of planner workers may sweep: only the one that expired a question publishes, through the same
    result claim as every final result, so completed, failed and expired exclude each other."""
    stage = planner_stage(backends)
    while not stop.is_set():
        try:
            for request_id in await stage.due():
                result = await stage.expire(request_id)
                if result is None:
                    continue

                async def publish(result: ResultRecord = result) -> None:
                    await send(RESULTS, result.request_id, encode(result))

                if await publish_once(backends.claims, request_id, publish, phase_of("expired"), results=results_log):
                    metrics.RESULTS.labels("expired").inc()
        except Exception as exc:  # Redis or broker trouble: try again on the next tick
            log.warning("clarification sweep failed: %s: %s", type(exc).__name__, exc)
        try:
            await asyncio.wait_for(stop.wait(), backends.settings.clarification_sweep_s)
        except asyncio.TimeoutError:
            pass


def searcher(backends: Backends) -> Handlers:
    search = Searcher(backends.search, **searcher_options(backends.settings))

    async def handle(record: Any) -> Sequence[BaseModel]:
        found = await search(record)
        metrics.observe_searches(found.searches)  # a gaps record carries none yet: all are this message's
        return [found]

    return {GAPS: handle}


def enricher(backends: Backends) -> Handlers:
    """First rounds from search results; later rounds from a critique that asked for a revision."""
    settings = backends.settings
    enrich: Any = Enricher(generation_defaults(settings))
    if backends.llm is not None:
        enrich = LLMEnricher(backends.llm, enrich, on_error=settings.llm_on_error)

    async def first_round(record: Any) -> Sequence[BaseModel]:
        return [await enrich(record)]

    async def revise(record: CritiqueRecord) -> Optional[Sequence[BaseModel]]:
        if is_final(record):
            return None  # the publisher's
        return [await enrich(record)]

    return {SEARCH_RESULTS: first_round, CRITIQUES: revise}


def generator(backends: Backends) -> Handlers:
    """One message at a time; a worker batches through `streams.generator_worker` instead (the topology's
    `batched` row), with the same generator."""
    assert backends.text_to_image is not None
    generate = build_generator(backends.text_to_image, backends.image_store)

    async def handle(record: Any) -> Sequence[BaseModel]:
        return [await generate(record)]

    return {ENRICHED_PROMPTS: handle}


def critic(backends: Backends) -> Handlers:
    settings = backends.settings
    judge: Any = QualityCritic(backends.image_store, accept_score=settings.accept_score)
    if backends.vlm is not None:
        judge = VLMCritic(backends.vlm, backends.image_store, judge, accept_score=settings.accept_score,
                          on_error=settings.llm_on_error)

    async def handle(record: Any) -> Sequence[BaseModel]:
        return [await judge(record)]

    return {IMAGES: handle}


def publisher(backends: Backends) -> Handlers:
    """The final result of a request; the one-result-per-request claim is taken around the send (result claims)."""
    history_ttl_s = backends.settings.memory_history_ttl_s

    async def handle(record: CritiqueRecord) -> Optional[Sequence[BaseModel]]:
        if not is_final(record):
            return None  # the enricher's
        result = await remember(backends.memory, build_result(record), history_ttl_s)  # issue 6: results teach
        metrics.RESULTS.labels(result.status).inc()
        metrics.ROUNDS.observe(result.rounds)
        metrics.REQUEST_SECONDS.observe(sum(t.seconds for t in result.timings))
        metrics.observe_result(result)
        count_final_gaps(result)
        return [result]

    return {CRITIQUES: handle}
