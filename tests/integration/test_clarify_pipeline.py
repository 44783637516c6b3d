"""Clarifying questions, follow-ups, learning and drafts through every stage on a real broker and the real Redis."""

from __future__ import annotations

import asyncio
import uuid

import pytest
import pytest_asyncio

from agents.memory import items_from_user_text
from infra.redis_memory import RedisMemoryStore
from schemas.records import ImageRequest
from schemas.questions import AnswerRecord
from streams.client import publish_request
from tests.integration.kafka_tools import isolated_settings, read_topic, running_pipeline

pytestmark = pytest.mark.asyncio(loop_scope="module")
TIMEOUT_S = 15


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def pipeline(broker, redis_url, tmp_path_factory):
    settings = isolated_settings(tmp_path_factory.mktemp("home"), "cl",
                                 GAPSTREAM_CLARIFICATION_TIMEOUT_S=str(TIMEOUT_S),
                                 GAPSTREAM_CLARIFICATION_SWEEP_S="0.2")
    async with running_pipeline(settings, broker.bootstrap, redis_url) as (watcher, producer):
        yield settings, watcher, producer


@pytest_asyncio.fixture(loop_scope="module")
async def store(redis_url, pipeline):
    store = RedisMemoryStore.from_url(redis_url, prefix=pipeline[0].redis_namespace)  # the deployment's memory
    users: list[str] = []
    yield store, users
    for user in users:
        await store.forget(user)
    await store.aclose()


async def _submit(pipeline, prompt: str, user: str, **fields):
    settings, watcher, producer = pipeline
    request = ImageRequest(request_id=f"r-{uuid.uuid4().hex[:10]}", user_id=user, prompt=prompt, **fields)
    await publish_request(producer, settings, request)
    return await watcher.wait(request.request_id, timeout_s=90)


async def _answer(pipeline, request_id: str, user: str, text: str):
    settings, _, producer = pipeline
    answer = AnswerRecord(request_id=request_id, user_id=user, answer=text)
    await producer.send_and_wait(settings.topic("answers"), key=request_id.encode(),
                                 value=answer.model_dump_json().encode())


async def test_a_question_is_asked_answered_and_the_same_request_resumes(pipeline, broker, store, unique):
    memory, users = store
    user = f"alice-{unique}"
    users.append(user)
    asked = await _submit(pipeline, "draw my logo on a coffee mug", user, allow_clarification=True)
    assert asked.status == "needs_clarification"
    assert "logo" in asked.question and asked.expires_at
    questions = await read_topic(broker.bootstrap, pipeline[0].topic("clarifications"))
    assert [q["question"] for q in questions if q["request_id"] == asked.request_id] == [asked.question]

    await _answer(pipeline, asked.request_id, user, "a blue fox in a circle")
    done = await pipeline[1].wait(asked.request_id, timeout_s=90)
    assert done.status == "completed", done.error
    assert "blue fox" in done.prompt.lower()
    assert done.clarification.answer == "a blue fox in a circle"
    remembered = {i.id: i for i in await memory.items(user)}
    assert remembered[done.clarification.remembered].source == f"answer:{asked.request_id}"

    again = await _submit(pipeline, "my logo on a tote bag", user, allow_clarification=True)
    assert again.status == "completed" and "blue fox" in again.prompt.lower()  # remembered: no second question
    results = await read_topic(broker.bootstrap, pipeline[0].topic("results"))
    statuses = [r["status"] for r in results if r["request_id"] == asked.request_id]
    assert statuses == ["needs_clarification", "completed"]


async def test_an_answer_nobody_asked_for_does_not_end_a_request(pipeline, unique):
    settings, watcher, producer = pipeline
    user = f"gus-{unique}"
    request = ImageRequest(request_id=f"r-{uuid.uuid4().hex[:10]}", user_id=user, prompt="a red kite over a beach")
    await publish_request(producer, settings, request)
    await _answer(pipeline, request.request_id, user, "a fox")  # no question was asked: ignored
    result = await watcher.wait(request.request_id, timeout_s=90)
    assert result.status == "completed"


async def test_without_permission_nothing_is_invented_and_the_reason_is_recorded(pipeline, unique):
    """Issue 15: an unknown logo is no longer filled with "a simple logo"; it stays the user's own words."""
    result = await _submit(pipeline, "draw my logo on a coffee mug", f"bob-{unique}")
    assert result.status == "completed"
    logo = next(g for g in result.gaps if g.subject == "logo")
    assert logo.status == "unfilled" and logo.value is None and logo.source is None
    assert "clarification not allowed" in logo.reason and "nothing invented" in logo.reason
    assert "a simple" not in result.prompt and "my logo" in result.prompt


async def test_an_unanswered_question_expires_and_another_users_answer_is_ignored(pipeline, broker, unique):
    user = f"carol-{unique}"
    asked = await _submit(pipeline, "our mascot waving", user, allow_clarification=True)
    assert asked.status == "needs_clarification"
    await _answer(pipeline, asked.request_id, f"mallory-{unique}", "a red devil")  # not carol's to answer
    expired = await pipeline[1].wait(asked.request_id, timeout_s=TIMEOUT_S + 60)
    assert expired.status == "expired"
    assert "no answer within" in expired.error and asked.question in expired.error
    await _answer(pipeline, asked.request_id, user, "a green frog")  # too late: nothing resumes
    await asyncio.sleep(2)
    results = await read_topic(broker.bootstrap, pipeline[0].topic("results"))
    assert [r["status"] for r in results if r["request_id"] == asked.request_id] == ["needs_clarification", "expired"]


async def test_a_follow_up_keeps_what_it_does_not_change(pipeline, store, unique):
    memory, users = store
    user = f"dana-{unique}"
    users.append(user)
    await memory.add(user, items_from_user_text("my dog Max is a corgi"))
    first = await _submit(pipeline, "my dog Max in a snowy forest in summer", user)
    assert first.status == "completed"
    follow = await _submit(pipeline, "now in winter", user, parent_request_id=first.request_id)
    assert follow.status == "completed", follow.error
    prompt = follow.prompt.lower()
    assert "winter" in prompt and "summer" not in prompt and "forest" in prompt and "corgi" in prompt
    assert follow.parent.request_id == first.request_id and follow.parent.image_uri == first.best_image.uri
    second = await _submit(pipeline, "add a second dog", user, parent_request_id=follow.request_id)
    assert "second dog" in second.prompt.lower() and "winter" in second.prompt.lower()

    stranger = await _submit(pipeline, "make the sky darker", f"eve-{unique}", parent_request_id=first.request_id)
    assert stranger.status == "failed" and "not found" in stranger.error


async def test_like_last_time_and_drafts(pipeline, store, unique):
    memory, users = store
    user = f"fred-{unique}"
    users.append(user)
    await memory.add(user, items_from_user_text("my dog Max is a corgi"))
    first = await _submit(pipeline, "Max on a skateboard in pixel art", user, drafts=3, max_rounds=2,
                          accept_score=1.0)
    assert first.status == "completed"
    assert len(first.critiques[0].drafts) == 3
    assert first.score == max(d.score for c in first.critiques for d in c.drafts)
    assert first.critiques[-1].stop_reason
    history = [i for i in await memory.items(user) if i.kind == "history"]
    assert [h.request_id for h in history] == [first.request_id] and history[0].image_uri == first.best_image.uri

    again = await _submit(pipeline, "draw Max like last time", user)
    prompt = again.prompt.lower()
    assert "pixel art" in prompt and "skateboard" in prompt and "corgi" in prompt
    assert any(item.kind == "history" for item in again.memory_used)
