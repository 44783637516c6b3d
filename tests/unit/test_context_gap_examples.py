"""Every case of tests/data/context-gap-examples.json through plan → search → enrich on the offline path.

All cases' memories live in one store, as they would in one Redis, so a case that must not see another user's
memory (ex-8 vs ex-1's "Pixel") is tested against that memory actually being there.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest

from agents.clarify import settle
from agents.enricher import Enricher
from agents.memory import items_from_user_text
from agents.planner import HeuristicPlanner
from agents.ports import GenerationDefaults
from agents.searcher import Searcher
from infra.corpus import CorpusSearch
from schemas.records import ImageRequest
from tests.unit.fakes import FakeMemoryStore

TODAY = date(2026, 11, 26)
CASES = json.loads((Path(__file__).parents[1] / "data" / "context-gap-examples.json").read_text())["cases"]


async def shared_memory(cases) -> FakeMemoryStore:
    store = FakeMemoryStore()
    for case in cases:
        for line in case["memory"]:
            await store.add(case["user"], items_from_user_text(line, now="2026-11-01T00:00:00.000+00:00"))
    return store


@pytest.mark.parametrize("case", CASES, ids=[c["user"] for c in CASES])
async def test_example(case, example_corpus):
    store = await shared_memory(CASES)
    planner = HeuristicPlanner(store, today=lambda: TODAY)
    searcher = Searcher([CorpusSearch(example_corpus)], today=lambda: TODAY)
    enricher = Enricher(GenerationDefaults(width=64, height=64, steps=4, guidance=7.5, max_side=512))

    request = ImageRequest(request_id=f"ex-{case['user']}", user_id=case["user"], prompt=case["prompt"])
    planned = await planner(request)
    planned, _ = settle(planned, allow_question=False)  # as the planner stage does: nothing invented for an unknown memory gap
    enriched = await enricher(await searcher(planned))

    prompt = enriched.prompt.lower()
    for word in case["expect"]:
        assert word.lower() in prompt, f"{case['user']}: {word!r} missing from {enriched.prompt!r}"
    for word in case["forbid"]:
        assert word.lower() not in prompt, f"{case['user']}: {word!r} must not be in {enriched.prompt!r}"
    for word in case.get("forbid_search", []):
        queries = [s.query.lower() for s in enriched.searches]
        assert all(word.lower() not in q for q in queries), f"{case['user']}: {word!r} searched in {queries}"
    # Every added phrase names a gap that was filled, and the source that filled it.
    filled = {g.id: g.source for g in enriched.gaps if g.status == "filled"}
    for addition in enriched.additions:
        assert filled[addition.gap_id] == addition.source
    # Ids are content hashes (two users may say the same thing), so ownership is checked, not id overlap.
    own = store.data.get(case["user"], {})
    assert all(own.get(item.id) == item for item in enriched.memory_used)
    assert ("items", case["user"]) in store.calls
    assert {user for call, user in store.calls if call == "items"} == {case["user"]}
