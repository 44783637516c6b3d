"""Learning memory on the real Redis: complete forgetting, capped expiring history, idempotent writes, isolation."""

from __future__ import annotations

import asyncio

import pytest

from agents.learning import learn, turn_of
from agents.memory import items_from_user_text
from infra.redis_memory import RedisMemoryStore
from schemas.records import MemoryItem
from tests.integration.memory_helpers import accept, enrich

pytestmark = pytest.mark.integration


async def _keys(client, pattern: str) -> list[bytes]:
    return [key async for key in client.scan_iter(match=pattern)]


async def _learned_user(store, user: str, n: int = 2) -> list:
    await store.add(user, items_from_user_text("my dog Max is a corgi"))
    results = []
    for i in range(n):
        record = await enrich(store, user, f"Max on a skateboard number {i} in pixel art, my bike is a red fixie",
                              f"r-{user}-{i}")
        result = await accept(store, record)
        await store.put_turn(user, result.request_id, turn_of(result).model_dump_json(), "2999-01-01T00:00:00+00:00")
        results.append(result)
    return results


async def test_forget_all_leaves_nothing_of_the_user_in_redis(client, prefix):
    store = RedisMemoryStore(client, prefix=prefix, ttl_s=3600)
    await _learned_user(store, "alice")
    await _learned_user(store, "bob")
    kinds = {item.kind for item in await store.items("alice")}
    assert kinds == {"fact", "preference", "entity", "history"}
    assert await _keys(client, f"{prefix}mem:alice:*")
    count = len(await store.items("alice"))
    removed = await store.forget("alice")
    assert removed == count
    assert await _keys(client, f"{prefix}*alice*") == []  # a scan of everything under the prefix
    assert await store.items("alice") == [] and await store.turn("alice", "r-alice-0") is None
    assert len(await store.items("bob")) == removed and await store.turn("bob", "r-bob-0") is not None


async def test_forget_one_history_item_takes_its_conversation_turn(client, prefix):
    store = RedisMemoryStore(client, prefix=prefix)
    results = await _learned_user(store, "alice")
    history = [i for i in await store.items("alice") if i.kind == "history"]
    target = next(h for h in history if h.request_id == results[0].request_id)
    assert await store.forget("alice", target.id) == 1
    assert await store.turn("alice", results[0].request_id) is None
    assert await store.turn("alice", results[1].request_id) is not None
    ids = {i.id for i in await store.items("alice")}
    assert target.id not in ids
    raw = b"".join([k + v for k, v in (await client.hgetall(f"{prefix}mem:alice:items")).items()])
    assert target.id.encode() not in raw and target.id.encode() not in b"".join(
        await client.zrange(f"{prefix}mem:alice:hist", 0, -1))
    for item_id in ids:  # one by one until nothing is left: then no key remains either
        await store.forget("alice", item_id)
    remaining = await _keys(client, f"{prefix}mem:alice:*")
    # the other turn is not a memory item: it stays until forget-all or its expiry
    assert {k.rsplit(b":", 1)[1] for k in remaining} <= {b"conv", b"convorder", b"keys", b"seq"}
    await store.forget("alice")
    assert await _keys(client, f"{prefix}*alice*") == []


def _history(i: int, expires_at: str) -> MemoryItem:
    return MemoryItem(id=f"h-{i}", kind="history", text=f"prompt {i}", request_id=f"r-{i}", expires_at=expires_at,
                      created_at=f"2026-01-01T00:00:{i:02d}.000+00:00")


async def test_history_is_capped_and_expires(client, prefix):
    store = RedisMemoryStore(client, prefix=prefix, history_cap=3)
    future = "2999-01-01T00:00:00.000+00:00"
    for i in range(5):
        await store.add("alice", [_history(i, future)])
    assert [i.id for i in await store.items("alice")] == ["h-2", "h-3", "h-4"]  # the oldest dropped first
    assert await client.zcard(f"{prefix}mem:alice:hist") == 3 and await client.hlen(f"{prefix}mem:alice:items") == 3

    past = "2000-01-01T00:00:00.000+00:00"
    await store.add("alice", [_history(9, past)])
    assert "h-9" not in {i.id for i in await store.items("alice")}  # never read once expired…
    assert not await client.hexists(f"{prefix}mem:alice:items", "h-9")  # …and deleted on the write that saw it


async def test_learning_the_same_result_twice_writes_nothing_new(client, prefix):
    store = RedisMemoryStore(client, prefix=prefix)
    record = await enrich(store, "alice", "Max on a beach in gouache, blue and gold", "r-1")
    result = await accept(store, record)
    before = await store.items("alice")
    assert await store.add("alice", learn(result, history_ttl_s=3600)) == []  # a redelivered result
    assert await store.items("alice") == before
    assert {i.subject for i in before if i.kind == "preference"} >= {"style", "colour"}


async def test_a_turn_is_only_visible_to_its_user(client, prefix):
    store = RedisMemoryStore(client, prefix=prefix)
    await _learned_user(store, "alice", n=1)
    assert await store.turn("alice", "r-alice-0") is not None
    assert await store.turn("bob", "r-alice-0") is None
    for bad in ("*", "alice:*", "a b", "../x"):
        with pytest.raises(ValueError):
            await store.turn(bad, "r-alice-0")
    with pytest.raises(ValueError):
        await store.turn("alice", "r*")


async def test_alice_facts_never_reach_bob_under_concurrent_load(client, prefix):
    store = RedisMemoryStore(client, prefix=prefix)
    await store.add("alice", items_from_user_text("my dog Max is a corgi. I like watercolor. our logo is a blue fox"))
    await store.add("bob", items_from_user_text("my dog Max is a dalmatian. I like charcoal"))

    async def one(user: str, i: int):
        return await enrich(store, user, "a poster of my dog Max with our logo in my usual style", f"r-{user}-{i}")

    records = await asyncio.gather(*(one(user, i) for i in range(40) for user in ("alice", "bob")))
    for record in records:
        prompt = record.prompt.lower()
        if record.user_id == "alice":
            assert "corgi" in prompt and "watercolor" in prompt and "blue fox" in prompt
            assert "dalmatian" not in prompt and "charcoal" not in prompt
        else:
            assert "dalmatian" in prompt and "charcoal" in prompt
            assert "corgi" not in prompt and "watercolor" not in prompt and "blue fox" not in prompt
