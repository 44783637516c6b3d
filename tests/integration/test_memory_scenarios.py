"""The memory scenarios data file (tests/data/memory-scenarios.json) against the real Redis: every expected word
reaches the enriched prompt, and no other user's item does, also with every user planning at once."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from agents.memory import items_from_user_text
from infra.redis_memory import RedisMemoryStore
from tests.integration.memory_helpers import accept, enrich

pytestmark = pytest.mark.integration

DATA = json.loads((Path(__file__).parents[1] / "data" / "memory-scenarios.json").read_text())
SCENARIOS = DATA["scenarios"]


@pytest.fixture
async def store(redis_url):
    client = aioredis.Redis.from_url(redis_url)
    prefix = f"gapstream-test-{uuid.uuid4().hex}:"
    yield RedisMemoryStore(client, prefix=prefix)
    keys = [key async for key in client.scan_iter(match=f"{prefix}*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


async def _prepare(store, user: str, scenario: dict, tag: str) -> None:
    for statement in scenario["statements"]:
        await store.add(user, items_from_user_text(statement))
    for i, previous in enumerate(scenario.get("previous", [])):
        await accept(store, await enrich(store, user, previous, f"prev-{tag}-{i}"))


async def _others(store, suffix: str) -> None:
    for name, statements in DATA["other_users"].items():
        for statement in statements:
            await store.add(f"{name}-{suffix}", items_from_user_text(statement))


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s["name"] for s in SCENARIOS])
async def test_memory_scenario(store, scenario):
    suffix = uuid.uuid4().hex[:8]
    user = f"alice-{suffix}"
    await _others(store, suffix)
    await _prepare(store, user, scenario, suffix)
    record = await enrich(store, user, scenario["request"], f"req-{suffix}")
    prompt = record.prompt.lower()
    for word in scenario["expect"]:
        assert word.lower() in prompt, (word, record.prompt)
    for word in scenario["forbid"]:
        assert word.lower() not in prompt, (word, record.prompt)
    own = {i.id for i in await store.items(user)}
    assert {item.id for item in record.memory_used} <= own


async def test_every_scenario_at_once_keeps_users_apart(store):
    # Each scenario gets its own user; all plan concurrently while the other users' memories are in the same Redis.
    suffix = uuid.uuid4().hex[:8]
    await _others(store, suffix)
    users = [f"u{i}-{suffix}" for i in range(len(SCENARIOS))]
    await asyncio.gather(*(_prepare(store, u, s, f"{suffix}-{i}") for i, (u, s) in enumerate(zip(users, SCENARIOS))))
    records = await asyncio.gather(*(
        enrich(store, u, s["request"], f"req-{suffix}-{i}-{n}")
        for n in range(5) for i, (u, s) in enumerate(zip(users, SCENARIOS))
    ))
    for n, record in enumerate(records):
        scenario = SCENARIOS[n % len(SCENARIOS)]
        prompt = record.prompt.lower()
        assert all(w.lower() in prompt for w in scenario["expect"]), (scenario["name"], record.prompt)
        assert not any(w.lower() in prompt for w in scenario["forbid"]), (scenario["name"], record.prompt)
        own = {i.id for i in await store.items(record.user_id)}
        assert {i.id for i in record.memory_used} <= own
