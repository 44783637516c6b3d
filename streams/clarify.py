"""Wiring of issue 6: the planner's requests and answers, follow-ups, learning from results, expiring questions,
and the `gapstream answer` command.

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

import click

from agents.clarify import answer_item, question_for, settle
from agents.conversation import carry_parent, merge
from agents.learning import Turn, learn, turn_of
from agents.publisher import result_of
from infra import metrics
from schemas.records import (
    AnswerRecord,
    ClarificationAnswer,
    ClarificationRecord,
    Degraded,
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
        record = (await planner(planning)).model_copy(update={"request": request})
        if turn is not None:
            record = carry_parent(record.model_copy(update={"base_prompt": planning.prompt,
                                                            "parent": turn.parent_ref()}), turn)
        return settle(record, allow_question)

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
        result = result_of("needs_clarification", request.request_id, request.user_id, record, request=request,
                           question=question, expires_at=expires_at)
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
        planned = planned.model_copy(update={
            "clarification": ClarificationAnswer(gap_id=gap.id, subject=gap.subject, question=stored["question"],
                                                 answer=record.answer, remembered=item.id),
            "memory_written": [*planned.memory_written, item]})
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
    return result_of("expired", request_id, user_id, error=error, question=question, request=request)


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


async def remember_result(backends: Any, result: ResultRecord) -> ResultRecord:
    """Teach memory what a final result shows; failures here never hold back the result itself (it says so)."""
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
        return result.model_copy(update={"degraded": [*result.degraded, Degraded(
            stage="publisher", kind="not_remembered", detail=f"memory: result not remembered: {type(exc).__name__}")]})
    return result


async def publish_answer(bootstrap: str, settings: Any, answer: AnswerRecord,
                         timeout_s: Optional[float]) -> Optional[ResultRecord]:
    """Publish one answer; with a timeout, wait for the request's next result."""
    from streams.client import publish_and_wait

    return await publish_and_wait(bootstrap, settings, ANSWERS.name(settings.topic_prefix), answer.request_id,
                                  answer.model_dump_json().encode(), timeout_s)


@click.command("answer")
@click.argument("request_id")
@click.argument("text")
@click.option("--user", "-u", required=True, help="Who asked the request (must be its user).")
@click.option("--timeout", "timeout_s", type=float, default=300.0, show_default=True)
@click.option("--no-wait", is_flag=True, help="Publish the answer and return (deployments only).")
@click.option("--json", "as_json", is_flag=True, help="Print the result record as JSON, and nothing else.")
@click.pass_obj
def answer_command(settings: Any, request_id: str, text: str, user: str, timeout_s: float, no_wait: bool,
                   as_json: bool) -> None:
    """Answer the question a request asked (status needs_clarification); the same request resumes."""
    import sys

    from pydantic import ValidationError

    from streams.cli import CliError, _bootstrap, _print_result, _redis_url
    from streams.stages import describe_validation_error

    try:
        record = AnswerRecord(request_id=request_id, user_id=user, answer=text)
    except ValidationError as exc:
        raise CliError(f"invalid answer: {describe_validation_error(exc)}") from None

    async def local() -> Optional[ResultRecord]:
        from streams.backends import STAGES
        from streams.pipeline import Worker

        async with _bootstrap(settings) as bootstrap, _redis_url(settings) as redis_url:
            async with Worker(settings, bootstrap, redis_url, STAGES):
                return await publish_answer(bootstrap, settings, record, timeout_s)

    async def check() -> None:
        # Say so at once rather than wait out the timeout: the planner ignores answers nobody asked for.
        from infra.redis_clarify import PendingQuestions
        import redis.asyncio as aioredis

        async with _redis_url(settings) as url:
            client = aioredis.Redis.from_url(url)
            try:
                seen = await PendingQuestions(client, prefix=settings.redis_namespace).peek(request_id)
            finally:
                await client.aclose()
        if seen is None:
            raise CliError(f"no question is waiting for request {request_id}")
        if seen[1] != user:
            raise CliError(f"request {request_id} belongs to another user")

    if settings.local_mode or settings.redis_url:
        asyncio.run(check())
    if settings.local_mode:
        result = asyncio.run(local())
    else:
        result = asyncio.run(publish_answer(settings.kafka_bootstrap, settings, record,
                                            None if no_wait else timeout_s))
    if result is None:
        click.echo(json.dumps({"request_id": request_id}) if as_json else f"answer for {request_id} published")
        return
    _print_result(result, as_json)
    sys.exit(0 if result.status in ("completed", "needs_clarification") else 1)
