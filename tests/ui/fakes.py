"""A stand-in for `ui.services.Services` with no broker and no Redis: the pages' unit tests drive the ASGI app
through Starlette's test client against it. Images come from a real filesystem image store, so the checks that
keep `/image` inside the store root are the real ones."""

from __future__ import annotations

from typing import Any, Optional

from infra.image_store import FilesystemImageStore
from schemas.records import ImageRequest, MemoryItem, ResultRecord
from schemas.questions import AnswerRecord
from ui.live import Channel
from ui.services import Refused, Services


class FakeServices(Services):
    def __init__(self, image_root) -> None:  # no super().__init__: nothing to connect to
        self.images = FilesystemImageStore(image_root)
        self.submitted: list[ImageRequest] = []
        self.answers: list[AnswerRecord] = []
        self.results: dict[str, ResultRecord] = {}
        self.memory_store: dict[str, list[MemoryItem]] = {}
        self.questions: dict[str, tuple[str, str]] = {}
        self.letters: list[Any] = []
        self.replayed: list[str] = []
        self.channels: dict[str, Channel] = {}

    async def submit(self, request: ImageRequest) -> None:
        self.submitted.append(request)

    async def question(self, request_id: str) -> Optional[tuple[str, str]]:
        return self.questions.get(request_id)

    async def answer(self, answer: AnswerRecord) -> None:
        seen = self.questions.get(answer.request_id)
        if seen is None or seen[1] != answer.user_id:
            raise Refused("no question is waiting for this request")
        self.answers.append(answer)
        self.questions[answer.request_id] = ("answered", answer.user_id)

    def channel(self, request_id: str) -> Optional[Channel]:
        return self.channels.get(request_id)

    async def follow(self, request_id: str) -> Channel:
        return self.channels.setdefault(request_id, Channel(request_id))

    async def result(self, request_id: str) -> Optional[ResultRecord]:
        return self.results.get(request_id)

    async def history(self, user_id: str, page: int, per_page: int) -> tuple[list[ResultRecord], int]:
        mine = sorted((r for r in self.results.values() if r.user_id == user_id), key=lambda r: r.finished_at,
                      reverse=True)
        return mine[(page - 1) * per_page: page * per_page], len(mine)

    async def memory_items(self, user_id: str) -> list[MemoryItem]:
        return list(reversed(self.memory_store.get(user_id, [])))

    async def forget(self, user_id: str, item_id: Optional[str] = None) -> int:
        items = self.memory_store.get(user_id, [])
        keep = [i for i in items if item_id is not None and i.id != item_id]
        self.memory_store[user_id] = keep
        return len(items) - len(keep)

    async def dead_letters(self) -> list[Any]:
        return list(self.letters)

    async def replay(self, letter_id: str) -> str:
        if letter_id not in {lt.id for lt in self.letters}:
            raise Refused(f"no dead letter {letter_id}")
        self.replayed.append(letter_id)
        return "gapstream.requests"
