"""The stage handlers of the topology over fake backends: who answers which record, what they return, what memory
learns and what the metrics count."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra import metrics
from infra.settings import Settings
from schemas.records import GapsRecord, ImageRequest, ResultRecord
from schemas.questions import ClarificationRecord
from schemas.topics import ANSWERS, CRITIQUES, REQUESTS, SEARCH_RESULTS
from streams import handlers
from streams.backends import Backends
from tests.unit.fakes import FakeMemoryStore, FakePendingQuestions, FakeImageStore
from tests.unit.test_records import critique_record


def backends(tmp_path: Path) -> Backends:
    settings = Settings(home=tmp_path, kafka_bootstrap=None, redis_url=None, semantic_matching=False)
    return Backends(settings=settings, redis=None, memory=FakeMemoryStore(), pending=FakePendingQuestions(),
                    dedupe=None, claims=None, image_store=FakeImageStore())


def counted(status: str) -> float:
    return metrics.RESULTS.labels(status)._value.get()


async def test_the_publisher_answers_final_critiques_and_teaches_memory(tmp_path):
    built = backends(tmp_path)
    before = counted("completed")
    [result] = await handlers.publisher(built)[CRITIQUES](critique_record())
    assert type(result) is ResultRecord and result.status == "completed" and result.rounds == 2
    assert counted("completed") == before + 1
    remembered = await built.memory.items("alice")
    assert any(item.kind == "history" and item.request_id == "r-1" for item in remembered)
    assert await built.memory.turn("alice", "r-1") is not None  # a follow-up can start from it


async def test_a_critique_asking_for_a_revision_is_the_enrichers_not_the_publishers(tmp_path):
    built = backends(tmp_path)
    final = critique_record()
    revise = final.model_copy(update={"request": final.request.model_copy(update={"max_rounds": 3}),
                                      "critique": final.critique.model_copy(update={"verdict": "revise"})})
    assert await handlers.publisher(built)[CRITIQUES](revise) is None
    assert await handlers.enricher(built)[CRITIQUES](critique_record()) is None  # final: the publisher's
    [again] = await handlers.enricher(built)[CRITIQUES](revise)
    assert again.round == revise.round + 1


async def test_memory_down_still_publishes_the_result_and_says_so(tmp_path):
    built = backends(tmp_path)
    built.memory = FakeMemoryStore(fail=ConnectionError("redis down"))
    [result] = await handlers.publisher(built)[CRITIQUES](critique_record())
    assert result.status == "completed"
    assert [(d.stage, d.kind) for d in result.degraded][-1] == ("publisher", "not_remembered")


async def test_the_planner_reads_requests_and_answers_and_counts_the_results_it_makes(tmp_path):
    built = backends(tmp_path)
    planner = handlers.planner(built)
    assert set(planner) == {REQUESTS, ANSWERS}
    before = counted("needs_clarification")
    outputs = await planner[REQUESTS](ImageRequest(request_id="r9", user_id="ann", prompt="draw my logo on a mug",
                                                   allow_clarification=True))
    assert [type(out) for out in outputs] == [ClarificationRecord, ResultRecord]
    assert counted("needs_clarification") == before + 1
    [plain] = await planner[REQUESTS](ImageRequest(request_id="r10", user_id="ann", prompt="a red bicycle"))
    assert type(plain) is GapsRecord


async def test_the_enricher_writes_the_first_round_from_search_results(tmp_path):
    from schemas.records import SearchResultsRecord

    request = ImageRequest(request_id="r11", user_id="ann", prompt="a red bicycle")
    [first] = await handlers.enricher(backends(tmp_path))[SEARCH_RESULTS](
        SearchResultsRecord(request_id="r11", user_id="ann", request=request))
    assert first.round == 0 and "bicycle" in first.prompt


@pytest.mark.parametrize("builder", [handlers.planner, handlers.searcher, handlers.enricher, handlers.critic,
                                     handlers.publisher])
def test_every_builder_answers_with_a_handler_per_topic(tmp_path, builder):
    built = builder(backends(tmp_path))
    assert built and all(callable(handle) for handle in built.values())
