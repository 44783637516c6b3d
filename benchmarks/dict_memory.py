"""A `MemoryStore` over a dict, for benchmarks that measure a model, not Redis (`benchmarks/real_llm.py`)."""

from __future__ import annotations

from typing import Optional, Sequence

from schemas.records import MemoryItem


class DictMemoryStore:
    """What each user's memory holds, per process; nothing expires, and no embeddings are kept (no embedder)."""

    def __init__(self) -> None:
        self.data: dict[str, dict[str, MemoryItem]] = {}
        self.turns: dict[tuple[str, str], str] = {}

    async def items(self, user_id: str) -> list[MemoryItem]:
        return list(self.data.get(user_id, {}).values())

    async def add(self, user_id: str, items: Sequence[MemoryItem]) -> list[MemoryItem]:
        mine = self.data.setdefault(user_id, {})
        added = [item for item in items if item.id not in mine]
        mine.update((item.id, item) for item in added)
        return added

    async def forget(self, user_id: str, item_id: Optional[str] = None) -> int:
        mine = self.data.get(user_id, {})
        if item_id is None:
            self.data.pop(user_id, None)
            return len(mine)
        return 1 if mine.pop(item_id, None) else 0

    async def turn(self, user_id: str, request_id: str) -> Optional[str]:
        return self.turns.get((user_id, request_id))

    async def put_turn(self, user_id: str, request_id: str, turn_json: str, expires_at: str) -> bool:
        if (user_id, request_id) in self.turns:
            return False
        self.turns[(user_id, request_id)] = turn_json
        return True
