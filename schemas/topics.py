"""The topic registry: every topic's name, record type and key, declared once."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel

from schemas.records import (
    CritiqueRecord,
    DeadLetter,
    EnrichedPromptRecord,
    GapsRecord,
    ImageRequest,
    ImagesRecord,
    ResultRecord,
    SearchResultsRecord,
)
from schemas.questions import AnswerRecord, ClarificationRecord

DEFAULT_PREFIX = "gapstream."


@dataclass(frozen=True)
class TopicSpec:
    suffix: str
    record: type[BaseModel]
    key: str = "request_id"
    description: str = ""

    def name(self, prefix: str = DEFAULT_PREFIX) -> str:
        return f"{prefix}{self.suffix}"


REQUESTS = TopicSpec("requests", ImageRequest, description="image requests published by users")
GAPS = TopicSpec("gaps", GapsRecord, description="the planner's gaps and checklist")
SEARCH_RESULTS = TopicSpec("search-results", SearchResultsRecord, description="gaps filled by search, with sources")
ENRICHED_PROMPTS = TopicSpec("enriched-prompts", EnrichedPromptRecord, description="diffusion-ready prompts per round")
IMAGES = TopicSpec("images", ImagesRecord, description="generated drafts as image-store URIs")
CRITIQUES = TopicSpec("critiques", CritiqueRecord, description="critique per round; revise loops to enrichment")
RESULTS = TopicSpec("results", ResultRecord, description="one final result per request")
DEAD_LETTERS = TopicSpec("dead-letters", DeadLetter, description="messages a stage could not process")

# Issue 6: a question back to the user, and the user's answer that resumes the same request.
CLARIFICATIONS = TopicSpec("clarifications", ClarificationRecord, description="questions about ambiguous requests")
ANSWERS = TopicSpec("answers", AnswerRecord, description="users' answers; each resumes its request")

ALL_TOPICS: tuple[TopicSpec, ...] = (
    REQUESTS, GAPS, SEARCH_RESULTS, ENRICHED_PROMPTS, IMAGES, CRITIQUES, RESULTS, DEAD_LETTERS,
    CLARIFICATIONS, ANSWERS,
)
