"""The topology of gapstream, in one table: each stage, the topics it reads, what handles each, the topics it
writes, and the backends it needs. `streams.pipeline.Worker` builds one Faust app (and consumer group) per stage
from these rows; nothing else decides who reads or writes what.

    stage      reads                      handler (streams/handlers.py)   writes                           needs
    planner    requests, answers          planner  (+ expire_questions)    gaps, clarifications, results    llm, embedder
    searcher   gaps                       searcher                         search-results                   search, embedder
    enricher   search-results, critiques  enricher                         enriched-prompts                 llm
    generator  enriched-prompts           generator (batched)              images                           text_to_image
    critic     images                     critic                           critiques                        vlm
    publisher  critiques                  publisher                        results                          -
    watchdog   every pipeline topic       (observer: streams/watchdog.py)  results                          -

Every stage also has memory, dedupe marks, result claims and the image store (cheap, always built), and any stage
writes `dead-letters` (see `streams.stages`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

from pydantic import BaseModel

from schemas.topics import (
    ANSWERS,
    CLARIFICATIONS,
    CRITIQUES,
    ENRICHED_PROMPTS,
    GAPS,
    IMAGES,
    REQUESTS,
    RESULTS,
    SEARCH_RESULTS,
    TopicSpec,
)
from streams import handlers
from streams.backends import Backends
from streams.handlers import Handlers, RecordHandler
from streams.stages import Handler, Outputs
from streams.watchdog import WATCHED


@dataclass(frozen=True)
class Stage:
    name: str
    reads: tuple[TopicSpec, ...]
    writes: tuple[TopicSpec, ...]
    needs: frozenset[str] = frozenset()  # optional backends (streams.backends.OPTIONAL_NEEDS) it uses
    handlers: Optional[Callable[[Backends], Handlers]] = None  # None: an observer, wired by hand (the watchdog)
    timer: Optional[Callable[..., Any]] = None  # a periodic task beside the stage's agents
    batched: bool = False  # one agent that takes messages in micro-batches (the GPU group)


TOPOLOGY: tuple[Stage, ...] = (
    Stage("planner", (REQUESTS, ANSWERS), (GAPS, CLARIFICATIONS, RESULTS), frozenset({"llm", "embedder"}),
          handlers.planner, timer=handlers.expire_questions),
    Stage("searcher", (GAPS,), (SEARCH_RESULTS,), frozenset({"search", "embedder"}), handlers.searcher),
    Stage("enricher", (SEARCH_RESULTS, CRITIQUES), (ENRICHED_PROMPTS,), frozenset({"llm"}), handlers.enricher),
    Stage("generator", (ENRICHED_PROMPTS,), (IMAGES,), frozenset({"text_to_image"}), handlers.generator,
          batched=True),
    Stage("critic", (IMAGES,), (CRITIQUES,), frozenset({"vlm"}), handlers.critic),
    Stage("publisher", (CRITIQUES,), (RESULTS,), frozenset(), handlers.publisher),
)
# Stages that produce no pipeline output of their own; `all` includes them (issue 7: request deadlines).
SUPPORT: tuple[Stage, ...] = (
    Stage("watchdog", WATCHED, (RESULTS,)),
)

STAGES: tuple[str, ...] = tuple(stage.name for stage in TOPOLOGY)
SUPPORT_STAGES: tuple[str, ...] = tuple(stage.name for stage in SUPPORT)
BY_NAME: dict[str, Stage] = {stage.name: stage for stage in TOPOLOGY + SUPPORT}


class UnknownStageError(ValueError):
    pass


def parse_stages(spec: Optional[str]) -> tuple[str, ...]:
    """`planner,searcher` → ordered, de-duplicated stage names; empty or 'all' → every stage."""
    if spec is None or spec.strip() in ("", "all"):
        return STAGES + SUPPORT_STAGES
    names = [name.strip() for name in spec.split(",") if name.strip()]
    known = STAGES + SUPPORT_STAGES
    unknown = [name for name in names if name not in known]
    if unknown:
        raise UnknownStageError(f"unknown stage(s) {', '.join(unknown)}; choose from {', '.join(known)}")
    return tuple(stage for stage in known if stage in names)


def needs_of(stages: Sequence[str]) -> frozenset[str]:
    """The optional backends a worker running `stages` must build."""
    return frozenset().union(*(BY_NAME[name].needs for name in stages))


def routed(stage: Stage, handle: RecordHandler) -> Handler:
    """The handler as `StageProcessor` calls it: each record it returns goes to the topic of `stage.writes` whose
    record type it is (exactly: a SearchResultsRecord is not sent to `gaps`)."""
    by_type = {spec.record: spec for spec in stage.writes}

    async def handler(record: Any) -> Optional[Outputs]:
        outputs: Optional[Sequence[BaseModel]] = await handle(record)
        if outputs is None:
            return None
        routed_outputs = []
        for out in outputs:
            spec = by_type.get(type(out))
            if spec is None:  # a wiring bug, not the message's fault: it still ends as a dead letter
                raise TypeError(f"stage {stage.name} produced a {type(out).__name__}, which none of its topics "
                                f"({', '.join(s.suffix for s in stage.writes)}) carries")
            routed_outputs.append((spec, out))
        return routed_outputs

    return handler


def stage_handlers(stage: Stage, backends: Backends) -> list[tuple[TopicSpec, Handler]]:
    """(input topic, routed handler) for each topic the stage reads, in the table's order."""
    assert stage.handlers is not None, f"{stage.name} is an observer"
    built = stage.handlers(backends)
    if set(built) != set(stage.reads):
        raise ValueError(f"stage {stage.name}: handlers for {sorted(s.suffix for s in built)} but the topology "
                         f"says it reads {sorted(s.suffix for s in stage.reads)}")
    return [(source, routed(stage, built[source])) for source in stage.reads]
