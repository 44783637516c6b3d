"""The planner stage as the pipeline sees it (issue 6): a request, or a follow-up of an earlier one, becomes gaps or
a question for its user; an answer resumes the request; a question nobody answered in time becomes `expired`.

Results of one request (see docs/design-notes.md, "Memory, loop and clarifications"): at most one
`needs_clarification` result and exactly one final result (completed, failed or expired). The wiring publishes
every result through the result claims, so a redelivered request cannot ask twice and a late answer cannot finish
a request the expiry sweep has already ended.

Only ports are used here (`MemoryStore`, `PendingQuestions`), so the stage reads top to bottom and tests without
Redis or a broker.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timezone
from typing import Awaitable, Callable, Optional, Union

from agents.clarify import answer_item, question_for, settle
from agents.conversation import carry_parent, merge
from agents.learning import Turn
from agents.ports import MemoryStore, PendingQuestions, QuestionStatus, WaitingQuestion
from agents.publisher import result_of
from schemas.records import (
    ClarificationAnswer,
    Gap,
    GapsRecord,
    ImageRequest,
    ResultRecord,
)
from schemas.questions import AnswerRecord, ClarificationRecord

log = logging.getLogger("gapstream.planner")

# How long a resolved question is kept after its deadline, so a late or redelivered answer learns what happened.
KEEP_AFTER_S = 24 * 3600

Planner = Callable[[ImageRequest], Awaitable[GapsRecord]]
PlannerOutput = Union[GapsRecord, ClarificationRecord, ResultRecord]


class ParentNotFound(ValueError):
    """A follow-up names a request this user never made (or whose turn has expired): the request fails."""

    retriable = False


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat(timespec="milliseconds")


class PlannerStage:
    """`await stage.on_request(request)`, `await stage.on_answer(answer)`, `await stage.expire(request_id)`."""

    def __init__(self, planner: Planner, memory: MemoryStore, pending: PendingQuestions, *,
                 clarification_timeout_s: int, clock: Callable[[], float] = time.time) -> None:
        self.planner = planner
        self.memory = memory
        self.pending = pending
        self.clarification_timeout_s = clarification_timeout_s
        self.clock = clock

    async def on_request(self, request: ImageRequest) -> list[PlannerOutput]:
        """Gaps for the searcher; or, when the request allows a question and memory cannot fill a gap, the question
        on `clarifications` and a `needs_clarification` result, with the request kept until the deadline."""
        record, asked = await self._plan(request, allow_question=request.allow_clarification)
        if asked is None:
            return [record]
        deadline = self.clock() + self.clarification_timeout_s
        waiting = WaitingQuestion(request=request, gap=asked, question=question_for(asked))
        await self.pending.put(waiting, deadline, KEEP_AFTER_S)
        return [self._clarification(waiting, deadline), self._needs_clarification(record, waiting, deadline)]

    async def on_answer(self, answer: AnswerRecord) -> Optional[list[PlannerOutput]]:
        """The resumed request's gaps, with the answer remembered; `expired` when it came too late; nothing for an
        answer nobody asked for, or one from another user (neither may end a request that may still be running)."""
        seen = await self.pending.peek(answer.request_id)
        if seen is None:
            log.warning("answer for %s ignored: no question is waiting for it", answer.request_id)
            return None
        if seen.user_id != answer.user_id:
            log.warning("answer for %s from user %s ignored: the request belongs to another user",
                        answer.request_id, answer.user_id)
            return None
        resolved = await self.pending.resolve(answer.request_id, "answered", self.clock())
        if resolved is None or resolved.state == "expired":
            return [expired_result(answer.request_id, answer.user_id, resolved, self.clarification_timeout_s)]
        waiting = resolved.waiting
        item = answer_item(waiting.gap, answer.answer, answer.request_id, answer.answered_at)
        await self.memory.add(answer.user_id, [item])  # idempotent: the id derives from request and answer
        planned, _ = await self._plan(waiting.request, allow_question=False)
        planned = planned.model_copy(update={
            "clarification": ClarificationAnswer(gap_id=waiting.gap.id, subject=waiting.gap.subject,
                                                 question=waiting.question, answer=answer.answer, remembered=item.id),
            "memory_written": [*planned.memory_written, item],
        })
        return [planned]

    async def due(self) -> list[str]:
        """Requests whose question is past its deadline."""
        return await self.pending.due(self.clock())

    async def expire(self, request_id: str) -> Optional[ResultRecord]:
        """The `expired` result of a question past its deadline, if this call is the one that expired it (any
        number of planners may sweep; the state change is atomic)."""
        resolved = await self.pending.resolve(request_id, "expired", self.clock())
        if resolved is None or resolved.previous != "waiting":
            return None
        return expired_result(request_id, resolved.user_id, resolved, self.clarification_timeout_s)

    # The steps ------------------------------------------------------------------------------------------------

    async def _plan(self, request: ImageRequest, allow_question: bool) -> tuple[GapsRecord, Optional[Gap]]:
        """Plan the request (a follow-up from its parent's merged prompt); then settle what memory left unknown."""
        turn = await self._parent_turn(request)
        planning = request
        if turn is not None:
            planning = request.model_copy(update={"prompt": merge(turn.prompt, request.prompt)})
        record = await self.planner(planning)
        record = record.model_copy(update={"request": request})
        if turn is not None:
            record = carry_parent(record.model_copy(update={"base_prompt": planning.prompt,
                                                            "parent": turn.parent_ref()}), turn)
        return settle(record, allow_question)

    async def _parent_turn(self, request: ImageRequest) -> Optional[Turn]:
        if not request.parent_request_id:
            return None
        stored = await self.memory.turn(request.user_id, request.parent_request_id)
        if not stored:
            raise ParentNotFound(f"parent request {request.parent_request_id} not found for user "
                                 f"{request.user_id} (unknown, forgotten or expired)")
        return Turn.model_validate_json(stored)

    @staticmethod
    def _clarification(waiting: WaitingQuestion, deadline: float) -> ClarificationRecord:
        request = waiting.request
        return ClarificationRecord(request_id=request.request_id, user_id=request.user_id, gap_id=waiting.gap.id,
                                   subject=waiting.gap.subject, question=waiting.question, expires_at=_iso(deadline))

    @staticmethod
    def _needs_clarification(record: GapsRecord, waiting: WaitingQuestion, deadline: float) -> ResultRecord:
        """The plan so far (gaps, checklist, memory, trace) and the question, as the request's first result."""
        return result_of("needs_clarification", record.request_id, record.user_id, record,
                         question=waiting.question, expires_at=_iso(deadline))


def expired_result(request_id: str, user_id: str, resolved: Optional[QuestionStatus], timeout_s: int) -> ResultRecord:
    """The final result of a request whose question went unanswered (or was never asked, for a stray answer)."""
    if resolved is None:
        return result_of("expired", request_id, user_id,
                         error="no question is waiting for this request (never asked, or expired and forgotten)")
    waiting = resolved.waiting
    return result_of("expired", request_id, resolved.user_id, error=f"no answer within {timeout_s} s to: "
                     f"{waiting.question}", question=waiting.question, request=waiting.request)

