"""What a completed result teaches memory (agents/learning.py); stated preferences beat learned ones."""

from __future__ import annotations

import pytest

from agents.learning import learn, turn_of
from agents.memory import MemoryView, items_from_user_text
from schemas.records import Gap, ImageRef, ImageRequest, ResultRecord


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
