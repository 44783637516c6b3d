"""`benchmarks/search_cache.py` on the real Redis and its fake SerpAPI: the second pass is served from the cache and
no query reaches the upstream twice in a pass."""

from __future__ import annotations

import argparse

from benchmarks import search_cache


async def test_the_search_benchmark_shows_the_cache_and_coalescing_working(redis_url):
    args = argparse.Namespace(redis_url=redis_url, requests=6, queries=3, in_flight=3, upstream_ms=5.0)
    figures = await search_cache.main(args)
    assert figures["pass_2"]["cache_hit_ratio"] >= 0.9
    assert figures["targets_met"]["one_upstream_call_per_query_per_pass"] is True
