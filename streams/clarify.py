"""Wiring of issue 6: the planner's requests and answers, follow-ups, learning from results, expiring questions
(the `gapstream answer` command is `cli.answer`).

Results of one request (see docs/design-notes.md, "Memory, loop and clarifications"): at most one
`needs_clarification` result (result-claim phase `clarification`) and exactly one final result (completed, failed
or expired: phase `final`), both through `infra.result_claims`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from datetime import datetime, timezone
from typing import Any, Optional

from agents.clarify import answer_item, question_for, settle
from agents.conversation import carry_parent, merge
from agents.learning import Turn, learn, turn_of
from infra import metrics
from schemas.records import (
    AnswerRecord,
    ClarificationAnswer,
    ClarificationRecord,
    Gap,
    GapsRecord,
    ImageRequest,
    ResultRecord,
    utc_now,
)
from schemas.topics import ANSWERS, CLARIFICATIONS, GAPS, REQUESTS, RESULTS

log = logging.getLogger("gapstream.clarify")
# How long a resolved question is kept after its deadline, so a late or redelivered answer learns what happened.
KEEP_AFTER_S = 24 * 3600


class ParentNotFound(ValueError):
    retriable = False


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat(timespec="milliseconds")


def pending_store(backends: Any) -> Any:
    from infra.redis_clarify import PendingQuestions

    return PendingQuestions(backends._redis, prefix=backends.settings.redis_namespace)


async def load_turn(memory: Any, user_id: str, request_id: str) -> Optional[Turn]:
    """The user's own earlier request; another user's id simply is not under this user's keys."""
    read = getattr(memory, "turn", None)
    if read is None:
        return None
    stored = await read(user_id, request_id)
    return Turn.model_validate_json(stored) if stored else None


def planner_handlers(backends: Any) -> list[tuple[Any, Any]]:
    from agents.planner import HeuristicPlanner
    from streams.pipeline import _count_gaps

    settings = backends.settings
    planner: Any = HeuristicPlanner(backends.memory, embedder=getattr(backends, 'embedder', None))
    if backends.llm is not None:
        from agents.llm_planner import LLMPlanner

        planner = LLMPlanner(backends.llm, backends.memory, planner, on_error=settings.llm_on_error)
    pending = pending_store(backends)

    async def plan_request(request: ImageRequest, allow_question: bool) -> tuple[GapsRecord, Optional[Gap]]:
        turn = None
        planning = request
        if request.parent_request_id:
            turn = await load_turn(backends.memory, request.user_id, request.parent_request_id)
            if turn is None:
                raise ParentNotFound(f"parent request {request.parent_request_id} not found for user "
                                     f"{request.user_id} (unknown, forgotten or expired)")
            planning = request.model_copy(update={"prompt": merge(turn.prompt, request.prompt)})
        record = await planner(planning)
        record.request = request
        if turn is not None:
            record.base_prompt = planning.prompt
            record.parent = turn.parent_ref()
            carry_parent(record, turn)
        return record, settle(record, allow_question)

    async def plan(request: ImageRequest):
        record, asked = await plan_request(request, request.allow_clarification)
        _count_gaps(record.gaps, "planned")
        if asked is None:
            return [(GAPS, record)]
        deadline = time.time() + settings.clarification_timeout_s
        question = question_for(asked)
        data = json.dumps({"request": request.model_dump(mode="json"), "gap": asked.model_dump(mode="json"),
                           "question": question})
        await pending.put(request.request_id, request.user_id, deadline, data, KEEP_AFTER_S)
        # The StageProcessor publishes results through the result claims (phase `clarification` here), so a
        # redelivered request cannot ask twice.
        expires_at = _iso(deadline)
        clarification = ClarificationRecord(request_id=request.request_id, user_id=request.user_id, gap_id=asked.id,
                                            subject=asked.subject, question=question, expires_at=expires_at)
        result = ResultRecord(request_id=request.request_id, user_id=request.user_id, status="needs_clarification",
                              question=question, expires_at=expires_at, gaps=record.gaps, checklist=record.checklist,
                              memory_used=record.memory_used, memory_written=record.memory_written,
                              timings=record.timings, degraded=record.degraded, llm_calls=record.llm_calls,
                              request=request, base_prompt=record.base_prompt, parent=record.parent)
        metrics.RESULTS.labels(result.status).inc()
        return [(CLARIFICATIONS, clarification), (RESULTS, result)]

    async def answer(record: AnswerRecord):
        seen = await pending.peek(record.request_id)
        if seen is None:
            # Never asked (or long forgotten): this answer must not end a request that may still be running.
            log.warning("answer for %s ignored: no question is waiting for it", record.request_id)
            return None
        if seen[1] != record.user_id:
            # Someone else's answer must neither resume nor fail this request: dropped, and said so in the log.
            log.warning("answer for %s from user %s ignored: the request belongs to another user",
                        record.request_id, record.user_id)
            return None
        resolved = await pending.resolve(record.request_id, "answered")
        if resolved is None or resolved[1] == "expired":
            return await expired_result(record.request_id, record.user_id, resolved)
        stored = json.loads(resolved[3])
        request = ImageRequest.model_validate(stored["request"])
        gap = Gap.model_validate(stored["gap"])
        item = answer_item(gap, record.answer, record.request_id, record.answered_at)
        await backends.memory.add(record.user_id, [item])  # idempotent: the id derives from request and answer
        planned, _ = await plan_request(request, allow_question=False)
        planned.clarification = ClarificationAnswer(gap_id=gap.id, subject=gap.subject, question=stored["question"],
                                                    answer=record.answer, remembered=item.id)
        planned.memory_written = [*planned.memory_written, item]
        _count_gaps(planned.gaps, "planned")
        return [(GAPS, planned)]

    async def expired_result(request_id: str, user_id: str, resolved: Optional[tuple]) -> Any:
        metrics.RESULTS.labels("expired").inc()  # claimed (phase `final`) by the StageProcessor around the send
        return [(RESULTS, expired(request_id, user_id, resolved, settings.clarification_timeout_s))]

    return [(REQUESTS, plan), (ANSWERS, answer)]


def expired(request_id: str, user_id: str, resolved: Optional[tuple], timeout_s: int) -> ResultRecord:
    request = question = None
    if resolved is not None:
        user_id = resolved[2]
        stored = json.loads(resolved[3])
        request = ImageRequest.model_validate(stored["request"])
        question = stored["question"]
        error = f"no answer within {timeout_s} s to: {question}"
    else:
        error = "no question is waiting for this request (never asked, or expired and forgotten)"
    return ResultRecord(request_id=request_id, user_id=user_id, status="expired", error=error, question=question,
                        request=request)


async def sweep(backends: Any, send: Any, stop: asyncio.Event, results_log: Any = None) -> None:
    """Expire questions past their deadline, every `clarification_sweep_s`; runs beside the planner stage. Any
    number of planner workers may sweep: the state change is atomic, and only the one that made it publishes."""
    from infra.result_claims import phase_of, publish_once
    from streams.stages import encode

    settings = backends.settings
    pending = pending_store(backends)
    while not stop.is_set():
        try:
            for request_id in await pending.due():
                resolved = await pending.resolve(request_id, "expired")
                if resolved is None or resolved[0] != "waiting":
                    continue
                result = expired(request_id, resolved[2], resolved, settings.clarification_timeout_s)

                async def publish(result: ResultRecord = result) -> None:
                    await send(RESULTS, result.request_id, encode(result))

                # The same claim as every final result: a completed or failed result and `expired` exclude each other.
                if await publish_once(backends.claims, request_id, publish, phase_of("expired"), results=results_log):
                    metrics.RESULTS.labels("expired").inc()
        except Exception as exc:  # Redis or broker trouble: try again on the next tick
            log.warning("clarification sweep failed: %s: %s", type(exc).__name__, exc)
        try:
            await asyncio.wait_for(stop.wait(), settings.clarification_sweep_s)
        except asyncio.TimeoutError:
            pass


async def remember_result(backends: Any, result: ResultRecord) -> None:
    """Teach memory what a final result shows; failures here never hold back the result itself."""
    settings = backends.settings
    try:
        items = learn(result, settings.memory_history_ttl_s)
        if items:
            await backends.memory.add(result.user_id, items)
        turn = turn_of(result)
        put_turn = getattr(backends.memory, "put_turn", None)
        if turn is not None and put_turn is not None:
            expires = items[0].expires_at if items else utc_now()
            await put_turn(result.user_id, result.request_id, turn.model_dump_json(), expires)
    except Exception as exc:
        log.warning("could not remember result %s: %s: %s", result.request_id, type(exc).__name__, exc)
        result.degraded.append(f"memory: result not remembered: {type(exc).__name__}")
