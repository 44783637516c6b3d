"""Redis memory and dedupe against a real redis-server (the tests' own), each test under its own random key prefix."""

from __future__ import annotations

import asyncio

import pytest

from agents.ports import MemoryStore
from infra.redis_memory import RedisDedupe, RedisMemoryStore
from schemas.records import MemoryItem

pytestmark = pytest.mark.integration



@pytest.fixture
def memory(client, prefix) -> RedisMemoryStore:
    return RedisMemoryStore(client, prefix=prefix)


async def keys_of(client, pattern: str) -> list[bytes]:
    return [key async for key in client.scan_iter(match=pattern)]


def item(i: int | str, text: str = "", kind: str = "preference") -> MemoryItem:
    return MemoryItem(
        id=f"m-{i}",
        kind=kind,
        text=text or f"likes style {i}",
        subject="style",
        value=f"v{i}",
        created_at="2026-01-01T00:00:00.000+00:00",
    )


async def test_implements_the_port(memory):
    assert isinstance(memory, MemoryStore)


async def test_items_come_back_oldest_first_with_all_fields(memory):
    added = await memory.add("alice", [item("z"), item("a", kind="fact")])
    await memory.add("alice", [item("m")])
    items = await memory.items("alice")
    assert [i.id for i in items] == ["m-z", "m-a", "m-m"]  # insertion order, not id order
    assert items[:2] == added
    assert items[1].kind == "fact" and items[1].value == "va"


async def test_rapid_adds_keep_their_order(memory):
    # Many adds land in the same millisecond; the INCR sequence, not a clock, must order them.
    for i in range(60):
        await memory.add("alice", [item(60 - i)])
    assert [i.id for i in await memory.items("alice")] == [f"m-{60 - i}" for i in range(60)]


async def test_add_is_idempotent_by_id(memory):
    assert await memory.add("alice", [item(1), item(2)]) == [item(1), item(2)]
    assert await memory.add("alice", [item(2, text="changed"), item(3), item(1)]) == [item(3)]
    items = await memory.items("alice")
    assert [i.id for i in items] == ["m-1", "m-2", "m-3"]
    assert items[1].text == "likes style 2"  # the redelivered copy neither replaced nor reordered it


async def test_duplicate_ids_within_one_add(memory):
    assert await memory.add("alice", [item(1), item(1, text="second")]) == [item(1)]
    assert [i.text for i in await memory.items("alice")] == ["likes style 1"]


async def test_concurrent_adds_of_one_item_add_it_once(memory):
    results = await asyncio.gather(*(memory.add("alice", [item(7)]) for _ in range(10)))
    assert sum(len(r) for r in results) == 1
    assert len(await memory.items("alice")) == 1


async def test_empty_add_and_unknown_user(memory):
    assert await memory.add("alice", []) == []
    assert await memory.items("nobody") == []
    assert await memory.forget("nobody") == 0


async def test_users_are_isolated_and_forget_all_removes_every_key(memory, client, prefix):
    await memory.add("alice", [item(1), item(2)])
    await memory.add("bob", [item(1, text="bob's own")])
    assert await memory.forget("alice") == 2
    assert await memory.items("alice") == []
    assert await keys_of(client, f"{prefix}mem:alice:*") == []
    assert [i.text for i in await memory.items("bob")] == ["bob's own"]
    # After forgetting, alice starts over cleanly.
    assert await memory.add("alice", [item(2)]) == [item(2)]
    assert [i.id for i in await memory.items("alice")] == ["m-2"]


async def test_forget_one_item(memory, client, prefix):
    await memory.add("alice", [item(1), item(2), item(3)])
    assert await memory.forget("alice", "m-2") == 1
    assert await memory.forget("alice", "m-2") == 0
    assert [i.id for i in await memory.items("alice")] == ["m-1", "m-3"]
    assert await client.zcard(f"{prefix}mem:alice:order") == 2
    await memory.forget("alice", "m-1")
    await memory.forget("alice", "m-3")
    assert await keys_of(client, f"{prefix}mem:alice:*") == []


@pytest.mark.parametrize("user_id", ["", "a:b", "a*", "a b", "x" * 129, "a\nb", "ü"])
async def test_invalid_user_ids_are_rejected(memory, client, prefix, user_id):
    with pytest.raises(ValueError, match="user_id"):
        await memory.add(user_id, [item(1)])
    with pytest.raises(ValueError, match="user_id"):
        await memory.items(user_id)
    with pytest.raises(ValueError, match="user_id"):
        await memory.forget(user_id)
    assert await keys_of(client, f"{prefix}*") == []


async def test_ttl_applies_to_every_key_of_the_user(client, prefix):
    memory = RedisMemoryStore(client, prefix=prefix, ttl_s=100)
    await memory.add("alice", [item(1)])
    keys = await keys_of(client, f"{prefix}mem:alice:*")
    # items, order, seq and the index of keys (history keys exist only once there is history)
    assert {key.rsplit(b":", 1)[1] for key in keys} == {b"items", b"order", b"seq", b"keys"}
    for key in keys:
        assert 0 < await client.ttl(key) <= 100


async def test_from_url_and_aclose(prefix, redis_url):
    memory = RedisMemoryStore.from_url(redis_url, prefix=prefix)
    await memory.add("alice", [item(1)])
    assert [i.id for i in await memory.items("alice")] == ["m-1"]
    await memory.forget("alice")
    await memory.aclose()


async def test_dedupe_seen_and_mark(client, prefix):
    dedupe = RedisDedupe(client, prefix=prefix)
    key = "req-1:generate:0"
    assert not await dedupe.seen(key)
    await dedupe.mark(key, ttl_s=60)
    assert await dedupe.seen(key)
    assert not await dedupe.seen("req-1:generate:1")
    assert 0 < await client.ttl(f"{prefix}done:{key}") <= 60


async def test_dedupe_claim_is_exclusive_until_released(client, prefix):
    dedupe = RedisDedupe(client, prefix=prefix)
    results = await asyncio.gather(*(dedupe.claim("req-1:result", ttl_s=60) for _ in range(8)))
    assert sorted(results) == [False] * 7 + [True]
    assert await dedupe.seen("req-1:result")
    await dedupe.release("req-1:result")
    assert await dedupe.claim("req-1:result", ttl_s=60)


async def test_dedupe_validates_keys_and_ttl(client, prefix):
    dedupe = RedisDedupe(client, prefix=prefix)
    for bad in ("", "has space", "new\nline", "x" * 513):
        with pytest.raises(ValueError, match="key"):
            await dedupe.seen(bad)
    for ttl in (0, -5):
        with pytest.raises(ValueError, match="ttl"):
            await dedupe.mark("k", ttl_s=ttl)
    assert await keys_of(client, f"{prefix}*") == []


async def test_an_item_this_version_cannot_read_is_skipped_not_fatal(memory, client, prefix):
    # What an older worker meets after a newer one stored a kind it does not know, mid rolling upgrade.
    await memory.add("alice", [item(1), item(2)])
    await client.hset(f"{prefix}mem:alice:items", "m-future", '{"id": "m-future", "kind": "telepathy", "text": "?"}')
    await client.zadd(f"{prefix}mem:alice:order", {"m-future": 99})
    assert [i.id for i in await memory.items("alice")] == ["m-1", "m-2"]


async def test_vectors_are_stored_beside_the_items_once_and_forget_drops_them(memory, client, prefix):
    """Issue 15: an item's embedding is computed once and kept in Redis beside it, not recomputed per request; the
    planner reads it back, and `memory forget` (one item or all) removes it with the item."""
    from datetime import date

    from agents.memory import items_from_user_text
    from agents.planner import HeuristicPlanner
    from schemas.records import ImageRequest
    from tests.unit.fakes import FakeEmbedder

    embedder = FakeEmbedder(synonyms={"pup": "dog", "kitty": "cat"})
    [dog] = await memory.add("alice", items_from_user_text("my dog Max is a corgi"))
    [cat] = await memory.add("alice", items_from_user_text("my cat Pixel is a grey sphynx"))
    planner = HeuristicPlanner(memory, today=lambda: date(2026, 11, 26), embedder=embedder)
    record = await planner(ImageRequest(request_id="r-1", user_id="alice", prompt="my pup on a rug"))
    assert any(g.status == "filled" and "corgi" in (g.value or "") for g in record.gaps)
    key = f"{prefix}mem:alice:vec:{embedder.model}"
    assert set(await client.hkeys(key)) == {dog.id.encode(), cat.id.encode()}
    assert key.encode() in await client.smembers(f"{prefix}mem:alice:keys")
    # A second request embeds only its own reference: the items' vectors come from Redis.
    embedder.embedded.clear()
    await planner(ImageRequest(request_id="r-2", user_id="alice", prompt="my kitty on a rug"))
    assert embedder.embedded == ["kitty"]
    assert await memory.forget("alice", dog.id) == 1
    assert set(await client.hkeys(key)) == {cat.id.encode()}
    await memory.forget("alice")
    assert [k async for k in client.scan_iter(match=f"{prefix}mem:alice:*")] == []


async def test_a_vector_for_an_item_forgotten_meanwhile_is_not_kept(memory, client, prefix):
    from agents.memory import items_from_user_text

    [item] = await memory.add("bob", items_from_user_text("my dog Rex is a beagle"))
    await memory.forget("bob", item.id)
    await memory.put_vectors("bob", "m", {item.id: b"\x00\x01"})
    assert await memory.vectors("bob", "m") == {}
