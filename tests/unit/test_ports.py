"""The ports' promises: every adapter and every stand-in the tests use fits its port (a port that grows a method
fails here first), the fakes keep the ports' rules, and errors carry whether a retry may help."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from agents.ports import (
    Embedder,
    GenerationJob,
    ImageStore,
    LLMError,
    MemoryStore,
    PendingQuestions,
    SearchBackend,
    SearchError,
    VectorStore,
    WaitingQuestion,
)
from infra.image_store import FilesystemImageStore
from infra.redis_clarify import RedisPendingQuestions
from infra.redis_memory import RedisMemoryStore
from schemas.records import Gap, ImageRequest
from tests.unit.fakes import FakeBackend, FakeEmbedder, FakeImageStore, FakeMemoryStore, FakePendingQuestions


@pytest.fixture
def client():
    return aioredis.Redis.from_url("redis://127.0.0.1:9/0")  # never asked anything: only the shapes are checked


def test_the_redis_adapters_fit_their_ports(client):
    memory = RedisMemoryStore(client, prefix="t:")
    assert isinstance(memory, MemoryStore) and isinstance(memory, VectorStore)
    assert isinstance(RedisPendingQuestions(client, prefix="t:"), PendingQuestions)


def test_the_stand_ins_fit_the_ports_the_stages_take(tmp_path):
    assert isinstance(FakeMemoryStore(), MemoryStore) and isinstance(FakeMemoryStore(), VectorStore)
    assert isinstance(FakePendingQuestions(), PendingQuestions)
    assert isinstance(FakeEmbedder(), Embedder)
    assert isinstance(FakeImageStore(), ImageStore) and isinstance(FilesystemImageStore(tmp_path), ImageStore)
    assert isinstance(FakeBackend("corpus"), SearchBackend)


def test_something_missing_a_method_is_no_memory_store():
    class ItemsOnly:
        async def items(self, user_id):
            return []

    assert not isinstance(ItemsOnly(), MemoryStore)


async def test_the_fake_memory_keeps_the_first_turn_of_a_request_as_the_port_says():
    store = FakeMemoryStore()
    assert await store.put_turn("ann", "r1", '{"prompt": "x"}', "2999-01-01T00:00:00+00:00") is True
    assert await store.put_turn("ann", "r1", '{"prompt": "y"}', "2999-01-01T00:00:00+00:00") is False
    assert await store.turn("ann", "r1") == '{"prompt": "x"}' and await store.turn("bob", "r1") is None


async def test_the_fake_pending_questions_ask_once_and_expire_a_late_answer():
    request = ImageRequest(request_id="r1", user_id="ann", prompt="draw my logo", allow_clarification=True)
    waiting = WaitingQuestion(request=request, gap=Gap(id="g1", kind="memory", description="logo", strategy="ask"),
                              question="What is your logo?")
    pending = FakePendingQuestions()
    assert await pending.put(waiting, deadline=100.0, keep_s=60) is True
    assert await pending.put(waiting, deadline=100.0, keep_s=60) is False
    late = await pending.resolve("r1", "answered", now=101.0)
    assert (late.previous, late.state) == ("waiting", "expired")


def test_errors_say_whether_trying_again_may_help():
    assert SearchError("429", retriable=True, kind="rate_limited").retriable is True
    assert LLMError("bad json", retriable=False, kind="invalid_output").retriable is False


def test_jobs_that_differ_only_in_prompt_and_seed_share_a_batch():
    one = GenerationJob("a cat", "", 64, 64, 4, 7.5, seed=1)
    other = GenerationJob("a dog", "blurry", 64, 64, 4, 7.5, seed=2)
    assert one.batch_key() == other.batch_key()
    assert one.batch_key() != GenerationJob("a cat", "", 64, 128, 4, 7.5, seed=1).batch_key()
