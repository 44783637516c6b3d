"""Plan and enrich against the real Redis, the way the planner and enricher stages do, without a broker."""

from __future__ import annotations

from agents.clarify import settle
from agents.enricher import Enricher
from agents.learning import learn
from agents.planner import HeuristicPlanner
from agents.ports import GenerationDefaults
from agents.searcher import Searcher
from schemas.records import EnrichedPromptRecord, ImageRequest, ImageRef, ResultRecord

DEFAULTS = GenerationDefaults(width=64, height=64, steps=4, guidance=1.0, max_side=512)


async def enrich(store, user: str, prompt: str, request_id: str) -> EnrichedPromptRecord:
    request = ImageRequest(request_id=request_id, user_id=user, prompt=prompt)
    gaps = await HeuristicPlanner(store)(request)
    gaps, _ = settle(gaps, allow_question=False)
    found = await Searcher([])(gaps)
    return Enricher(DEFAULTS).enrich(found)


async def accept(store, record: EnrichedPromptRecord) -> ResultRecord:
    """What the publisher does with a completed request: build the result and teach memory from it."""
    image = ImageRef(uri=f"file:///tmp/{record.request_id}.png", sha256="0" * 64, width=64, height=64, seed=1)
    result = ResultRecord(request_id=record.request_id, user_id=record.user_id, status="completed",
                          prompt=record.prompt, gaps=record.gaps, checklist=record.checklist, request=record.request,
                          best_image=image, images=[image], base_prompt=record.base_prompt)
    await store.add(record.user_id, learn(result, history_ttl_s=3600))
    return result
