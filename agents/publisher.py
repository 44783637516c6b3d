"""The last stage: turn a final critique into the one result record a user reads, with the whole trace."""

from __future__ import annotations

import re
from typing import Any, Mapping, Optional

from schemas.records import (
    REQUEST_ID_PATTERN,
    USER_ID_PATTERN,
    CritiqueRecord,
    ImageRequest,
    ResultRecord,
)

_REQUEST_ID = re.compile(REQUEST_ID_PATTERN)
_USER_ID = re.compile(USER_ID_PATTERN)


def is_final(record: CritiqueRecord) -> bool:
    return record.critique.verdict != "revise"


def build_result(record: CritiqueRecord) -> ResultRecord:
    """The result of a request whose critique loop ended: the best image of all rounds, not merely the last."""
    if not is_final(record):
        raise ValueError(f"round {record.round} of {record.request_id} is still being revised")
    critiques = [*record.critiques, record.critique]
    ranked = sorted(record.images, key=lambda ref: _draft_score(record, ref.uri), reverse=True)
    best = record.best or (ranked[0] if ranked else None)
    return ResultRecord(
        request_id=record.request_id,
        user_id=record.user_id,
        status="completed",
        prompt=record.best_prompt or record.prompt,
        negative_prompt=record.negative_prompt,
        images=ranked,
        best_image=best,
        score=record.best_score if record.best_score is not None else record.critique.score,
        rounds=record.round + 1,
        gaps=record.gaps,
        checklist=record.checklist,
        searches=record.searches,
        facts=record.facts,
        additions=record.additions,
        critiques=critiques,
        memory_used=record.memory_used,
        memory_written=record.memory_written,
        timings=record.timings,
        degraded=record.degraded,
        llm_calls=record.llm_calls,
        request=record.request,
        base_prompt=record.base_prompt,
        parent=record.parent,
        clarification=record.clarification,
    )


def _draft_score(record: CritiqueRecord, uri: str) -> float:
    for draft in record.critique.drafts:
        if draft.uri == uri:
            return draft.score
    return 0.0


def failed_result(payload: Mapping[str, Any], stage: str, error: str) -> Optional[ResultRecord]:
    """A `failed` result for a message a stage gave up on, so a client waiting on results is not left waiting.

    Only when the payload names a well-formed request_id and user_id: anything else cannot be routed to anyone
    and lives on only as a dead letter.
    """
    request_id = payload.get("request_id")
    user_id = payload.get("user_id")
    if not isinstance(request_id, str) or not _REQUEST_ID.match(request_id):
        return None
    if not isinstance(user_id, str) or not _USER_ID.match(user_id):
        return None
    request = None
    embedded = payload.get("request", payload if stage == "planner" else None)
    if isinstance(embedded, Mapping):
        try:
            request = ImageRequest.model_validate(embedded)
        except ValueError:
            request = None
    return ResultRecord(
        request_id=request_id,
        user_id=user_id,
        status="failed",
        error=f"{stage}: {error}",
        request=request,
        degraded=[f"{stage} failed"],
    )
