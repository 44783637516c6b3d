"""`infra.redis_clarify.RedisPendingQuestions` on the real Redis: typed statuses, one question per request, and one
outcome when an answer and the expiry sweep race at the deadline."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from agents.ports import PendingQuestions, WaitingQuestion
from infra.redis_clarify import RedisPendingQuestions
from schemas.records import Gap, ImageRequest


def waiting(request_id: str = "q1", user: str = "ann") -> WaitingQuestion:
    request = ImageRequest(request_id=request_id, user_id=user, prompt="draw my logo", allow_clarification=True)
    gap = Gap(id="g1", kind="memory", description="the user's logo", strategy="ask", subject="logo")
    return WaitingQuestion(request=request, gap=gap, question="What is your logo?")


async def test_a_question_waits_typed_and_is_asked_once(client, prefix):
    pending = RedisPendingQuestions(client, prefix=prefix)
    assert isinstance(pending, PendingQuestions)
    deadline = time.time() + 30
    question = waiting()
    assert await pending.put(question, deadline, keep_s=60) is True
    assert await pending.put(question, deadline, keep_s=60) is False  # a redelivered request asks nothing again
    status = await pending.peek("q1")
    assert status.state == "waiting" and status.user_id == "ann" and status.previous is None
    assert status.waiting == question
    assert await pending.peek("unknown") is None
    assert 30 < await client.ttl(f"{prefix}clarify:q1") <= 91


async def test_resolving_says_what_it_was_and_keeps_the_first_outcome(client, prefix):
    pending = RedisPendingQuestions(client, prefix=prefix)
    await pending.put(waiting(), time.time() + 30, keep_s=60)
    answered = await pending.resolve("q1", "answered")
    assert (answered.previous, answered.state) == ("waiting", "answered")
    again = await pending.resolve("q1", "expired")
    assert (again.previous, again.state) == ("answered", "answered")
    assert await pending.due(time.time() + 3600) == []


async def test_an_answer_and_the_sweep_at_the_deadline_agree_on_one_outcome(client, prefix):
    pending = RedisPendingQuestions(client, prefix=prefix)
    for i in range(20):
        await pending.put(waiting(f"race{i}"), time.time() + 0.05, keep_s=60)
    await asyncio.sleep(0.1)
    due = await pending.due()
    assert sorted(due) == sorted(f"race{i}" for i in range(20))
    outcomes = await asyncio.gather(*(pending.resolve(rid, wanted) for rid in due
                                      for wanted in ("answered", "expired")))
    moved = [o for o in outcomes if o.previous == "waiting"]
    assert len(moved) == 20  # exactly one of the two racers moved each question out of waiting
    assert {o.state for o in outcomes} == {"expired"}  # an answer after the deadline expires it


async def test_a_question_stored_by_an_older_planner_still_resumes(client, prefix):
    """Before the port was typed the planner stored the same JSON document; a rolling upgrade must read it."""
    old = waiting("old1")
    data = json.dumps({"request": old.request.model_dump(mode="json"), "gap": old.gap.model_dump(mode="json"),
                       "question": old.question})
    await client.hset(f"{prefix}clarify:old1", mapping={"state": "waiting", "user_id": "ann",
                                                         "deadline": time.time() + 30, "data": data})
    status = await RedisPendingQuestions(client, prefix=prefix).peek("old1")
    assert status.waiting == old


@pytest.mark.parametrize("bad", ["", "has space", "x" * 200])
async def test_a_bad_request_id_is_refused_before_redis_is_asked(client, prefix, bad):
    with pytest.raises(ValueError):
        await RedisPendingQuestions(client, prefix=prefix).peek(bad)
