"""The planner stage without a broker or Redis: requests, questions, answers, expiry and follow-ups (issue 6)."""

from __future__ import annotations

import pytest

from agents.learning import Turn
from agents.planner import HeuristicPlanner
from agents.planner_stage import KEEP_AFTER_S, ParentNotFound, PlannerStage
from schemas.records import GapsRecord, ImageRequest, ResultRecord
from schemas.questions import AnswerRecord, ClarificationRecord
from tests.unit.fakes import FakeMemoryStore, FakePendingQuestions

TIMEOUT_S = 60


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def stage():
    memory = FakeMemoryStore()
    pending = FakePendingQuestions()
    clock = Clock()
    planner = PlannerStage(HeuristicPlanner(memory), memory, pending, clarification_timeout_s=TIMEOUT_S, clock=clock)
    return planner, memory, pending, clock


def logo_request(user: str = "ann", request_id: str = "r1", allow_clarification: bool = True) -> ImageRequest:
    return ImageRequest(request_id=request_id, user_id=user, prompt="draw my logo on a coffee mug",
                        allow_clarification=allow_clarification)


async def test_a_request_memory_can_plan_becomes_gaps_only(stage):
    planner, _, pending, _ = stage
    [record] = await planner.on_request(ImageRequest(request_id="r0", user_id="ann", prompt="a red bicycle"))
    assert type(record) is GapsRecord and record.request.request_id == "r0"
    assert pending.questions == {}


async def test_an_unknown_logo_asks_once_and_waits_until_the_deadline(stage):
    planner, _, pending, clock = stage
    clarification, result = await planner.on_request(logo_request())
    assert type(clarification) is ClarificationRecord and "logo" in clarification.question
    assert type(result) is ResultRecord and result.status == "needs_clarification"
    assert result.question == clarification.question and result.expires_at == clarification.expires_at
    assert any(g.strategy == "ask" and g.status == "open" for g in result.gaps)
    status = await pending.peek("r1")
    assert status.state == "waiting" and status.waiting.request.request_id == "r1"
    assert pending.questions["r1"][1] == clock.now + TIMEOUT_S
    assert KEEP_AFTER_S >= 3600  # a late answer still learns what happened for a while


async def test_a_request_that_may_not_ask_leaves_the_logo_in_the_users_words(stage):
    planner, _, pending, _ = stage
    [record] = await planner.on_request(logo_request(allow_clarification=False))
    logo = next(g for g in record.gaps if g.subject == "logo")
    assert logo.status == "unfilled" and "nothing invented" in logo.reason
    assert pending.questions == {}


async def test_an_answer_in_time_resumes_the_request_and_is_remembered(stage):
    planner, memory, _, clock = stage
    await planner.on_request(logo_request())
    clock.now += TIMEOUT_S / 2
    [resumed] = await planner.on_answer(AnswerRecord(request_id="r1", user_id="ann", answer="a blue fox"))
    assert type(resumed) is GapsRecord
    assert resumed.clarification.answer == "a blue fox" and resumed.clarification.gap_id
    logo = next(g for g in resumed.gaps if g.subject == "logo")
    assert logo.status == "filled" and "blue fox" in logo.value
    [item] = [i for i in memory.data["ann"].values() if i.id == resumed.clarification.remembered]
    assert item in resumed.memory_written and item.source == "answer:r1"


async def test_an_answer_after_the_deadline_expires_the_request(stage):
    planner, memory, _, clock = stage
    await planner.on_request(logo_request())
    clock.now += TIMEOUT_S + 1
    [result] = await planner.on_answer(AnswerRecord(request_id="r1", user_id="ann", answer="a blue fox"))
    assert result.status == "expired" and "no answer within 60 s" in result.error
    assert result.request.request_id == "r1"
    assert "ann" not in memory.data  # a late answer teaches nothing


async def test_answers_nobody_asked_for_or_from_another_user_end_nothing(stage):
    planner, _, pending, _ = stage
    assert await planner.on_answer(AnswerRecord(request_id="nope", user_id="ann", answer="x")) is None
    await planner.on_request(logo_request())
    assert await planner.on_answer(AnswerRecord(request_id="r1", user_id="mallory", answer="x")) is None
    assert (await pending.peek("r1")).state == "waiting"


async def test_the_sweep_expires_a_question_once(stage):
    planner, _, _, clock = stage
    await planner.on_request(logo_request())
    assert await planner.due() == []
    clock.now += TIMEOUT_S + 1
    assert await planner.due() == ["r1"]
    result = await planner.expire("r1")
    assert result.status == "expired" and result.user_id == "ann" and result.question
    assert await planner.expire("r1") is None  # a second sweeper (or a redelivery) publishes nothing
    assert await planner.due() == []


async def test_a_follow_up_of_an_unknown_request_fails_without_retry(stage):
    planner, _, _, _ = stage
    with pytest.raises(ParentNotFound) as caught:
        await planner.on_request(ImageRequest(request_id="r2", user_id="ann", prompt="now in winter",
                                              parent_request_id="someone-elses"))
    assert caught.value.retriable is False


async def test_a_follow_up_starts_from_its_parents_prompt(stage):
    planner, memory, _, _ = stage
    turn = Turn(request_id="r1", prompt="a red bicycle in a park", final_prompt="a red bicycle in a park, sunny")
    await memory.put_turn("ann", "r1", turn.model_dump_json(), "2999-01-01T00:00:00+00:00")
    [record] = await planner.on_request(ImageRequest(request_id="r2", user_id="ann", prompt="now in winter",
                                                     parent_request_id="r1"))
    assert record.parent.request_id == "r1" and "bicycle" in record.base_prompt and "winter" in record.base_prompt
    assert record.request.prompt == "now in winter"  # the request itself is kept as the user wrote it
