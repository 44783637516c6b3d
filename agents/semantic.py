"""Matching by meaning: memory references the words missed ("my pup" for "my dog Max is a corgi").

Words come first (names, "my dog", nouns: exact and cheap, `agents/memory.py`); meaning only decides what words could
not. What is compared is the thing referred to, not whole sentences: the noun of the reference ("pup") against the
key of each remembered fact (its noun, "dog"; or what a bare name is, "corgi"). Whole sentences share too much
("my dog" and "my cat Pixel is a grey sphynx" are both about a pet of mine), nouns do not: measured with
all-MiniLM-L6-v2, pup/dog 0.81, puppy/dog 0.80, kitty/cat 0.84, boy/son 0.75, bicycle/bike 0.92, company logo/logo
0.82, against dog/cat 0.66, car/bike 0.56, kid/son 0.65, cafe/mascot 0.27. `MIN_SIMILARITY` sits between them.

Each item's key vector is computed once and stored beside the item (`VectorStore`), so a request embeds only its own
references; items without a stored vector (older ones, or added where no model ran) get one on first use.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from agents.memory import parse_fact
from agents.ports import Embedder
from schemas.records import MemoryItem

MIN_SIMILARITY = 0.70
log = logging.getLogger("gapstream.semantic")


def encode(vector) -> bytes:
    """float16 bytes: half the size of float32 in Redis, and cosine to 3 decimals is all a match needs."""
    return np.asarray(vector, dtype=np.float16).tobytes()


def decode(raw: bytes, dim: int) -> Optional[np.ndarray]:
    array = np.frombuffer(raw, dtype=np.float16)
    return array.astype(np.float32) if array.size == dim else None


def key_text(item: MemoryItem) -> str:
    """What a reference to this item would name: its noun ("dog", "team mascot"), else what it is ("corgi")."""
    parsed = parse_fact(item)
    if parsed.noun:
        return parsed.noun
    if parsed.relation == "is" and item.value:
        return item.value
    return item.subject or item.text


def matchable(item: MemoryItem) -> bool:
    return item.kind == "fact" and bool(item.subject)


@dataclass(frozen=True)
class Match:
    item: MemoryItem
    similarity: float


class SemanticMemory:
    """Finds the remembered fact a reference means, with stored per-item vectors and one embedding call a request."""

    def __init__(self, embedder: Embedder, min_similarity: float = MIN_SIMILARITY) -> None:
        if embedder is None or not callable(getattr(embedder, "embed", None)):
            raise ValueError("embedder must be an Embedder (needs .model, .dim and async .embed)")
        self.embedder = embedder
        self.min_similarity = min_similarity

    async def item_vectors(self, store: object, user_id: str, items: Sequence[MemoryItem]) -> dict[str, np.ndarray]:
        """Stored vectors of the items, computing (and storing) only the missing ones."""
        wanted = [i for i in items if matchable(i)]
        if not wanted:
            return {}
        model, dim = self.embedder.model, self.embedder.dim
        stored: dict[str, bytes] = {}
        read = getattr(store, "vectors", None)
        if callable(read):
            stored = await read(user_id, model)
        vectors: dict[str, np.ndarray] = {}
        for item in wanted:
            raw = stored.get(item.id)
            vector = decode(raw, dim) if raw else None
            if vector is not None:
                vectors[item.id] = vector
        missing = [i for i in wanted if i.id not in vectors]
        if missing:
            fresh = await self.embedder.embed([key_text(i) for i in missing])
            for item, vector in zip(missing, fresh):
                vectors[item.id] = np.asarray(vector, dtype=np.float32)
            write = getattr(store, "put_vectors", None)
            if callable(write):
                try:
                    await write(user_id, model, {i.id: encode(vectors[i.id]) for i in missing})
                except (ConnectionError, OSError, TimeoutError) as exc:  # computed again next time; no harm
                    log.warning("could not store %d memory vector(s): %s", len(missing), exc)
        return vectors

    async def match(self, store: object, user_id: str, items: Sequence[MemoryItem],
                    references: Sequence[str]) -> list[Optional[Match]]:
        """For each reference noun, the fact it most likely means (at or above the threshold), or None."""
        if not references:
            return []
        vectors = await self.item_vectors(store, user_id, items)
        if not vectors:
            return [None] * len(references)
        by_id = {i.id: i for i in items}
        ids = list(vectors)
        matrix = np.stack([vectors[i] for i in ids])
        queries = np.stack([np.asarray(v, dtype=np.float32) for v in await self.embedder.embed(list(references))])
        scores = queries @ matrix.T
        out: list[Optional[Match]] = []
        for row in scores:
            best = int(np.argmax(row))
            similarity = float(row[best])
            out.append(Match(by_id[ids[best]], round(similarity, 3)) if similarity >= self.min_similarity else None)
        return out
