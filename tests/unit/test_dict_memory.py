"""The benchmarks' in-process memory keeps the `MemoryStore` contract, so the model benchmark plans as a worker does."""

from agents.memory import items_from_user_text
from agents.ports import MemoryStore
from benchmarks.dict_memory import DictMemoryStore


async def test_it_is_a_memory_store_with_idempotent_adds_and_turns():
    store = DictMemoryStore()
    assert isinstance(store, MemoryStore)  # fails as soon as the port grows a method this store lacks
    items = items_from_user_text("my dog Max is a corgi")
    assert await store.add("ann", items) == items and await store.add("ann", items) == []
    assert await store.items("ann") == items and await store.items("bob") == []
    assert await store.put_turn("ann", "r1", '{"prompt": "x"}', "2026-12-01T00:00:00Z") is True
    assert await store.put_turn("ann", "r1", '{"prompt": "y"}', "2026-12-01T00:00:00Z") is False  # redelivered
    assert await store.turn("ann", "r1") == '{"prompt": "x"}' and await store.turn("bob", "r1") is None
    assert await store.forget("ann", items[0].id) == 1 and await store.forget("ann") == len(items) - 1
