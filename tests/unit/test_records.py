"""Records are values (frozen, built by copying), a result carries its request's whole trace, and degraded reasons
are typed: each producer's kind, the legacy sentences of older workers, and the exported JSON Schema."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from agents.llm_stage import ModelCall, partial
from agents.planner import HeuristicPlanner
from agents.ports import LLMError, SearchError
from agents.prompt_templates import load_template
from agents.publisher import build_result, failed_result, result_of, timed_out_result
from agents.searcher import Searcher
from agents.vlm_critic import VLMCritic
from agents.critic import QualityCritic
from schemas.export import topic_schema
from schemas.records import (
    DEGRADED_KINDS,
    ChecklistItem,
    ClarificationAnswer,
    Critique,
    CritiqueRecord,
    Degraded,
    Fact,
    Gap,
    GapsRecord,
    GenerationParams,
    Hit,
    ImageRef,
    ImageRequest,
    LLMCall,
    MemoryItem,
    ParentRef,
    PromptAddition,
    ResultRecord,
    Search,
    StageTiming,
    Trace,
)
from schemas.topics import GAPS, RESULTS
from agents import learning
from tests.unit.fakes import FakeBackend, FakeImageStore, FakeMemoryStore
from tests.unit.llm_fakes import ScriptedLLM

REQUEST = ImageRequest(request_id="r-1", user_id="alice", prompt="a poster for this year's Lantern Fair")


def gaps_record(*gaps: Gap) -> GapsRecord:
    return GapsRecord(request_id="r-1", user_id="alice", request=REQUEST, gaps=list(gaps))


def search_gap(gap_id: str = "g1", query: str = "Lantern Fair 2026") -> Gap:
    return Gap(id=gap_id, kind="knowledge", description="d", strategy="search", subject="Lantern Fair", query=query)


def critique_record() -> CritiqueRecord:
    """A final round with something in every trace field, so a field the result forgot shows as a difference."""
    ref = ImageRef(uri="mem://r1-d0.png", sha256="0" * 64, width=64, height=64, seed=3)
    first = Critique(round=0, verdict="revise", score=0.4, prompt="first")
    return CritiqueRecord(
        request_id="r-1", user_id="alice", round=1, request=REQUEST,
        gaps=[search_gap().model_copy(update={"status": "filled", "value": "emerald lanterns", "source": "a.md"})],
        checklist=[ChecklistItem(id="c1", text="emerald lanterns", terms=["emerald"], gap_id="g1")],
        memory_used=[MemoryItem(id="m1", kind="preference", text="I like gouache", subject="style", value="gouache")],
        memory_written=[MemoryItem(id="m2", kind="fact", text="my dog is Max", subject="dog", value="Max")],
        base_prompt="merged prompt",
        parent=ParentRef(request_id="r-0", prompt="earlier"),
        clarification=ClarificationAnswer(gap_id="g2", subject="logo", question="Which logo?", answer="a fox"),
        searches=[Search(gap_id="g1", query="Lantern Fair 2026", backend="corpus",
                         hits=[Hit(source="a.md", text="emerald lanterns")])],
        facts=[Fact(id="g1-f1", gap_id="g1", text="emerald lanterns", source="a.md")],
        additions=[PromptAddition(text="emerald lanterns", gap_id="g1", source="a.md")],
        critiques=[first],
        timings=[StageTiming(stage="planner", round=0, seconds=0.1)],
        degraded=[Degraded(stage="searcher", kind="search_failed", detail="search backend x failed for g1: boom")],
        llm_calls=[LLMCall(stage="planner", model="m")],
        prompt="second", params=GenerationParams(width=64, height=64, steps=4, guidance=7.5, seeds=[3]),
        images=[ref], critique=Critique(round=1, verdict="accept", score=0.8, prompt="second"),
    )


# Frozen ---------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("record, field, value", [
    (REQUEST, "prompt", "something else"),
    (gaps_record(search_gap()), "gaps", []),
    (search_gap(), "status", "filled"),
    (ResultRecord(request_id="r-1", user_id="alice", status="completed"), "status", "failed"),
    (Degraded(stage="planner", kind="other", detail="x"), "kind", "timeout"),
    (StageTiming(stage="planner", round=0, seconds=0.1), "seconds", 9.0),
])
def test_a_record_cannot_be_changed_in_place(record, field, value):
    with pytest.raises(ValidationError, match="frozen"):
        setattr(record, field, value)


def test_a_copy_with_changes_leaves_the_original_as_it_was():
    record = gaps_record(search_gap())
    changed = record.model_copy(update={"degraded": [*record.degraded, Degraded(stage="planner", kind="other",
                                                                                 detail="x")]})
    assert record.degraded == [] and [d.detail for d in changed.degraded] == ["x"]


# One trace -------------------------------------------------------------------------------------------------------

def test_a_result_built_from_a_critique_carries_the_whole_trace():
    record = critique_record()
    result = build_result(record)
    for name in Trace.model_fields:
        expected = [*record.critiques, record.critique] if name == "critiques" else getattr(record, name)
        assert getattr(result, name) == expected, name
    assert (result.status, result.request, result.rounds, result.prompt) == ("completed", REQUEST, 2, "second")


def test_every_kind_of_result_is_built_by_one_function_and_the_trace_stays_flat_on_the_wire():
    planned = gaps_record(search_gap())
    asked = result_of("needs_clarification", "r-1", "alice", planned, request=REQUEST, question="Which logo?")
    assert (asked.gaps, asked.searches, asked.question) == (planned.gaps, [], "Which logo?")
    wire = json.loads(asked.model_dump_json())
    assert {"gaps", "checklist", "degraded", "timings", "llm_calls", "memory_used"} <= set(wire)
    assert "trace" not in wire
    expired = result_of("expired", "r-1", "alice", error="no answer")
    assert (expired.status, expired.gaps, expired.error) == ("expired", [], "no answer")


# Typed reasons, by producer --------------------------------------------------------------------------------------

class _FailingPages:
    async def read(self, url: str) -> str:
        raise ConnectionError("page gone")


async def _planner_memory_down() -> list[Degraded]:
    record = await HeuristicPlanner(FakeMemoryStore(fail=ConnectionError("refused")))(REQUEST)
    return record.degraded


async def _searcher(*backends, **kwargs) -> list[Degraded]:
    return (await Searcher(list(backends), **kwargs)(gaps_record(search_gap()))).degraded


async def _search_budget() -> list[Degraded]:
    record = gaps_record(search_gap("g1", "Lantern Fair 2026"), search_gap("g2", "Orbit kettle"))
    return (await Searcher([FakeBackend("corpus")], budget_per_request=1)(record)).degraded


async def _page_unreadable() -> list[Degraded]:
    thin = Hit(source="https://example.org/fair", title="Lantern Fair 2026", text="Official site.", score=1.0,
               backend="web")
    return await _searcher(FakeBackend("web", [thin]), page_reader=_FailingPages(), read_pages=1)


async def _llm_fallback() -> list[Degraded]:
    call = ModelCall(ScriptedLLM({}), load_template("enricher"), stage="enricher", round=0)
    reason, _ = call.failed(LLMError("down", retriable=True, kind="unreachable"), "fallback")
    return [reason]


async def _critic_blind() -> list[Degraded]:
    store = FakeImageStore()
    ref = ImageRef(uri="mem://missing.png", sha256="0" * 64, width=64, height=64, seed=0)
    record = critique_record().model_copy(update={"images": [ref], "degraded": []})
    critic = VLMCritic(ScriptedLLM({}), store, QualityCritic(store))
    return (await critic(record)).degraded


async def _not_remembered(monkeypatch) -> list[Degraded]:
    def unreachable(*args, **kwargs):
        raise ConnectionError("redis down")

    monkeypatch.setattr(learning, "learn", unreachable)
    return (await learning.remember(FakeMemoryStore(), build_result(critique_record()), 60)).degraded[1:]


async def _search_fails() -> list[Degraded]:
    return await _searcher(FakeBackend("b", error=SearchError("boom", retriable=False, kind="timeout")))


# name: (producer, (stage, kind, how its sentence starts))
PRODUCERS = {
    "planner, memory down": (_planner_memory_down, ("planner", "memory_unavailable", "memory unavailable: ")),
    "searcher, no backend": (_searcher, ("searcher", "no_search_backend", "search: no search backend")),
    "searcher, backend fails": (_search_fails, ("searcher", "search_failed", "search backend b failed for g1")),
    "searcher, budget": (_search_budget, ("searcher", "search_budget", "search: search budget exhausted")),
    "searcher, page unreadable": (_page_unreadable, ("searcher", "page_read_failed", "search: reading a result page")),
    "model stage, fallback": (_llm_fallback, ("enricher", "llm_fallback", "enricher: model unavailable (unreachable)")),
    "critic, no readable draft": (_critic_blind, ("critic", "no_readable_draft", "critic: no readable")),
    "publisher, not remembered": (_not_remembered, ("publisher", "not_remembered", "memory: result not remembered")),
}


@pytest.mark.parametrize("name", PRODUCERS)
async def test_each_producer_gives_its_reason_a_kind(name, monkeypatch):
    produce, (stage, kind, starts) = PRODUCERS[name]
    reasons = await (produce(monkeypatch) if produce is _not_remembered else produce())
    assert reasons and all((d.stage, d.kind) == (stage, kind) for d in reasons), reasons
    assert reasons[0].detail.startswith(starts) and str(reasons[0]) == reasons[0].detail


def test_the_sync_producers_give_their_reasons_a_kind():
    assert [(d.stage, d.kind, d.detail) for d in failed_result({"request_id": "r-1", "user_id": "alice"},
                                                                "generator", "boom").degraded] == [
        ("generator", "stage_failed", "generator failed")]
    assert [(d.stage, d.kind, d.detail) for d in timed_out_result("r-1", "alice", "critic", 30).degraded] == [
        ("critic", "stage_failed", "critic failed"), ("critic", "timeout", "critic timed out")]
    kept = partial("planner", "dropped: g9")
    assert (kept.stage, kept.kind, kept.detail) == ("planner", "llm_partial",
                                                    "planner: kept the valid part of the model's answer; dropped: g9")


# Wire compatibility ------------------------------------------------------------------------------------------------

def test_a_message_from_an_older_worker_parses_and_a_newer_kind_is_kept_as_other():
    old = {"request_id": "r-1", "user_id": "alice", "request": REQUEST.model_dump(mode="json"),
           "degraded": ["memory unavailable: ConnectionError: refused"]}
    [reason] = GAPS.record.model_validate_json(json.dumps(old)).degraded
    assert (reason.kind, reason.detail) == ("memory_unavailable", "memory unavailable: ConnectionError: refused")
    newer = {"request_id": "r-1", "user_id": "alice", "status": "completed",
             "degraded": [{"stage": "critic", "kind": "a_kind_from_the_future", "detail": "d"}]}
    [reason] = RESULTS.record.model_validate(newer).degraded
    assert (reason.stage, reason.kind, reason.detail) == ("critic", "other", "d")


def test_the_exported_schema_of_results_describes_degraded_objects():
    schema = topic_schema(RESULTS)
    assert schema["properties"]["degraded"]["items"] == {"$ref": "#/$defs/Degraded"}
    degraded = schema["$defs"]["Degraded"]
    assert degraded["type"] == "object" and sorted(degraded["required"]) == ["detail", "kind", "stage"]
    assert tuple(degraded["properties"]["kind"]["enum"]) == DEGRADED_KINDS


# No mutation left in production code ---------------------------------------------------------------------------

def _list_fields() -> set[str]:
    import schemas.records as records

    names: set[str] = set()
    for model in vars(records).values():
        if isinstance(model, type) and issubclass(model, records.BaseModel) and model is not records.BaseModel:
            names |= {n for n, f in model.model_fields.items() if getattr(f.annotation, "__origin__", None) is list}
    return names


def test_no_production_code_changes_a_records_list_in_place():
    """Frozen records still hold lists; what would change one in place (`x.gaps.append(...)`, `x.degraded += ...`)
    is a bug wherever `x` is a record, so no such line is allowed outside `self` (a class's own state)."""
    import ast
    from pathlib import Path

    fields = _list_fields()
    assert {"gaps", "degraded", "timings", "checklist", "memory_written"} <= fields
    root = Path(__file__).resolve().parents[2]
    found = []
    for package in ("agents", "streams", "infra", "ui", "cli", "benchmarks", "schemas"):
        for path in sorted((root / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                target = None
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in (
                        "append", "extend", "insert", "pop", "remove", "clear", "sort", "reverse"):
                    target = node.func.value
                elif isinstance(node, ast.AugAssign):
                    target = node.target
                elif isinstance(node, (ast.Assign, ast.Delete)):
                    targets = node.targets
                    target = next((t.value for t in targets if isinstance(t, ast.Subscript)), None)
                if (isinstance(target, ast.Attribute) and target.attr in fields
                        and not (isinstance(target.value, ast.Name) and target.value.id == "self")):
                    found.append(f"{path.relative_to(root)}:{node.lineno}")
    assert found == []
