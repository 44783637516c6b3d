"""Clarifying questions: when memory cannot fill a gap, ask the user (if the request allows it), else leave it out.

Pure functions over records; the planner stage (`agents/planner_stage.py`) publishes the question, keeps it waiting
in Redis and resumes it when the answer comes. A request is asked at most once: after an answer, anything still
unknown stays unfilled, so a request has at most one `needs_clarification` result and then one final result.

Nothing is invented for what only the user knows: "my dog" that memory does not know stays "my dog" in the prompt
(the user's own words), never "a simple dog". Only a style has a default, because a style is a preference a
default can stand in for (and it says it is a default).
"""

from __future__ import annotations

import re
from typing import Optional

from agents.memory import item_id, statements_in
from agents.planner import DEFAULTS
from schemas.records import Gap, GapsRecord, MemoryItem

ASKABLE_KINDS = ("memory", "ambiguity")
MAX_ANSWER_CHARS = 300


def _askable(gap: Gap) -> bool:
    return gap.kind in ASKABLE_KINDS and (gap.status == "unfilled" or (gap.strategy == "ask" and gap.status == "open"))


def default_for(gap: Gap) -> Optional[str]:
    """The default that may stand in for an unknown gap: only a style has one."""
    return DEFAULTS["style"] if gap.subject == "style" else None


def settle(record: GapsRecord, allow_question: bool) -> tuple[GapsRecord, Optional[Gap]]:
    """Mark the first gap memory could not fill as a question (`strategy="ask"`, open) when allowed; every other
    such gap gets the style default when it is a style, and otherwise stays unfilled with the reason. Returns the
    record so settled and the gap to ask about, or None."""
    asked: Optional[Gap] = None
    gaps: list[Gap] = []
    for gap in record.gaps:
        if _askable(gap):
            gap = _settled(gap, allow_question, asked is None)
            if gap.strategy == "ask":
                asked = gap
        gaps.append(gap)
    return record.model_copy(update={"gaps": gaps}), asked


def _settled(gap: Gap, allow_question: bool, may_ask: bool) -> Gap:
    why = gap.reason or "not in the user's memory"
    if allow_question and may_ask:
        return gap.model_copy(update={"strategy": "ask", "status": "open", "reason": f"{why}; asking the user"})
    limit = "only one question per request" if allow_question else "clarification not allowed"
    default = default_for(gap)
    if default is None:
        return gap.model_copy(update={
            "status": "unfilled", "reason": f"{why}; {limit}: left to the user's own words, nothing invented"})
    return gap.model_copy(update={"strategy": "default", "status": "filled", "value": default, "source": "default",
                                  "filled_by": "default", "reason": f"{why}; {limit}: default style used"})


def question_for(gap: Gap) -> str:
    if gap.subject == "style":
        return ("Which style do you mean by your usual style? Name it in a few words (for example watercolor or "
                "pixel art); gapstream will remember it.")
    return f"What is your {gap.subject}? Describe it in a few words; gapstream will remember it."


def clean_answer(answer: str) -> str:
    text = re.sub(r"[.;!?\n]+", ",", re.sub(r"\s+", " ", answer)).strip(" ,")
    return text[:MAX_ANSWER_CHARS]


def answer_item(gap: Gap, answer: str, request_id: str, at: str) -> MemoryItem:
    """The memory item an answer becomes, sourced to the request it answered."""
    text = clean_answer(answer)
    if not text:
        raise ValueError("the answer is empty")
    source = f"answer:{request_id}"
    if gap.subject == "style":
        statement = f"I like {text}"
        found = statements_in(statement, now=at)
        base = found[0] if found else MemoryItem(id="", kind="preference", text=statement, subject="style",
                                                 value=text, created_at=at)
        return base.model_copy(update={"id": item_id(f"{request_id}:{statement}"), "subject": "style",
                                       "source": source, "request_id": request_id})
    statement = f"my {gap.subject} is {text}"
    found = [i for i in statements_in(statement, now=at) if i.kind == "fact"]
    base = found[0] if found else MemoryItem(id="", kind="fact", text=statement, subject=gap.subject.lower(),
                                             value=text, created_at=at)
    return base.model_copy(update={"id": item_id(f"{request_id}:{statement}"), "source": source,
                                   "request_id": request_id})
