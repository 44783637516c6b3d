"""The publisher (agents/publisher.py): the one result a user reads, the best draft of all rounds, failed results."""

from __future__ import annotations

import pytest

from agents.publisher import build_result, failed_result, is_final, result_of, timed_out_result, trace_of
from schemas.records import (
    Critique,
    CritiqueRecord,
    Degraded,
    DraftScore,
    Gap,
    GapsRecord,
    GenerationParams,
    ImageRef,
    ImageRequest,
    Search,
)

REQUEST = ImageRequest(request_id="r-1", user_id="alice", prompt="a fox at the Lantern Fair")
PARAMS = GenerationParams(width=64, height=64, steps=4, guidance=7.5, seeds=[1, 2, 3])


def ref(name: str) -> ImageRef:
    return ImageRef(uri=f"mem://{name}.png", sha256="0" * 64, width=64, height=64, seed=1)


def critique_record(verdict: str = "accept", scores=(0.3, 0.9, 0.6), **fields) -> CritiqueRecord:
    images = [ref(f"d{i}") for i in range(len(scores))]
    critique = Critique(round=1, verdict=verdict, score=0.7, prompt="round 2 prompt",
                        drafts=[DraftScore(uri=i.uri, score=s) for i, s in zip(images, scores)])
    return CritiqueRecord(request_id="r-1", user_id="alice", round=1, request=REQUEST, prompt="round 2 prompt",
                          params=PARAMS, images=images, critique=critique,
                          critiques=[Critique(round=0, verdict="revise", score=0.4)], **fields)


@pytest.mark.parametrize("verdict, final", [("accept", True), ("exhausted", True), ("revise", False)])
def test_only_a_revise_verdict_goes_round_again(verdict, final):
    assert is_final(critique_record(verdict)) is final


def test_a_round_still_being_revised_has_no_result_yet():
    with pytest.raises(ValueError, match="still being revised"):
        build_result(critique_record("revise"))


def test_the_result_lists_this_rounds_drafts_best_first_and_counts_every_round():
    result = build_result(critique_record())
    assert result.status == "completed" and (result.request_id, result.user_id) == ("r-1", "alice")
    assert [i.uri for i in result.images] == ["mem://d1.png", "mem://d2.png", "mem://d0.png"]
    assert result.best_image.uri == "mem://d1.png" and result.score == 0.7
    assert result.rounds == 2 and result.prompt == "round 2 prompt" and result.request == REQUEST
    assert [c.round for c in result.critiques] == [0, 1]  # the final critique joins the earlier ones


def test_a_better_draft_from_an_earlier_round_wins_over_this_rounds_best():
    earlier = ref("r0-best")
    result = build_result(critique_record(best=earlier, best_score=0.95, best_prompt="round 1 prompt"))
    assert result.best_image == earlier and result.score == 0.95 and result.prompt == "round 1 prompt"


def test_a_draft_the_critique_did_not_score_ranks_last():
    result = build_result(critique_record(scores=(0.2,)).model_copy(update={"images": [ref("d0"), ref("unscored")]}))
    assert [i.uri for i in result.images] == ["mem://d0.png", "mem://unscored.png"]


def test_the_result_carries_the_whole_trace_of_the_last_record():
    degraded = [Degraded(stage="searcher", kind="search_failed", detail="search failed for g1")]
    searches = [Search(gap_id="g1", query="Lantern Fair 2026", backend="corpus")]
    result = build_result(critique_record(degraded=degraded, searches=searches))
    assert result.degraded == degraded and result.searches == searches


def test_trace_of_takes_only_the_trace_fields_a_record_has():
    gap = Gap(id="g1", kind="knowledge", strategy="search", subject="Lantern Fair", description="d")
    fields = trace_of(GapsRecord(request_id="r-1", user_id="alice", request=REQUEST, gaps=[gap]))
    assert fields["gaps"] == [gap] and "searches" not in fields and "request_id" not in fields
    assert trace_of(None) == {}


def test_result_of_lets_what_the_result_says_win_over_the_trace():
    record = critique_record(degraded=[Degraded(stage="critic", kind="timeout", detail="old")])
    result = result_of("expired", "r-1", "alice", record, degraded=[])
    assert result.status == "expired" and result.degraded == [] and result.critiques == record.critiques


def test_a_failed_message_with_good_ids_gets_a_failed_result_naming_the_stage():
    result = failed_result({"request_id": "r-1", "user_id": "alice", "request": REQUEST.model_dump()}, "enricher",
                           "boom")
    assert result.status == "failed" and result.error == "enricher: boom" and result.request == REQUEST
    assert [(d.stage, d.kind) for d in result.degraded] == [("enricher", "stage_failed")]


def test_a_planner_message_is_itself_the_request():
    result = failed_result(REQUEST.model_dump(), "planner", "boom")
    assert result.request == REQUEST


def test_an_unreadable_embedded_request_still_gets_its_failed_result():
    result = failed_result({"request_id": "r-1", "user_id": "alice", "request": {"prompt": 3}}, "critic", "boom")
    assert result is not None and result.request is None


@pytest.mark.parametrize("payload", [
    {},
    {"request_id": "r-1"},
    {"user_id": "alice"},
    {"request_id": "r 1; DROP", "user_id": "alice"},
    {"request_id": "r-1", "user_id": "alice/../bob"},
    {"request_id": 7, "user_id": "alice"},
    {"request_id": "r-1", "user_id": None},
    {"request_id": "x" * 129, "user_id": "alice"},
])
def test_a_message_that_cannot_be_routed_to_anyone_gets_no_result(payload):
    assert failed_result(payload, "critic", "boom") is None


def test_a_timed_out_request_says_which_stage_and_deadline():
    result = timed_out_result("r-1", "alice", "generator", 90.0)
    assert result.status == "failed" and "generator" in result.error and "90 s" in result.error
    assert [(d.stage, d.kind) for d in result.degraded] == [("generator", "stage_failed"), ("generator", "timeout")]
    assert timed_out_result("bad id!", "alice", "generator", 90.0) is None
