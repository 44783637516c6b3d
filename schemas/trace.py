"""The entries of a request's run trace that every stage may add to: timings, model calls and degraded reasons.

A degraded reason is data (which stage, what kind, the sentence a person reads), so a dashboard counts kinds and
never has to read prose back. Workers before this change wrote plain sentences; those are still read (see
`Degraded`), so a rolling upgrade loses no reason.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, model_validator


# Records are values: a stage builds the next one (`model_copy(update=...)`) rather than changing what it read, so
# a record that was sent, logged or retried is the record that was meant.
FROZEN = ConfigDict(extra="ignore", frozen=True)


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")

DegradedKind = Literal[
    "memory_unavailable",  # the user's memory could not be read or written; planning went on without it
    "no_search_backend",  # a search gap, and no backend configured
    "search_failed",  # a search backend failed for a gap (after its own retries)
    "search_budget",  # the per-request search budget left gaps unsearched
    "page_read_failed",  # a result page could not be read
    "llm_fallback",  # the model was unreachable or its answer failed the checks: the heuristic stage answered
    "llm_partial",  # the model's answer was kept in part; the detail says what was dropped
    "no_readable_draft",  # the visual critic had no draft it could show the model
    "stage_failed",  # a stage gave up on the request (the result is `failed`)
    "timeout",  # a stage did not answer within the request deadline (the watchdog failed it)
    "not_remembered",  # the result could not be written to the user's memory
    "other",  # a kind this worker does not know (a newer worker's), or an old sentence no rule matched
]
DEGRADED_KINDS: tuple[str, ...] = get_args(DegradedKind)

# How an older worker's sentence is read: its kind by the first phrase that matches, and its stage by its head.
_LEGACY_KINDS = (
    ("budget exhausted", "search_budget"),
    ("no search backend", "no_search_backend"),
    ("reading a result page", "page_read_failed"),
    ("kept the valid part", "llm_partial"),
    ("heuristic fallback", "llm_fallback"),
    ("model unavailable", "llm_fallback"),
    ("no readable draft", "no_readable_draft"),
    ("memory unavailable", "memory_unavailable"),
    ("not remembered", "not_remembered"),
    # A stage's own "<stage> timed out" / "<stage> failed" first: "searcher timed out" also contains "search".
    ("timed out", "timeout"),
    (re.compile(r"^[a-z_-]+ failed$"), "stage_failed"),
    ("search", "search_failed"),
    ("failed", "stage_failed"),
)
_LEGACY_STAGES = (
    (re.compile(r"^(search|search backend)\b"), "searcher"),
    (re.compile(r"^memory unavailable\b"), "planner"),
    (re.compile(r"^memory:"), "publisher"),
    (re.compile(r"^(?P<stage>[a-z_-]+)(:| failed$| timed out$)"), None),
)


def _legacy(text: str) -> dict[str, str]:
    lowered = text.lower()
    kind = next((k for needle, k in _LEGACY_KINDS
                 if (needle.search(lowered) if isinstance(needle, re.Pattern) else needle in lowered)), "other")
    stage = "unknown"
    for pattern, named in _LEGACY_STAGES:
        match = pattern.match(lowered)
        if match:
            stage = named or match.group("stage")
            break
    return {"stage": stage, "kind": kind, "detail": text}


class Degraded(BaseModel):
    """Why a request was answered with less than usual: the stage, the kind of reason, and the sentence to show.

    Workers older than typed reasons wrote the sentence alone; gapstream still reads one (its stage and kind
    inferred from the words), and reads a kind it does not know as `other`, so no reason is lost in an upgrade."""

    model_config = FROZEN

    stage: str
    kind: DegradedKind
    detail: str

    @model_validator(mode="before")
    @classmethod
    def _from_sentence(cls, value: Any) -> Any:
        if isinstance(value, str):
            return _legacy(value)
        if isinstance(value, dict) and value.get("kind") not in DEGRADED_KINDS and "kind" in value:
            return {**value, "kind": "other"}
        return value

    def __str__(self) -> str:
        return self.detail


class StageTiming(BaseModel):
    model_config = FROZEN

    stage: str
    round: int
    seconds: float
    at: str = Field(default_factory=utc_now)


class LLMCall(BaseModel):
    """One model call a stage made: what it cost and how it ended (never the key, never the raw prompt)."""

    model_config = FROZEN

    stage: str
    model: str
    template: str = ""  # name@version of the prompt template
    round: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    attempts: int = 1
    outcome: str = "ok"  # "ok", or "fallback: <reason>" when the heuristic backend took over
