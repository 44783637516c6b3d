"""Trace entries (schemas/trace.py): typed degraded reasons, old workers' sentences read back, frozen defaults."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from pydantic import ValidationError

from schemas.trace import DEGRADED_KINDS, Degraded, LLMCall, StageTiming


def test_a_degraded_reason_reads_as_its_sentence():
    reason = Degraded(stage="searcher", kind="search_failed", detail="search backend web failed for g1")
    assert str(reason) == "search backend web failed for g1" and f"{reason}" == reason.detail


def test_a_kind_this_worker_does_not_know_is_kept_as_other_with_its_stage_and_sentence():
    reason = Degraded.model_validate({"stage": "painter", "kind": "gpu_on_fire", "detail": "painter: gpu hot"})
    assert (reason.stage, reason.kind, reason.detail) == ("painter", "other", "painter: gpu hot")


def test_a_missing_kind_is_an_error_not_other():
    with pytest.raises(ValidationError):
        Degraded.model_validate({"stage": "planner", "detail": "planner: something"})


@pytest.mark.parametrize("sentence, stage, kind", [
    ("search budget exhausted: 2 gap(s) not searched", "searcher", "search_budget"),
    ("no search backend configured for g1", "unknown", "no_search_backend"),
    ("search backend web failed for g1: boom", "searcher", "search_failed"),
    ("searcher: reading a result page failed", "searcher", "page_read_failed"),
    ("planner: model unavailable (unreachable): heuristic fallback", "planner", "llm_fallback"),
    ("enricher: kept the valid part of the model's answer; dropped used[1]", "enricher", "llm_partial"),
    ("critic: no readable draft", "critic", "no_readable_draft"),
    ("memory unavailable: ConnectionError", "planner", "memory_unavailable"),
    ("memory: result not remembered (ConnectionError)", "publisher", "not_remembered"),
    ("critic timed out", "critic", "timeout"),
    ("generator failed", "generator", "stage_failed"),
    ("Something nobody classified", "unknown", "other"),
    # What the producers of this version write, read back as an older worker's sentence would be.
    ("search: search budget exhausted (8 queries per request); not searched: g3", "searcher", "search_budget"),
    ("search: no search backend configured", "searcher", "no_search_backend"),
    ("search backend serpapi failed for g1: timeout", "searcher", "search_failed"),
    ("search: reading a result page failed for g1: ConnectError", "searcher", "page_read_failed"),
    ("planner: model unavailable (timeout): heuristic fallback", "planner", "llm_fallback"),
    ("enricher: model wrote an empty prompt: heuristic fallback", "enricher", "llm_fallback"),
    ("planner: kept the valid part of the model's answer; dropped: g9", "planner", "llm_partial"),
    ("memory unavailable: ConnectionError: refused", "planner", "memory_unavailable"),
    ("critic: no readable draft to show the model", "critic", "no_readable_draft"),
    ("memory: result not remembered: ConnectionError", "publisher", "not_remembered"),
    ("generator failed", "generator", "stage_failed"),
    ("critic timed out", "critic", "timeout"),
    ("something new", "unknown", "other"),
])
def test_an_older_workers_sentence_is_read_with_its_stage_and_kind(sentence, stage, kind):
    reason = Degraded.model_validate(sentence)
    assert (reason.stage, reason.kind) == (stage, kind)
    assert reason.detail == sentence  # the sentence itself is kept word for word


def test_legacy_sentences_inside_a_record_are_read_too():
    from schemas.records import ResultRecord

    result = ResultRecord(request_id="r-1", user_id="alice", status="failed", degraded=["planner failed"])
    assert result.degraded == [Degraded(stage="planner", kind="stage_failed", detail="planner failed")]


def test_a_typed_reason_round_trips_through_json_unchanged():
    reason = Degraded(stage="publisher", kind="not_remembered", detail="search failed")  # the kind, not the words
    assert Degraded.model_validate_json(reason.model_dump_json()) == reason


def test_every_kind_is_listed_and_other_is_among_them():
    assert "other" in DEGRADED_KINDS and len(set(DEGRADED_KINDS)) == len(DEGRADED_KINDS)
    for kind in DEGRADED_KINDS:
        assert Degraded(stage="s", kind=kind, detail="d").kind == kind


def test_a_stage_timing_is_stamped_now_in_utc():
    timing = StageTiming(stage="planner", round=0, seconds=0.25)
    at = datetime.fromisoformat(timing.at)
    assert at.utcoffset() == timedelta(0)
    assert abs(datetime.now(at.tzinfo) - at) < timedelta(minutes=1)


def test_an_llm_call_defaults_to_one_successful_attempt_with_nothing_spent():
    call = LLMCall(stage="critic", model="m")
    assert (call.template, call.round, call.prompt_tokens, call.completion_tokens, call.seconds, call.attempts,
            call.outcome) == ("", 0, 0, 0, 0.0, 1, "ok")


@pytest.mark.parametrize("entry, field, value", [
    (Degraded(stage="planner", kind="timeout", detail="d"), "kind", "other"),
    (StageTiming(stage="planner", round=0, seconds=1.0), "seconds", 2.0),
    (LLMCall(stage="planner", model="m"), "outcome", "fallback: x"),
])
def test_trace_entries_are_frozen(entry, field, value):
    with pytest.raises(ValidationError):
        setattr(entry, field, value)


def test_unknown_fields_from_a_newer_worker_are_ignored():
    call = LLMCall.model_validate({"stage": "planner", "model": "m", "cost_usd": 0.1})
    assert not hasattr(call, "cost_usd")


@pytest.mark.parametrize("sentence, kind", [("searcher timed out", "timeout"), ("searcher failed", "stage_failed")])
def test_an_older_publishers_stage_sentence_for_the_searcher_keeps_its_kind(sentence, kind):
    reason = Degraded.model_validate(sentence)
    assert (reason.stage, reason.kind) == ("searcher", kind)
