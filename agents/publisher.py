"""The last stage: turn a final critique into the one result record a user reads, with the whole trace."""

from __future__ import annotations

import re
from typing import Any, Mapping, Optional

from pydantic import BaseModel

from schemas.records import (
    REQUEST_ID_PATTERN,
    USER_ID_PATTERN,
    CritiqueRecord,
    Degraded,
    ImageRequest,
    ResultRecord,
    ResultStatus,
    Trace,
)

_REQUEST_ID = re.compile(REQUEST_ID_PATTERN)
_USER_ID = re.compile(USER_ID_PATTERN)


def is_final(record: CritiqueRecord) -> bool:
    return record.critique.verdict != "revise"


def trace_of(record: Optional[BaseModel]) -> dict[str, Any]:
    """The parts of `Trace` that a pipeline record carries (a gaps record has no searches yet), as fields."""
    if record is None:
        return {}
    return {name: getattr(record, name) for name in Trace.model_fields if name in type(record).model_fields}


def result_of(status: ResultStatus, request_id: str, user_id: str, source: Optional[BaseModel] = None,
              **fields: Any) -> ResultRecord:
    """Every result (completed, failed, needs_clarification, expired) is built here: the trace of `source` (the
    last record of the request, when there is one) and what only the result says; `fields` win over the trace."""
    return ResultRecord(request_id=request_id, user_id=user_id, status=status,
                        **{**trace_of(source), **fields})


def build_result(record: CritiqueRecord) -> ResultRecord:
    """The result of a request whose critique loop ended: the best image of all rounds, not merely the last."""
    if not is_final(record):
        raise ValueError(f"round {record.round} of {record.request_id} is still being revised")
    ranked = sorted(record.images, key=lambda ref: _draft_score(record, ref.uri), reverse=True)
    return result_of(
        "completed", record.request_id, record.user_id, record,
        request=record.request,
        prompt=record.best_prompt or record.prompt,
        negative_prompt=record.negative_prompt,
        images=ranked,
        best_image=record.best or (ranked[0] if ranked else None),
        score=record.best_score if record.best_score is not None else record.critique.score,
        rounds=record.round + 1,
        critiques=[*record.critiques, record.critique],
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
    return result_of("failed", request_id, user_id, error=f"{stage}: {error}", request=request,
                     degraded=[Degraded(stage=stage, kind="stage_failed", detail=f"{stage} failed")])


def timed_out_result(request_id: str, user_id: str, stage: str, deadline_s: float) -> Optional[ResultRecord]:
    """The watchdog's `failed` result for a request that `stage` did not answer within the deadline."""
    reason = f"no answer from stage {stage} within {deadline_s:g} s (GAPSTREAM_REQUEST_DEADLINE_S)"
    result = failed_result({"request_id": request_id, "user_id": user_id}, stage, reason)
    if result is None:
        return None
    timed_out = Degraded(stage=stage, kind="timeout", detail=f"{stage} timed out")
    return result.model_copy(update={"degraded": [*result.degraded, timed_out]})
