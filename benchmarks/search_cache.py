"""Figures for search grounding: the result cache, coalescing and the concurrency of one request's searches.

    python benchmarks/search_cache.py [--redis-url redis://127.0.0.1:6379/0] [--requests 50] [--queries 20]
                                      [--in-flight 8] [--upstream-ms 100]

Runs the real Searcher → CachedSearch (real Redis) → SerpApiSearch (the real `serpapi` client) against the fake
SerpAPI server (`benchmarks.fake_serpapi`, local; each upstream call takes `--upstream-ms`), and prints one JSON object:

- pass 1 / pass 2 of the same workload (`--requests` requests, each with 2 knowledge gaps over `--queries` distinct
  queries, some differing only in case and spacing; `--in-flight` requests at a time, like a stage's concurrency):
  cache hit ratio, lookups by outcome, upstream calls, and the most upstream calls any one query got in the pass
  (targets: pass-2 hit ratio ≥ 0.9; 1 upstream call per distinct query within a pass);
- one request with 3 knowledge gaps whose searches take 200, 300 and 400 ms: its wall time against the slowest and
  the sum (target: about the slowest).

It asserts nothing; the figures go in docs/design-notes.md. Keys it writes (under a unique prefix) are deleted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis.asyncio as aioredis  # noqa: E402

from agents.searcher import Searcher  # noqa: E402
from infra.search_cache import CachedSearch  # noqa: E402
from infra.serpapi_search import SerpApiSearch  # noqa: E402
from schemas.records import Gap, GapsRecord, ImageRequest  # noqa: E402
from benchmarks.fake_serpapi import FakeSerpApi, SerpReply, normalise_query  # noqa: E402

KEY = "bench-serpapi-key"
SUBJECTS = ["Lantern Fair", "Orbit kettle", "Kite Day", "Tide Run", "harbour festival", "night market",
            "cherry blossom season", "city marathon", "jazz weekend", "river regatta", "winter lights",
            "book fair", "food truck rally", "film festival", "design week", "street parade", "flower show",
            "sand sculpture contest", "tea ceremony", "lighthouse open day", "moon festival", "craft fair"]


def workload(requests: int, queries: int, seed: int = 7) -> list[GapsRecord]:
    rng = random.Random(seed)
    distinct = [f"{SUBJECTS[i % len(SUBJECTS)]} {2026 if i % 2 else 'venue'}" for i in range(queries)]
    order = distinct * (2 * requests // queries + 1)
    rng.shuffle(order)
    order = distinct + order  # every distinct query appears
    records = []
    for n in range(requests):
        picked = [order[(2 * n) % len(order)], order[(2 * n + 1) % len(order)]]
        gaps = []
        for k, query in enumerate(picked):
            if rng.random() < 0.3:  # the same query, written differently
                query = "  ".join(query.upper().split()) if rng.random() < 0.5 else query.lower()
            gaps.append(Gap(id=f"g{k + 1}", kind="knowledge", description="d", strategy="search",
                            subject=query, query=query, time_sensitive="2026" in query))
        request_id = f"bench-{n}"
        request = ImageRequest(request_id=request_id, user_id="bench", prompt="a poster")
        records.append(GapsRecord(request_id=request_id, user_id="bench", request=request, gaps=gaps))
    return records


async def run_pass(searcher: Searcher, cache: CachedSearch, fake: FakeSerpApi, records: list[GapsRecord],
                   in_flight: int) -> dict:
    before_stats, before_calls = Counter(cache.stats), len(fake.calls)
    gate = asyncio.Semaphore(in_flight)

    async def one(record: GapsRecord):
        async with gate:
            return await searcher(record)

    started = time.perf_counter()
    results = await asyncio.gather(*(one(r) for r in records))
    seconds = time.perf_counter() - started
    stats = Counter(cache.stats)
    stats.subtract(before_stats)
    calls = Counter(normalise_query(c.query) for c in fake.calls[before_calls:])
    lookups = stats["hit"] + stats["miss"] + stats["coalesced"]
    searches = [s for r in results for s in r.searches]
    return {
        "requests": len(records),
        "searches_in_results": len(searches),
        "searches_marked_cached": sum(s.cached for s in searches),
        "cache_lookups": lookups,
        "cache_hit": stats["hit"], "cache_miss": stats["miss"], "coalesced": stats["coalesced"],
        "cache_hit_ratio": round(stats["hit"] / lookups, 3) if lookups else None,
        "upstream_calls": sum(calls.values()),
        "distinct_queries_upstream": len(calls),
        "max_upstream_calls_per_query": max(calls.values()) if calls else 0,
        "gaps_filled": sum(g.status == "filled" for r in results for g in r.gaps),
        "gaps": sum(len(r.gaps) for r in results),
        "seconds": round(seconds, 3),
    }


async def main(args: argparse.Namespace) -> dict:
    client = aioredis.Redis.from_url(args.redis_url, socket_timeout=5)
    await client.ping()
    prefix = f"bench-{uuid.uuid4().hex[:8]}:"
    fake = FakeSerpApi(api_key=KEY, default=SerpReply.echo(delay=args.upstream_ms / 1000))
    await fake.start()
    try:
        web = SerpApiSearch(KEY, base_url=fake.base_url, timeout_s=10)
        cache = CachedSearch(web, client, prefix=prefix, ttl_s=600, fresh_ttl_s=300, budget_per_minute=None)
        searcher = Searcher([cache])
        records = workload(args.requests, args.queries)
        figures: dict = {"machine": f"{platform.machine()}, {os.cpu_count()} cpu", "redis": args.redis_url,
                         "upstream_ms": args.upstream_ms, "in_flight": args.in_flight,
                         "distinct_queries": len({normalise_query(g.query) for r in records for g in r.gaps})}
        figures["pass_1"] = await run_pass(searcher, cache, fake, records, args.in_flight)
        figures["pass_2"] = await run_pass(searcher, cache, fake, records, args.in_flight)

        delays = {"three gaps alpha": 0.2, "three gaps beta": 0.3, "three gaps gamma": 0.4}
        for query, delay in delays.items():
            fake.script(query, SerpReply.slow(delay, SerpReply.echo()))
        gaps = [Gap(id=f"g{i + 1}", kind="knowledge", description="d", strategy="search", subject=q, query=q)
                for i, q in enumerate(delays)]
        request = ImageRequest(request_id="bench-3gaps", user_id="bench", prompt="a poster")
        record = GapsRecord(request_id="bench-3gaps", user_id="bench", request=request, gaps=gaps)
        started = time.perf_counter()
        out = await searcher(record)
        wall = time.perf_counter() - started
        figures["three_gap_request"] = {
            "search_seconds": [round(s.seconds, 3) for s in out.searches],
            "wall_seconds": round(wall, 3),
            "slowest_search_seconds": round(max(s.seconds for s in out.searches), 3),
            "sum_of_searches_seconds": round(sum(s.seconds for s in out.searches), 3),
            "wall_over_slowest": round(wall / max(s.seconds for s in out.searches), 3),
            "gaps_filled": sum(g.status == "filled" for g in out.gaps),
        }
        figures["targets_met"] = {
            "pass_2_hit_ratio_ge_0.9": (figures["pass_2"]["cache_hit_ratio"] or 0) >= 0.9,
            "one_upstream_call_per_query_per_pass": max(figures["pass_1"]["max_upstream_calls_per_query"],
                                                        figures["pass_2"]["max_upstream_calls_per_query"]) <= 1,
            "three_gaps_about_the_slowest": wall < 0.5 * sum(delays.values()) + 0.1,
        }
        web.close()
        return figures
    finally:
        await fake.close()
        keys = [k async for k in client.scan_iter(match=f"{prefix}*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--redis-url", default=os.environ.get("GAPSTREAM_REDIS_URL", "redis://127.0.0.1:6379/0"))
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--queries", type=int, default=20)
    parser.add_argument("--in-flight", type=int, default=8)
    parser.add_argument("--upstream-ms", type=float, default=100.0)
    print(json.dumps(asyncio.run(main(parser.parse_args())), indent=2))
