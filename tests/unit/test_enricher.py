"""The enricher: traceable additions, ordering, params and seeds, and revised rounds driven by a critique."""

from __future__ import annotations

import pytest

from agents.enricher import Enricher, seeds_for
from agents.ports import GenerationDefaults
from schemas.records import (
    ChecklistItem,
    CheckResult,
    Critique,
    CritiqueRecord,
    DraftScore,
    Gap,
    ImageRef,
    ImageRequest,
    SearchResultsRecord,
)

DEFAULTS = GenerationDefaults(width=64, height=64, steps=4, guidance=7.5, max_side=512)


def results(prompt="a poster for this year's Lantern Fair", **request_fields) -> SearchResultsRecord:
    request = ImageRequest(request_id="req-1", user_id="alice", prompt=prompt, **request_fields)
    gaps = [
        Gap(id="g1", kind="knowledge", description="d", strategy="search", status="filled",
            value="The 2026 Lantern Fair is held in Lisbon; lanterns are emerald.", source="lantern-fair.md"),
        Gap(id="g2", kind="knowledge", description="d", strategy="search", status="unfilled",
            reason="no search results"),
        Gap(id="g3", kind="preference", description="d", strategy="memory", subject="style", status="filled",
            value="gouache", source="memory:m-1"),
        Gap(id="g4", kind="preference", description="d", strategy="default", subject="lighting", status="filled",
            value="soft natural lighting", source="default"),
    ]
    checklist = [
        ChecklistItem(id="c1", text="style gouache", terms=["gouache"], gap_id="g3"),
        ChecklistItem(id="c2", text="fair facts", terms=["lisbon", "emerald"], gap_id="g1"),
        ChecklistItem(id="c3", text="two dogs", terms=["two", "dogs"]),
    ]
    return SearchResultsRecord(request_id="req-1", user_id="alice", request=request, gaps=gaps, checklist=checklist)


async def test_round_zero_adds_one_traceable_phrase_per_filled_gap():
    out = await Enricher(DEFAULTS)(results())
    assert out.round == 0 and out.prompt.startswith("a poster for this year's Lantern Fair, ")
    assert [(a.gap_id, a.source) for a in out.additions] == [
        ("g1", "lantern-fair.md"), ("g3", "memory:m-1"), ("g4", "default")]
    assert "Lisbon" in out.prompt and "gouache style" in out.prompt and "no search results" not in out.prompt
    for addition in out.additions:
        assert addition.text in out.prompt
    # The searched fact comes before the style and the defaults: CLIP may cut the end off.
    assert out.prompt.index("Lisbon") < out.prompt.index("gouache") < out.prompt.index("soft natural")
    assert out.prompt_history == [] and out.critiques == [] and out.best is None


async def test_negative_prompt_and_params_from_request_or_defaults():
    out = await Enricher(DEFAULTS)(results(negative_prompt="text, Blurry", width=128, steps=9, drafts=3))
    assert out.negative_prompt.split(", ")[:2] == ["text", "Blurry"]
    assert "watermark" in out.negative_prompt and out.negative_prompt.lower().count("blurry") == 1
    p = out.params
    assert (p.width, p.height, p.steps, p.guidance) == (128, 64, 9, 7.5)
    assert len(p.seeds) == 3 and len(set(p.seeds)) == 3


@pytest.mark.parametrize("fields", [{"width": 1024}, {"height": 520 + 8 * 100}])
async def test_sizes_beyond_the_model_limit_are_rejected(fields):
    with pytest.raises(ValueError, match="maximum side"):
        await Enricher(DEFAULTS)(results(**fields))


def test_seeds_are_stable_distinct_and_respect_a_given_seed():
    assert seeds_for("req-1", None, 0, 2) == seeds_for("req-1", None, 0, 2)
    assert seeds_for("req-1", None, 0, 2) != seeds_for("req-2", None, 0, 2)
    assert seeds_for("req-1", 42, 0, 3)[0] == 42
    rounds = [seeds_for("req-1", 42, r, 2) for r in range(3)]
    assert len({s for seeds in rounds for s in seeds}) == 6
    assert all(0 <= s < 2**32 for seeds in rounds for s in seeds)


def critique_record(enriched, verdict="revise", failed=("c2",), problems=("very low contrast",)):
    ref = ImageRef(uri="mem://r0.png", sha256="0" * 64, width=64, height=64, seed=enriched.params.seeds[0])
    checks = [CheckResult(item_id=c.id, passed=c.id not in failed, reason="missing" if c.id in failed else "")
              for c in enriched.checklist]
    critique = Critique(round=enriched.round, verdict=verdict, score=0.4, checks=checks,
                        drafts=[DraftScore(uri=ref.uri, score=0.4, problems=list(problems))], prompt=enriched.prompt)
    return CritiqueRecord.model_validate({**enriched.model_dump(), "images": [ref.model_dump()],
                                          "critique": critique.model_dump(), "best": ref.model_dump(),
                                          "best_score": 0.4, "best_prompt": enriched.prompt})


async def test_revise_round_puts_failed_items_first_and_carries_history():
    enricher = Enricher(DEFAULTS)
    first = await enricher(results(max_rounds=3))
    second = await enricher(critique_record(first, failed=("c2", "c3")))
    assert second.round == 1
    assert second.prompt_history == [first.prompt]
    assert len(second.critiques) == 1 and second.critiques[0].score == 0.4
    assert (second.best.uri, second.best_score, second.best_prompt) == ("mem://r0.png", 0.4, first.prompt)
    assert second.params.seeds != first.params.seeds
    user = first.request.prompt
    # The failed Lantern Fair fact follows the user's words directly; the "two dogs" requirement is spelled out.
    assert second.prompt.startswith(user + ", 2026 Lantern Fair")
    assert "two dogs" in second.prompt and "two dogs" not in first.prompt
    assert second.prompt.index("two dogs") < second.prompt.index("gouache")
    assert any(a.source == "critique:quality" for a in second.additions)
    assert {a.gap_id for a in second.additions if a.text == "two dogs"} == {""}


async def test_only_revise_verdicts_and_rounds_within_the_limit_are_enriched():
    enricher = Enricher(DEFAULTS)
    first = await enricher(results(max_rounds=2))
    with pytest.raises(ValueError, match="verdict"):
        await enricher(critique_record(first, verdict="accept"))
    second = await enricher(critique_record(first))
    with pytest.raises(ValueError, match="max_rounds"):
        await enricher(critique_record(second))
    with pytest.raises(ValueError):
        await enricher(first)


def test_constructor_needs_generation_defaults():
    with pytest.raises(ValueError):
        Enricher({"width": 64})


async def test_the_critiques_suggestions_change_the_next_prompt_and_the_trace_names_them():
    enricher = Enricher(DEFAULTS)
    first = await enricher(results(max_rounds=3))
    record = critique_record(first, failed=(), problems=())
    record = record.model_copy(update={"critique": record.critique.model_copy(  # only "add:" suggestions are applied
        update={"suggestions": ["add: moonlit harbour", "make it pop"]})})
    second = await enricher(record)
    assert "moonlit harbour" in second.prompt and "moonlit harbour" not in first.prompt
    assert [a.source for a in second.additions if a.text == "moonlit harbour"] == ["critique:round0"]
    assert "make it pop" not in second.prompt
    assert second.prompt_history == [first.prompt] and second.critiques[0].suggestions == record.critique.suggestions
