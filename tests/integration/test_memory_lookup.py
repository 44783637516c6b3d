"""`benchmarks/memory_lookup.py` on the real Redis with a small workload: it prints figures for what it measured,
and leaves no key behind."""

from __future__ import annotations

import argparse

import redis.asyncio as aioredis

from benchmarks import memory_lookup


async def test_the_memory_benchmark_measures_lookups_and_cleans_up(redis_url):
    args = argparse.Namespace(redis_url=redis_url, requests=5, history=4, semantic=False, corpus=False)
    figures = await memory_lookup.main(args)
    assert figures["requests"] == 5 and figures["history_items"] == 4
    assert figures["memory_items"] > figures["history_items"]  # the statements are there too
    assert 0 < figures["lookup_ms"]["p50"] <= figures["lookup_ms"]["max"]
    assert figures["planner_ms"]["with_memory_p50"] > 0
    client = aioredis.Redis.from_url(redis_url)
    try:
        assert [key async for key in client.scan_iter(match="gapstream-bench-*")] == []
    finally:
        await client.aclose()
