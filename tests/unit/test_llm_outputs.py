"""Model answer shapes (agents/llm_outputs.py): lenient validation, and schemas narrowed to what the model was shown."""

from __future__ import annotations

import jsonschema
import pytest
from pydantic import ValidationError

from agents.llm_outputs import (
    MAX_PLANNED_GAPS,
    CriticOutput,
    EnricherOutput,
    PlannedGap,
    PlannerOutput,
    StatedFact,
    constrained,
    enricher_output_for,
    one_of,
    planner_output_for,
)

ALLOWED = {"memory": frozenset({"memory", "ask"}), "knowledge": frozenset({"search"})}


def valid(schema: dict, data: dict) -> bool:
    try:
        jsonschema.validate(data, schema)
    except jsonschema.ValidationError:
        return False
    return True


def test_unknown_fields_in_an_answer_are_ignored():
    gap = PlannedGap.model_validate({"kind": "memory", "strategy": "memory", "confidence": 0.9})
    assert not hasattr(gap, "confidence") and gap.id == "" and gap.time_sensitive is False


@pytest.mark.parametrize("data", [
    {"kind": "rumour", "strategy": "memory"},
    {"kind": "memory", "strategy": "guess"},
    {"strategy": "memory"},
])
def test_a_gap_with_an_unknown_or_missing_kind_or_strategy_is_invalid(data):
    with pytest.raises(ValidationError):
        PlannedGap.model_validate(data)


def test_a_critic_answer_needs_a_score_and_defaults_to_revise():
    with pytest.raises(ValidationError):
        CriticOutput.model_validate({"verdict": "accept"})
    answer = CriticOutput.model_validate({"score": 0.4})
    assert answer.verdict == "revise" and answer.best_draft == 1 and answer.checks == []
    with pytest.raises(ValidationError):
        CriticOutput.model_validate({"score": 0.4, "verdict": "maybe"})


def test_a_stated_fact_is_a_fact_or_a_preference():
    assert StatedFact(text="my dog is Max").kind == "fact"
    with pytest.raises(ValidationError):
        StatedFact(text="x", kind="rumour")


def test_one_of_is_a_choice_of_the_values_or_null_and_only_null_when_there_are_none():
    assert one_of([]) == {"type": "null"}
    assert valid(one_of(["m-1", "m-2"]), "m-1") and valid(one_of(["m-1"]), None)
    assert not valid(one_of(["m-1"]), "m-3")
    assert not valid(one_of(["g1"], nullable=False), None) and valid(one_of(["g1"], nullable=False), "g1")


def test_the_planner_schema_lets_the_model_cite_only_the_memory_ids_it_was_shown():
    schema = planner_output_for(["m-1"], ALLOWED).model_json_schema()
    gap = {"id": "g1", "kind": "memory", "strategy": "memory", "memory_id": "m-1"}
    assert valid(schema, {"gaps": [gap]})
    assert not valid(schema, {"gaps": [{**gap, "memory_id": "m-2"}]})
    assert not valid(schema, {"gaps": [{**gap, "id": "g9"}]})  # only g1…g8


def test_the_planner_schema_gives_each_kind_of_gap_only_its_strategies():
    schema = planner_output_for([], ALLOWED).model_json_schema()
    assert valid(schema, {"gaps": [{"id": "g1", "kind": "knowledge", "strategy": "search"}]})
    assert not valid(schema, {"gaps": [{"id": "g1", "kind": "memory", "strategy": "search"}]})  # no web for "my dog"
    assert not valid(schema, {"gaps": [{"id": "g1", "kind": "ambiguity", "strategy": "ask"}]})  # kind not allowed


def test_the_planner_schema_bounds_its_lists():
    schema = planner_output_for([], ALLOWED).model_json_schema()
    gaps = [{"id": f"g{i % 8 + 1}", "kind": "knowledge", "strategy": "search"} for i in range(MAX_PLANNED_GAPS + 1)]
    assert valid(schema, {"gaps": gaps[:MAX_PLANNED_GAPS]}) and not valid(schema, {"gaps": gaps})
    assert schema["properties"]["gaps"]["items"] == {"$ref": "#/$defs/PlannedGap"}  # the bound sits beside items
    assert not valid(schema, {"checklist": [{"text": "x", "gap_id": "g12"}]})


def test_validation_stays_the_base_models_so_the_stage_checks_what_a_lax_server_sent():
    narrowed = planner_output_for(["m-1"], ALLOWED)
    answer = narrowed.model_validate({"gaps": [{"id": "g42", "kind": "preference", "strategy": "default",
                                                "memory_id": "m-invented"}]})
    assert isinstance(answer, PlannerOutput) and answer.gaps[0].memory_id == "m-invented"
    assert narrowed.__name__ == "PlannerOutput"


def test_narrowing_leaves_the_base_models_schema_alone():
    before = PlannerOutput.model_json_schema()
    planner_output_for(["m-1"], ALLOWED)
    constrained(EnricherOutput, {("properties", "used"): {"maxItems": 0}})
    assert PlannerOutput.model_json_schema() == before
    assert "maxItems" not in EnricherOutput.model_json_schema()["properties"]["used"]


def test_the_enricher_schema_cites_only_filled_gaps_and_none_when_there_are_none():
    schema = enricher_output_for(["g1", "g3"]).model_json_schema()
    assert valid(schema, {"prompt": "p", "used": [{"text": "emerald", "gap_id": "g3"}]})
    assert not valid(schema, {"prompt": "p", "used": [{"text": "emerald", "gap_id": "g2"}]})
    none = enricher_output_for([]).model_json_schema()
    assert valid(none, {"prompt": "p", "used": []})
    assert not valid(none, {"prompt": "p", "used": [{"text": "emerald", "gap_id": "g1"}]})
