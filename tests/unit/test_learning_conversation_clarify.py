"""Pure parts of issue 6: what results teach, follow-up merging, clarification settling and answers."""

from __future__ import annotations

import pytest

from agents.clarify import answer_item, question_for, settle
from agents.conversation import MAX_MERGED_WORDS, merge
from agents.learning import learn, turn_of
from agents.memory import MemoryView, items_from_user_text
from schemas.records import Gap, GapsRecord, ImageRef, ImageRequest, ResultRecord


def _result(prompt: str, status: str = "completed", **request_fields) -> ResultRecord:
    request = ImageRequest(request_id="r-1", user_id="alice", prompt=prompt, **request_fields)
    gaps = [Gap(id="g1", kind="memory", strategy="memory", subject="max", description="Max", status="filled",
                value="Max, a corgi dog", source="memory:m-1")]
    image = ImageRef(uri="file:///i.png", sha256="0" * 64, width=64, height=64, seed=1)
    return ResultRecord(request_id="r-1", user_id="alice", status=status, prompt=prompt + ", corgi", gaps=gaps,
                        request=request, best_image=image, finished_at="2026-01-01T00:00:00.000+00:00")


def test_a_completed_result_teaches_history_style_colour_aspect_and_entities():
    items = learn(_result("Max in pixel art, red and gold", width=128, height=64), history_ttl_s=60)
    by_kind = {}
    for item in items:
        by_kind.setdefault(item.kind, []).append(item)
    [history] = by_kind["history"]
    assert history.style == "pixel art" and history.entities == ["max"] and history.image_uri == "file:///i.png"
    assert history.expires_at == "2026-01-01T00:01:00.000+00:00" and history.request_id == "r-1"
    prefs = {(i.subject, i.value) for i in by_kind["preference"]}
    assert prefs == {("style", "pixel art"), ("colour", "red"), ("colour", "gold"), ("aspect ratio", "2:1")}
    assert all(i.source == "learned:r-1" for i in by_kind["preference"])
    assert [i.subject for i in by_kind["entity"]] == ["max"]
    assert [i.id for i in learn(_result("Max in pixel art, red and gold", width=128, height=64), 60)] == \
        [i.id for i in items]  # the same result teaches the same ids: a redelivery adds nothing


@pytest.mark.parametrize("status", ["failed", "needs_clarification", "expired"])
def test_only_completed_results_teach(status):
    assert learn(_result("Max", status=status), 60) == [] and turn_of(_result("Max", status=status)) is None


def test_a_stated_style_beats_a_learned_one_and_the_newest_statement_wins():
    learned = [i for i in learn(_result("Max in pixel art"), 60) if i.kind == "preference"]
    stated = items_from_user_text("I like watercolor") + items_from_user_text("I now prefer oil painting")
    assert MemoryView(learned).style().value == "pixel art"
    assert MemoryView([*stated, *learned]).style().value == "oil painting"


@pytest.mark.parametrize("parent, followup, has, lacks", [
    ("a fox in a snowy forest in summer", "now in winter", ["fox", "forest", "winter"], ["summer"]),
    ("a fox under a blue sky", "make the sky darker", ["fox", "blue sky", "darker sky"], []),
    ("a fox under a blue sky, darker sky", "make the sky lighter", ["lighter sky"], ["darker sky"]),
    ("my dog Max at the beach", "add a second dog", ["Max", "beach", "with a second dog"], []),
    ("a fox, with a red hat", "remove the hat", ["fox", "without hat"], ["red hat"]),
    ("a fox at sunset", "now at night", ["fox", "night"], ["sunset"]),
])
def test_a_follow_up_changes_only_what_it_names(parent, followup, has, lacks):
    merged = merge(parent, followup)
    assert all(w in merged for w in has), merged
    assert not any(w in merged for w in lacks), merged


def test_a_long_conversation_stays_bounded_and_keeps_the_original_request():
    prompt = "a fox under a blue sky"
    for i in range(50):
        prompt = merge(prompt, f"add a lantern number {i}")
    assert len(prompt.split()) <= MAX_MERGED_WORDS and prompt.startswith("a fox under a blue sky")
    assert "lantern number 49" in prompt and "lantern number 0," not in prompt


def _gaps(allow: bool, *subjects: str) -> GapsRecord:
    request = ImageRequest(request_id="r-1", user_id="alice", prompt="draw my logo", allow_clarification=allow)
    gaps = [Gap(id=f"g{i}", kind="memory", strategy="memory", subject=s, description=s, status="unfilled",
                reason="nothing in memory") for i, s in enumerate(subjects, 1)]
    return GapsRecord(request_id="r-1", user_id="alice", request=request, gaps=gaps)


def test_one_question_at_most_and_the_rest_stays_unfilled():
    record = _gaps(True, "logo", "mascot")
    record, asked = settle(record, allow_question=True)
    assert asked.subject == "logo" and asked.strategy == "ask" and asked.status == "open"
    mascot = record.gaps[1]
    assert (mascot.status, mascot.value, mascot.source) == ("unfilled", None, None)
    assert "only one question" in mascot.reason and "nothing invented" in mascot.reason
    assert "logo" in question_for(asked)


def test_without_permission_nothing_is_invented_for_a_memory_gap():
    """Issue 15: "a poster of my dog Max" with no memory got "a simple dog", marked filled."""
    record = _gaps(False, "logo", "style")
    record, asked = settle(record, allow_question=False)
    assert asked is None
    logo, style = record.gaps
    assert (logo.status, logo.value) == ("unfilled", None)
    assert "clarification not allowed" in logo.reason and "nothing invented" in logo.reason
    # A style is a preference, the one thing a default may stand in for; it says it is a default.
    assert (style.status, style.source, style.filled_by) == ("filled", "default", "default")
    assert "default style used" in style.reason


def test_an_answer_becomes_a_sourced_memory_item_that_fills_the_gap_next_time():
    gap = Gap(id="g1", kind="memory", strategy="ask", subject="logo", description="logo")
    item = answer_item(gap, "A blue fox. In a circle!", "r-9", "2026-01-01T00:00:00.000+00:00")
    assert item.kind == "fact" and item.source == "answer:r-9" and item.request_id == "r-9"
    assert MemoryView([item]).facts_about("my logo")[0].value.startswith("blue fox")
    style = answer_item(Gap(id="g2", kind="memory", strategy="ask", subject="style", description="s"),
                        "gouache", "r-9", "2026-01-01T00:00:00.000+00:00")
    assert MemoryView([style]).style().value == "gouache"
    with pytest.raises(ValueError):
        answer_item(gap, " ... ", "r-9", "2026-01-01T00:00:00.000+00:00")
