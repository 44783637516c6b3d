"""The conversation topics of issue 6: a question back to the user about a request, and the answer that resumes it."""

from __future__ import annotations

from pydantic import Field, field_validator

from schemas.records import REQUEST_ID_PATTERN, SCHEMA_VERSION, USER_ID_PATTERN, _Record, utc_now, visible_text


class ClarificationRecord(_Record):
    """`gapstream.clarifications`: a question about a request that memory could not answer (issue 6).

    Answer it with an `AnswerRecord` on `gapstream.answers` (or `gapstream answer REQUEST_ID "..."`) before
    `expires_at`; the same request then resumes and the answer is remembered."""

    schema_version: int = SCHEMA_VERSION
    request_id: str = Field(pattern=REQUEST_ID_PATTERN)
    user_id: str = Field(pattern=USER_ID_PATTERN)
    gap_id: str
    subject: str
    question: str
    asked_at: str = Field(default_factory=utc_now)
    expires_at: str


class AnswerRecord(_Record):
    """`gapstream.answers`: a user's answer to a clarification; keyed by request_id (issue 6)."""

    schema_version: int = SCHEMA_VERSION
    request_id: str = Field(pattern=REQUEST_ID_PATTERN)
    user_id: str = Field(pattern=USER_ID_PATTERN)
    answer: str = Field(min_length=1, max_length=1000)
    answered_at: str = Field(default_factory=utc_now)

    @field_validator("answer")
    @classmethod
    def _answer_has_text(cls, value: str) -> str:
        return visible_text(value, "answer")
