"""Figures for memory lookups: what reading a user's memory adds to planning one request.

    python benchmarks/memory_lookup.py [--redis-url redis://127.0.0.1:6379/0] [--requests 500] [--history 50]
                                       [--semantic] [--corpus]

Fills one user's memory on the real Redis the way use does (20 statements, `--history` accepted results with
their learned preferences, entities and conversation turns), then plans `--requests` requests of several shapes
("my dog Max …", "… in my usual style", "draw Max like last time", follow-ups) one at a time and prints one JSON
object:

- `lookup_ms`: the Redis calls the planner stage makes for a request (all items; the parent's turn for a
  follow-up), p50/p95/max (target: p50 ≤ 5 ms);
- `planner_ms`: the whole heuristic planner with that memory, and with an empty in-process store, p50 each, and the
  difference (what memory adds, lookups plus using the items).

With `--semantic` (issue 15) the planner also matches by meaning with the real all-MiniLM-L6-v2: `lookup_ms` then
includes reading the items' stored vectors, and `semantic` reports the first request (which embeds and stores every
item's vector once) and the steady state. With `--corpus`, `corpus_ms` times a search of the public examples'
corpus (tests/data) by words only and hybrid (BM25 + embeddings), p50/p95.

It asserts nothing; the figures go in docs/design-notes.md. Keys it writes (under a unique prefix) are deleted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import redis.asyncio as aioredis  # noqa: E402

from agents.learning import learn, turn_of  # noqa: E402
from agents.memory import items_from_user_text  # noqa: E402
from agents.planner import HeuristicPlanner  # noqa: E402
from infra.redis_memory import RedisMemoryStore  # noqa: E402
from schemas.records import ImageRef, ImageRequest, ResultRecord  # noqa: E402

STATEMENTS = [
    "my dog Max is a corgi", "my cat Pixel is a grey sphynx", "our logo is a blue fox", "I like watercolor",
    "my bike is a red fixie", "my car is a green mini", "my garden is a wild meadow", "my house is a blue cottage",
    "my sister Ana is a tall redhead", "my brother Leo is a bearded chef", "I now prefer oil painting",
    "our shop is a tiny bakery", "my mug is a chipped enamel cup", "my hat is a yellow beanie",
    "my guitar is a sunburst telecaster", "my boat is a white dinghy", "my parrot Kiwi is a green macaw",
    "my horse Star is a black mare", "I love pastel colours", "my office is a bright loft",
]
PROMPTS = ["my dog Max at the beach", "a poster of Pixel in my usual style", "draw Max like last time",
           "our logo on a mug", "a bowl of lemons on a table", "Kiwi and Star in a meadow at sunset"]


def corpus_figures(embedder) -> dict:
    """Search latency over the public examples' corpus, words only and hybrid, with the examples' own queries."""
    import tempfile

    from infra.corpus import CorpusSearch

    data = json.loads((Path(__file__).resolve().parents[1] / "tests" / "data" /
                       "context-gap-examples.json").read_text())
    queries = ["Lantern Fair 2026", "Orbit kettle 2026", "hanami", "Velo bike 2026", "Harbor Tea", "Diwali",
               "copper sulfate crystals dissolving in water", "the flower people give on mother's day"]
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, text in data["corpus"].items():
            (Path(tmp) / name).write_text(text)
        modes = [("bm25", None, True)]
        if embedder is not None:
            # Fresh: the query embedded every time (a new query); cached: a query seen before (the LRU).
            modes += [("hybrid_fresh_query", embedder, False), ("hybrid_cached_query", embedder, True)]
        for label, model, cached in modes:
            corpus = CorpusSearch(tmp, embedder=model)
            times = []
            for n in range(400):
                query = queries[n % len(queries)]
                if model is not None and not cached:
                    model._cache.clear()
                started = time.perf_counter()
                vector = model.embed_sync([query])[0] if model is not None else None
                corpus.search_sync(query, 5, vector)
                times.append((time.perf_counter() - started) * 1000)
            out[label] = {"p50": round(statistics.median(times), 3), "p95": round(pct(times, 0.95), 3),
                          "passages": len(corpus.passages)}
    return out


class EmptyStore:
    async def items(self, user_id):
        return []

    async def add(self, user_id, items):
        return list(items)

    async def forget(self, user_id, item_id=None):
        return 0


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def main(args: argparse.Namespace) -> dict:
    client = aioredis.Redis.from_url(args.redis_url)
    prefix = f"gapstream-bench-{uuid.uuid4().hex}:"
    store = RedisMemoryStore(client, prefix=prefix, history_cap=args.history)
    user = "alice"
    try:
        for statement in STATEMENTS:
            await store.add(user, items_from_user_text(statement))
        planner = HeuristicPlanner(store)
        for i in range(args.history):
            request = ImageRequest(request_id=f"h-{i}", user_id=user, prompt=f"{PROMPTS[i % 4]} number {i} in pixel art")
            record = await planner(request)
            image = ImageRef(uri=f"file:///x/{i}.png", sha256="0" * 64, width=64, height=64, seed=i)
            result = ResultRecord(request_id=request.request_id, user_id=user, status="completed", prompt=request.prompt,
                                  gaps=record.gaps, checklist=record.checklist, request=request, best_image=image)
            await store.add(user, learn(result, 3600))
            await store.put_turn(user, request.request_id, turn_of(result).model_dump_json(), "2999-01-01T00:00:00+00:00")
        items = await store.items(user)

        embedder = None
        semantic: dict = {}
        if args.semantic:
            from infra.embeddings import MiniLMEmbedder

            embedder = MiniLMEmbedder()
            p = HeuristicPlanner(store, embedder=embedder)
            first = time.perf_counter()
            await p(ImageRequest(request_id="s-0", user_id=user, prompt="my pup on a sofa"))
            semantic["first_request_ms"] = round((time.perf_counter() - first) * 1000, 1)
            semantic["vectors_stored"] = len(await store.vectors(user, embedder.model))

        lookups: list[float] = []
        for n in range(args.requests):
            follow = n % 3 == 0
            started = time.perf_counter()
            if embedder is not None:
                await asyncio.gather(store.items(user), store.vectors(user, embedder.model))
            else:
                await store.items(user)
            if follow:
                await store.turn(user, f"h-{n % args.history}")
            lookups.append((time.perf_counter() - started) * 1000)

        async def plan_ms(memory) -> list[float]:
            p = HeuristicPlanner(memory, embedder=embedder)
            out = []
            for n in range(args.requests):
                request = ImageRequest(request_id=f"b-{n}", user_id=user, prompt=PROMPTS[n % len(PROMPTS)])
                started = time.perf_counter()
                await p(request)
                out.append((time.perf_counter() - started) * 1000)
            return out

        with_memory = await plan_ms(store)
        without = await plan_ms(EmptyStore())
        if embedder is not None:
            pup = []
            for n in range(50):  # a reference words miss, matched by meaning: the query embedding is LRU-cached
                started = time.perf_counter()
                await HeuristicPlanner(store, embedder=embedder)(
                    ImageRequest(request_id=f"p-{n}", user_id=user, prompt="my pup on a sofa"))
                pup.append((time.perf_counter() - started) * 1000)
            semantic["planner_by_meaning_p50_ms"] = round(statistics.median(pup), 3)
            semantic["planner_by_meaning_p95_ms"] = round(pct(pup, 0.95), 3)
        corpus = corpus_figures(embedder) if args.corpus else {}
        return {
            "machine": f"{platform.machine()}, python {platform.python_version()}",
            "redis": args.redis_url,
            "memory_items": len(items),
            "history_items": sum(1 for i in items if i.kind == "history"),
            "requests": args.requests,
            "lookup_ms": {"p50": round(statistics.median(lookups), 3), "p95": round(pct(lookups, 0.95), 3),
                          "max": round(max(lookups), 3)},
            "planner_ms": {"with_memory_p50": round(statistics.median(with_memory), 3),
                           "empty_memory_p50": round(statistics.median(without), 3),
                           "added_p50": round(statistics.median(with_memory) - statistics.median(without), 3)},
            "target": "lookup p95 <= 10 ms for 200 items",
            "semantic": semantic or "off (run with --semantic)",
            "corpus_ms": corpus or "not measured (run with --corpus)",
        }
    finally:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--history", type=int, default=50)
    parser.add_argument("--semantic", action="store_true", help="match by meaning with the real all-MiniLM-L6-v2")
    parser.add_argument("--corpus", action="store_true", help="also time corpus searches (BM25, hybrid)")
    print(json.dumps(asyncio.run(main(parser.parse_args())), indent=2))
