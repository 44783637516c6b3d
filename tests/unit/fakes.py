"""Small in-memory stand-ins for the ports, shared by the unit tests of the heuristic stages."""

from __future__ import annotations

import io
import json
import re
import time
from typing import Optional, Sequence

import numpy as np
from PIL import Image

from agents.ports import QuestionStatus
from schemas.records import Hit, MemoryItem


class FakeMemoryStore:
    """`MemoryStore` over a dict of users; `fail` makes every call raise it, as an unreachable Redis would."""

    def __init__(self, fail: Optional[BaseException] = None) -> None:
        self.data: dict[str, dict[str, MemoryItem]] = {}
        self.fail = fail
        self.calls: list[tuple[str, str]] = []

    async def items(self, user_id: str) -> list[MemoryItem]:
        self.calls.append(("items", user_id))
        if self.fail:
            raise self.fail
        return list(self.data.get(user_id, {}).values())

    async def add(self, user_id: str, items: Sequence[MemoryItem]) -> list[MemoryItem]:
        self.calls.append(("add", user_id))
        if self.fail:
            raise self.fail
        mine = self.data.setdefault(user_id, {})
        added = []
        for item in items:
            if item.id not in mine:
                mine[item.id] = item
                added.append(item)
        return added

    async def forget(self, user_id: str, item_id: Optional[str] = None) -> int:
        mine = self.data.get(user_id, {})
        if item_id is None:
            self.data.pop(user_id, None)
            self.vecs.pop(user_id, None)
            return len(mine)
        for by_model in self.vecs.get(user_id, {}).values():
            by_model.pop(item_id, None)
        return 1 if mine.pop(item_id, None) else 0

    async def turn(self, user_id: str, request_id: str) -> Optional[str]:
        if self.fail:
            raise self.fail
        return self.turns.get((user_id, request_id))

    async def put_turn(self, user_id: str, request_id: str, turn_json: str, expires_at: str) -> bool:
        if self.fail:
            raise self.fail
        if (user_id, request_id) in self.turns:
            return False  # a redelivered result: the first turn stays
        self.turns[(user_id, request_id)] = turn_json
        return True

    @property
    def turns(self) -> dict:
        return self.__dict__.setdefault("_turns", {})

    @property
    def vecs(self) -> dict:
        return self.__dict__.setdefault("_vecs", {})

    async def vectors(self, user_id: str, model: str) -> dict[str, bytes]:
        self.calls.append(("vectors", user_id))
        if self.fail:
            raise self.fail
        return dict(self.vecs.get(user_id, {}).get(model, {}))

    async def put_vectors(self, user_id: str, model: str, vectors: dict[str, bytes]) -> None:
        self.calls.append(("put_vectors", user_id))
        self.vecs.setdefault(user_id, {}).setdefault(model, {}).update(vectors)


class FakeEmbedder:
    """`Embedder` that is deterministic and tiny: each word hashes to a fixed random unit vector, a text is the
    normalised sum of its words' vectors, and `synonyms` map words onto one another ("pup" -> "dog") so a test can
    say which words mean the same. Counts the texts it embedded."""

    model = "fake-hash-embedder"
    dim = 64

    def __init__(self, synonyms: Optional[dict[str, str]] = None) -> None:
        self.synonyms = {k.lower(): v.lower() for k, v in (synonyms or {}).items()}
        self.embedded: list[str] = []

    def _word(self, word: str) -> np.ndarray:
        import hashlib

        seed = int.from_bytes(hashlib.sha256(self.synonyms.get(word, word).encode()).digest()[:4], "big")
        vector = np.random.default_rng(seed).standard_normal(self.dim)
        return vector / np.linalg.norm(vector)

    def vector(self, text: str) -> np.ndarray:
        words = re.findall(r"[a-z0-9]+", text.lower()) or ["<empty>"]
        total = sum(self._word(w) for w in words)
        return (total / np.linalg.norm(total)).astype(np.float32)

    def embed_sync(self, texts: Sequence[str]) -> list[np.ndarray]:
        self.embedded += list(texts)
        return [self.vector(t) for t in texts]

    async def embed(self, texts: Sequence[str]) -> list[np.ndarray]:
        return self.embed_sync(texts)


class MemoryDedupe:
    """The stage processor's dedupe and result-claim port over two sets, as Redis would keep them."""

    def __init__(self) -> None:
        self.done: set[str] = set()
        self.claims: set[str] = set()

    async def seen(self, key: str) -> bool:
        return key in self.done

    async def mark(self, key: str, ttl_s: int) -> None:
        self.done.add(key)

    async def claim(self, key: str, ttl_s: int) -> bool:
        if key in self.claims:
            return False
        self.claims.add(key)
        return True


class Sent(list):
    """A stage's `send`: records (topic, key, decoded value); a value that is not JSON fails the test."""

    async def __call__(self, topic, key, value) -> None:
        self.append((topic, key, json.loads(value)))

    def on(self, topic) -> list:
        return [value for t, _, value in self if t is topic]


class FakeImageStore:
    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}

    def put(self, data: bytes, name: str) -> str:
        uri = f"mem://{name}"
        self.blobs[uri] = bytes(data)
        return uri

    def get(self, uri: str) -> bytes:
        return self.blobs[uri]


class FakeBackend:
    """A search backend with canned hits per query word; `error` makes it raise, `delay` makes it slow."""

    def __init__(self, name: str, hits: Sequence[Hit] = (), error: Optional[BaseException] = None,
                 delay: float = 0.0) -> None:
        self.name = name
        self.hits = list(hits)
        self.error = error
        self.delay = delay
        self.queries: list[str] = []

    async def search(self, query: str, limit: int = 5) -> list[Hit]:
        import asyncio

        self.queries.append(query)
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.error:
            raise self.error
        words = set(re.findall(r"\w+", query.lower()))
        return [h for h in self.hits if words & set(re.findall(r"\w+", f"{h.title} {h.text}".lower()))][:limit]


def png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array.astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def noise_png(size: int = 64, seed: int = 0) -> bytes:
    return png(np.random.default_rng(seed).integers(0, 256, (size, size, 3)))


def flat_png(size: int = 64, level: int = 128) -> bytes:
    return png(np.full((size, size, 3), level))


def gradient_png(width: int = 64, height: int = 64) -> bytes:
    """A smooth full-range picture: what a well-formed image looks like to the quality checks."""
    x = np.linspace(0, 255, width)[None, :]
    y = np.linspace(0, 255, height)[:, None]
    gray = (0.6 * x + 0.4 * y)
    return png(np.stack([gray, np.flipud(gray), np.full_like(gray, 90.0)], axis=-1))


def low_contrast_png(size: int = 64, seed: int = 1) -> bytes:
    base = 120 + np.random.default_rng(seed).integers(0, 30, (size, size))
    return png(np.stack([base] * 3, axis=-1))


class FakePendingQuestions:
    """`PendingQuestions` over a dict, with the Redis adapter's rules: one question per request, and an answer
    after the deadline expires the question instead."""

    def __init__(self) -> None:
        self.questions: dict[str, list] = {}  # request_id -> [state, deadline, WaitingQuestion]

    async def put(self, waiting, deadline: float, keep_s: int) -> bool:
        if waiting.request.request_id in self.questions:
            return False
        self.questions[waiting.request.request_id] = ["waiting", deadline, waiting]
        return True

    def _status(self, request_id: str, previous=None):
        state, _, waiting = self.questions[request_id]
        return QuestionStatus(state=state, user_id=waiting.request.user_id, waiting=waiting, previous=previous)

    async def peek(self, request_id: str):
        return self._status(request_id) if request_id in self.questions else None

    async def resolve(self, request_id: str, wanted: str, now: Optional[float] = None):
        if request_id not in self.questions:
            return None
        entry = self.questions[request_id]
        previous = entry[0]
        if previous == "waiting":
            late = wanted == "answered" and entry[1] <= (time.time() if now is None else now)
            entry[0] = "expired" if late else wanted
        return self._status(request_id, previous)

    async def due(self, now: Optional[float] = None, limit: int = 100) -> list[str]:
        now = time.time() if now is None else now
        waiting = sorted((entry[1], rid) for rid, entry in self.questions.items()
                         if entry[0] == "waiting" and entry[1] <= now)
        return [rid for _, rid in waiting[:limit]]
