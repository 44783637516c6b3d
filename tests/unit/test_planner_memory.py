"""Memory gaps (agents/planner_memory.py): references found, resolved by words then meaning, never invented."""

from __future__ import annotations

import asyncio

import pytest

from agents.learning import learn
from agents.memory import MemoryView
from agents.planner_memory import MemoryGaps, reference_names, references
from agents.semantic import SemanticMemory
from agents.statements import items_from_user_text
from schemas.records import ImageRef, ImageRequest, ResultRecord
from tests.unit.fakes import FakeEmbedder, FakeMemoryStore

NOW = "2026-01-01T00:00:00.000+00:00"
MAX = items_from_user_text("my dog Max is a corgi. Max has a red collar. I like gouache", NOW)


class Plan:
    """The planner's side of MemoryGaps: gaps added in order, memory items used once each."""

    def __init__(self) -> None:
        self.gaps: list[dict] = []
        self.used: dict[str, object] = {}

    def add_gap(self, **fields) -> None:
        self.gaps.append(fields)

    def fill_from(self, item, value, *more) -> dict:
        for one in (item, *more):
            self.used.setdefault(one.id, one)
        return {"status": "filled", "value": value, "source": f"memory:{item.id}", "filled_by": "memory"}


def plan(prompt: str, items=(), embedder: FakeEmbedder | None = None) -> tuple[Plan, bool]:
    """Runs the memory steps in the planner's order; (the plan, whether the prompt referred to a style)."""
    out = Plan()
    gaps = MemoryGaps(prompt, MemoryView(items), out.add_gap, out.fill_from)
    style = gaps.style_and_history()
    refs = references(prompt)
    gaps.resolve_by_words(refs)
    semantic = SemanticMemory(embedder) if embedder else None
    asyncio.run(gaps.resolve_by_meaning(refs, semantic, FakeMemoryStore(), "alice"))
    gaps.possessive_gaps(refs)
    gaps.name_gaps()
    return out, style


def summary(out: Plan) -> list[tuple]:
    return [(g["subject"], g["status"], g.get("value")) for g in out.gaps]


def test_a_reference_is_up_to_three_words_stopping_at_a_stopword():
    [cafe, mascot] = references("our cafe with our mascot")
    assert (cafe.phrase, mascot.phrase) == ("our cafe", "our mascot")
    [dog] = references("my dog Max asleep on the sofa")
    assert dog.words == ["dog", "Max", "asleep"] and dog.names == ["Max"] and dog.owner == "my"


def test_a_reference_inside_a_style_reference_is_not_a_thing_of_the_users():
    assert [r.phrase for r in references("my dog in my usual style")] == ["my dog"]


def test_reference_candidates_are_the_head_noun_and_the_noun_with_its_next_word():
    [pup] = references("my little pup sleeping")
    assert pup.noun == "pup sleeping" and pup.candidates == ["pup"]  # "little" is an adjective, "-ing" a clause
    [logo] = references("our company logo")
    assert logo.candidates == ["company", "company logo"]


def test_names_inside_possessives_are_the_users_world():
    assert reference_names("my dog Max and our cat Pixel at the Lantern Fair") == {"max", "pixel"}


def test_a_possessive_resolved_by_words_fills_with_everything_known_about_it():
    out, _ = plan("my dog at the beach", MAX)
    assert summary(out) == [("max", "filled", "Max, a corgi dog with red collar")]
    assert len(out.used) == 2  # both facts about Max are listed as used


def test_a_possessive_words_miss_is_resolved_by_meaning_and_says_so():
    out, _ = plan("my pup at the beach", MAX, FakeEmbedder({"pup": "dog"}))
    [gap] = out.gaps
    assert gap["subject"] == "max" and gap["status"] == "filled"
    assert gap["reasoning"].startswith("matched by meaning: 'pup' ~ 'my dog Max is a corgi'")


def test_without_an_embedder_a_reference_words_miss_stays_unfilled():
    out, _ = plan("my pup at the beach", MAX)
    assert summary(out) == [("pup", "unfilled", None)]
    assert out.gaps[0]["reason"] == "nothing about 'my pup' in the user's memory"


def test_what_memory_cannot_fill_stays_unfilled_with_the_reason():
    out, _ = plan("our cafe with our mascot", [], FakeEmbedder())
    assert summary(out) == [("cafe", "unfilled", None), ("mascot", "unfilled", None)]
    assert all("value" not in g and g["reason"] for g in out.gaps)


def test_a_remembered_name_on_its_own_is_a_memory_gap():
    out, _ = plan("Max reading a book", MAX)
    assert summary(out) == [("max", "filled", "Max, a corgi dog with red collar")]


def test_the_same_thing_referred_to_twice_is_one_gap():
    out, _ = plan("my dog Max, Max and my dog again", MAX)
    assert [g["subject"] for g in out.gaps] == ["max"]


def test_my_usual_style_is_filled_from_the_stated_preference():
    out, style = plan("a fox in my usual style", MAX)
    assert style is True and summary(out) == [("style", "filled", "gouache")]


def test_my_usual_style_with_no_preference_is_unfilled_not_invented():
    out, style = plan("a fox in my usual style", [])
    assert style is True and summary(out) == [("style", "unfilled", None)]
    assert out.gaps[0]["reason"] == "no style preference in the user's memory"


def test_a_prompt_without_a_style_reference_says_so():
    out, style = plan("a fox in the snow", MAX)
    assert style is False and out.gaps == []


def _history(prompt: str) -> list:
    request = ImageRequest(request_id="r-0", user_id="alice", prompt=prompt)
    image = ImageRef(uri="file:///i.png", sha256="0" * 64, width=64, height=64, seed=1)
    return learn(ResultRecord(request_id="r-0", user_id="alice", status="completed", prompt=prompt, request=request,
                              best_image=image, finished_at=NOW), 60)


def test_like_last_time_takes_the_style_of_the_last_accepted_result_and_what_it_showed():
    out, style = plan("draw Max like last time", [*MAX, *_history("Max in pixel art")])
    subjects = summary(out)
    assert style is True and subjects[0] == ("style", "filled", "pixel art")  # last time beats the stated gouache
    assert ("last time", "filled", "Max in pixel art") in subjects


def test_like_last_time_with_no_accepted_result_adds_no_last_time_gap():
    out, _ = plan("draw Max like last time", MAX)
    assert "last time" not in [g["subject"] for g in out.gaps]


@pytest.mark.parametrize("prompt", ["my", "my, our.", "our 123"])
def test_an_owner_word_with_nothing_after_it_is_no_reference(prompt):
    assert references(prompt) == []
