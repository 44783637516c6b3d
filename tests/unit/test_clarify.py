"""Clarification (agents/clarify.py): one question at most, nothing invented, answers become memory."""

from __future__ import annotations

import pytest

from agents.clarify import answer_item, question_for, settle
from agents.memory import MemoryView
from schemas.records import Gap, GapsRecord, ImageRequest


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
