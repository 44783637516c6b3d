"""One typed record per topic: the public API of gapstream.

Each stage's record extends the one before it, so a message carries the whole context the next stage needs
(request, gaps, facts with sources, prompt history, round) and no stage has to join topics. Unknown extra fields
are ignored so older workers keep reading newer messages; a missing required field is a validation error, which
the wiring turns into a dead letter.
"""

from __future__ import annotations

import re
import uuid
from typing import Literal, Optional

from pydantic import BaseModel, Field, field_validator, model_validator

from schemas.trace import DEGRADED_KINDS, FROZEN, Degraded, DegradedKind, LLMCall, StageTiming, utc_now  # noqa: F401

SCHEMA_VERSION = 1

USER_ID_PATTERN = r"^[A-Za-z0-9_.@-]{1,128}$"
REQUEST_ID_PATTERN = r"^[A-Za-z0-9_.:@-]{1,128}$"
MAX_PROMPT_CHARS = 4000
MAX_SIDE = 2048
MAX_STEPS = 150
MAX_ROUNDS = 5
MAX_DRAFTS = 8

GapKind = Literal["knowledge", "memory", "preference", "ambiguity", "constraint"]
Strategy = Literal["search", "memory", "reason", "default", "ask"]
GapStatus = Literal["open", "filled", "unfilled"]
Verdict = Literal["accept", "revise", "exhausted"]
ResultStatus = Literal["completed", "failed", "needs_clarification", "expired"]


def new_request_id() -> str:
    return uuid.uuid4().hex


def visible_text(value: str, what: str) -> str:
    """Text a person typed: not blank, and no control characters (they would reach the model's prompt)."""
    if not value.strip():
        raise ValueError(f"{what} is blank")
    if re.search(r"[\x00-\x08\x0b\x0c\x0e-\x1f]", value):
        raise ValueError(f"{what} contains control characters")
    return value


class _Record(BaseModel):
    model_config = FROZEN


class ImageRequest(_Record):
    """`gapstream.requests`: what a user publishes. Only request_id, user_id and prompt are required."""

    schema_version: int = SCHEMA_VERSION
    request_id: str = Field(pattern=REQUEST_ID_PATTERN)
    user_id: str = Field(pattern=USER_ID_PATTERN)
    prompt: str = Field(min_length=1, max_length=MAX_PROMPT_CHARS)
    negative_prompt: str = Field(default="", max_length=MAX_PROMPT_CHARS)
    width: Optional[int] = Field(default=None, ge=8, le=MAX_SIDE)
    height: Optional[int] = Field(default=None, ge=8, le=MAX_SIDE)
    steps: Optional[int] = Field(default=None, ge=1, le=MAX_STEPS)
    guidance: Optional[float] = Field(default=None, ge=0.0, le=30.0)
    seed: Optional[int] = Field(default=None, ge=0, le=2**32 - 1)
    drafts: int = Field(default=1, ge=1, le=MAX_DRAFTS)
    max_rounds: int = Field(default=2, ge=1, le=MAX_ROUNDS)
    accept_score: Optional[float] = Field(default=None, ge=0.0, le=1.0)
    allow_clarification: bool = False
    parent_request_id: Optional[str] = Field(default=None, pattern=REQUEST_ID_PATTERN)
    created_at: str = Field(default_factory=utc_now)

    @field_validator("prompt")
    @classmethod
    def _prompt_has_text(cls, value: str) -> str:
        return visible_text(value, "prompt")

    @field_validator("width", "height")
    @classmethod
    def _multiple_of_eight(cls, value: Optional[int]) -> Optional[int]:
        if value is not None and value % 8:
            raise ValueError(f"must be a multiple of 8, got {value}")
        return value


class Gap(_Record):
    """Something the prompt leaves out that the image needs, and how it was (or was not) filled."""

    id: str
    kind: GapKind
    description: str
    strategy: Strategy
    subject: str = ""
    query: Optional[str] = None
    time_sensitive: bool = False
    status: GapStatus = "open"
    value: Optional[str] = None
    source: Optional[str] = None
    reason: Optional[str] = None
    # Which backend filled it ("heuristic", "default", "memory", "search:corpus", "llm:<model>") and, for a model,
    # its one-line reasoning summary.
    filled_by: Optional[str] = None
    reasoning: Optional[str] = None


class ChecklistItem(_Record):
    """One thing the image must show; `terms` are the words whose presence in the prompt the offline critic checks."""

    id: str
    text: str
    terms: list[str] = Field(default_factory=list)
    gap_id: Optional[str] = None


class MemoryItem(_Record):
    """One remembered thing. `fact` and `preference` are stated or learned; `entity` is something the user referred
    to; `history` is an accepted result (its prompt, style and image), capped and expiring (issue 6)."""

    id: str
    kind: Literal["fact", "preference", "entity", "history"]
    text: str
    subject: str = ""
    value: str = ""
    source: str = "user"
    created_at: str = Field(default_factory=utc_now)
    # Issue 6, all optional: the request that wrote the item, when a history item expires, and what it produced.
    request_id: Optional[str] = None
    expires_at: Optional[str] = None
    style: str = ""
    entities: list[str] = Field(default_factory=list)
    image_uri: Optional[str] = None


# -- the trace ------------------------------------------------------------------------------------------------------
# What a result tells of how its gap was closed is what the stages' records carried: the same fields, declared once
# here, inherited by each pipeline record (the parts it has) and by `ResultRecord` (all of them), so a result is
# built from a record's trace (`agents.publisher.result_of`), never copied field by field. On the wire they stay
# top-level fields of each message.


class RunTrace(_Record):
    """What every stage adds to as it goes: its time, its model calls, and why it did less than usual."""

    timings: list[StageTiming] = Field(default_factory=list)
    degraded: list[Degraded] = Field(default_factory=list)
    llm_calls: list[LLMCall] = Field(default_factory=list)


class PlanTrace(_Record):
    """The planner's part: gaps, checklist and the memory it used or wrote."""

    gaps: list[Gap] = Field(default_factory=list)
    checklist: list[ChecklistItem] = Field(default_factory=list)
    memory_used: list[MemoryItem] = Field(default_factory=list)
    memory_written: list[MemoryItem] = Field(default_factory=list)
    # Issue 6: what the prompt is planned from when it is not the request's own text (a follow-up merged with its
    # parent's prompt, or an answered clarification), the parent result it started from and an answered question.
    base_prompt: Optional[str] = None
    parent: Optional["ParentRef"] = None
    clarification: Optional["ClarificationAnswer"] = None


class SearchTrace(_Record):
    """The searcher's part: the searches made and the facts found."""

    searches: list["Search"] = Field(default_factory=list)
    facts: list["Fact"] = Field(default_factory=list)


class PromptTrace(_Record):
    """The enricher's and critic's part: what was added to the prompt, and every finished round's critique."""

    additions: list["PromptAddition"] = Field(default_factory=list)
    critiques: list["Critique"] = Field(default_factory=list)


class Trace(RunTrace, PromptTrace, SearchTrace, PlanTrace):
    """The whole trace of a request, as its result carries it."""


class _Ids(_Record):
    schema_version: int = SCHEMA_VERSION
    request_id: str = Field(pattern=REQUEST_ID_PATTERN)
    user_id: str = Field(pattern=USER_ID_PATTERN)
    round: int = Field(default=0, ge=0, le=MAX_ROUNDS)
    request: ImageRequest


class _Envelope(RunTrace, _Ids):
    @model_validator(mode="after")
    def _ids_match_request(self) -> "_Envelope":
        if self.request.request_id != self.request_id or self.request.user_id != self.user_id:
            raise ValueError("request_id/user_id differ from the embedded request")
        return self


class GapsRecord(PlanTrace, _Envelope):
    """`gapstream.gaps`: the planner's gaps, checklist and the memory it used or wrote."""


class ParentRef(_Record):
    """The earlier result a follow-up request (`parent_request_id`) starts from."""

    request_id: str
    prompt: str
    final_prompt: str = ""
    image_uri: Optional[str] = None


class ClarificationAnswer(_Record):
    """The question asked about a request and the user's answer, carried in the trace after a resume."""

    gap_id: str
    subject: str
    question: str
    answer: str
    remembered: Optional[str] = None  # id of the memory item the answer became


class Hit(_Record):
    source: str
    title: str = ""
    text: str
    score: float = 0.0
    backend: str = ""
    date: Optional[str] = None
    # Cosine similarity of the query and the passage by meaning, where the backend ranks by embeddings too.
    similarity: Optional[float] = None


class Search(_Record):
    gap_id: str
    query: str
    backend: str
    hits: list[Hit] = Field(default_factory=list)
    seconds: float = 0.0
    error: Optional[str] = None
    cached: bool = False


class Fact(_Record):
    id: str
    gap_id: str
    text: str
    source: str
    backend: str = ""
    date: Optional[str] = None


class SearchResultsRecord(SearchTrace, GapsRecord):
    """`gapstream.search-results`: gaps with knowledge filled from search, the searches made and the facts found."""


class GenerationParams(_Record):
    width: int
    height: int
    steps: int
    guidance: float
    seeds: list[int]


class PromptAddition(_Record):
    """A phrase the enricher added to the user's prompt, with the gap and source it came from."""

    text: str
    gap_id: str
    source: str


class CheckResult(_Record):
    item_id: str
    passed: bool
    reason: str = ""


class DraftScore(_Record):
    uri: str
    score: float
    quality: dict[str, float] = Field(default_factory=dict)
    problems: list[str] = Field(default_factory=list)


class Critique(_Record):
    round: int
    verdict: Verdict
    score: float
    checks: list[CheckResult] = Field(default_factory=list)
    drafts: list[DraftScore] = Field(default_factory=list)
    feedback: list[str] = Field(default_factory=list)
    suggestions: list[str] = Field(default_factory=list)  # prompt changes the judge proposes for the next round
    judge: str = "heuristic"  # "heuristic" or "vlm:<model>"
    prompt: str = ""
    stop_reason: Optional[str] = None  # issue 6: why the loop ended here (threshold, max_rounds, no improvement)


class EnrichedPromptRecord(PromptTrace, SearchResultsRecord):
    """`gapstream.enriched-prompts`: the diffusion prompt of this round, traceable to gaps and sources."""

    prompt: str
    negative_prompt: str = ""
    params: GenerationParams
    prompt_history: list[str] = Field(default_factory=list)
    best: Optional["ImageRef"] = None
    best_score: Optional[float] = None
    best_prompt: Optional[str] = None


class ImageRef(_Record):
    uri: str
    sha256: str
    width: int
    height: int
    seed: int


class ImagesRecord(EnrichedPromptRecord):
    """`gapstream.images`: every draft of this round, as URIs into the image store."""

    images: list[ImageRef] = Field(min_length=1)
    model: str = ""


class CritiqueRecord(ImagesRecord):
    """`gapstream.critiques`: this round's critique; `revise` re-enters enrichment, anything else is final."""

    critique: Critique


class _ResultHead(_Record):
    schema_version: int = SCHEMA_VERSION
    request_id: str
    user_id: str
    status: ResultStatus
    prompt: str = ""
    negative_prompt: str = ""
    images: list[ImageRef] = Field(default_factory=list)
    best_image: Optional[ImageRef] = None
    score: Optional[float] = None
    rounds: int = 0


class ResultRecord(Trace, _ResultHead):
    """`gapstream.results`: exactly one per request, the final answer and the full trace of how the gap was closed."""

    error: Optional[str] = None
    request: Optional[ImageRequest] = None
    finished_at: str = Field(default_factory=utc_now)
    # Issue 6: the question of a `needs_clarification` result and when it expires.
    question: Optional[str] = None
    expires_at: Optional[str] = None


class DeadLetter(_Record):
    """`gapstream.dead-letters`: a message a stage could not process, with the reason and the original payload."""

    schema_version: int = SCHEMA_VERSION
    stage: str
    error_class: str
    error: str
    retriable: bool = False
    topic: str
    partition: Optional[int] = None
    offset: Optional[int] = None
    key: Optional[str] = None
    request_id: Optional[str] = None
    payload: str
    payload_encoding: Literal["utf-8", "base64"] = "utf-8"
    payload_truncated: bool = False
    at: str = Field(default_factory=utc_now)


for _model in (PlanTrace, SearchTrace, PromptTrace, Trace, GapsRecord, ResultRecord, SearchResultsRecord,
               EnrichedPromptRecord, ImagesRecord, CritiqueRecord):
    _model.model_rebuild()
