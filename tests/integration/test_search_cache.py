"""The search cache on a real redis-server (the tests' own), in front of the real SerpAPI client and a fake SerpAPI."""

from __future__ import annotations

import asyncio
import socket
from datetime import date

import pytest
import redis.asyncio as aioredis
from prometheus_client import REGISTRY

from agents.ports import SearchError
from agents.searcher import Searcher
from infra.search_cache import CachedSearch, is_time_sensitive
from infra.serpapi_search import SerpApiSearch
from schemas.records import Gap, GapsRecord, ImageRequest
from benchmarks.fake_serpapi import FakeSerpApi, SerpReply

KEY = "sk-cache-test"
TODAY = date(2026, 11, 26)


@pytest.fixture
async def redis_client(redis_url, unique):
    client = aioredis.Redis.from_url(redis_url, socket_timeout=2)
    yield client
    keys = [k async for k in client.scan_iter(match=f"test-{unique}:*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


@pytest.fixture
async def fake():
    async with FakeSerpApi(api_key=KEY, default=SerpReply.echo()) as server:
        yield server


def cached(fake, client, unique, **kw) -> CachedSearch:
    web = SerpApiSearch(KEY, base_url=fake.base_url, backoff_s=0.01, timeout_s=3.0)
    return CachedSearch(web, client, prefix=f"test-{unique}:", **kw)


def record(*queries: str, request_id: str = "r-1") -> GapsRecord:
    gaps = [Gap(id=f"g{i + 1}", kind="knowledge", description="d", strategy="search", subject=q, query=q)
            for i, q in enumerate(queries)]
    request = ImageRequest(request_id=request_id, user_id="alice", prompt="a poster")
    return GapsRecord(request_id=request_id, user_id="alice", request=request, gaps=gaps)


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_a_repeated_query_is_served_from_cache_with_its_ttl(fake, redis_client, unique):
    search = cached(fake, redis_client, unique, ttl_s=600, fresh_ttl_s=60)
    hits_before = metric("gapstream_search_cache_total", backend="serpapi", outcome="hit")
    first = await search.search_with_meta("Orbit kettle enamel")
    again = await search.search_with_meta("  orbit KETTLE   enamel ")  # the same query, normalised
    assert (first.cached, again.cached) == (False, True)
    assert again.hits == first.hits and fake.calls_for("orbit kettle enamel") == 1
    assert 590 <= await redis_client.ttl(search.cache_key("Orbit kettle enamel")) <= 600
    await search.search("latest Orbit kettle 2026")  # time-sensitive: the shorter TTL
    assert 50 <= await redis_client.ttl(search.cache_key("latest Orbit kettle 2026")) <= 60
    assert metric("gapstream_search_cache_total", backend="serpapi", outcome="hit") == hits_before + 1
    # Through the Searcher, the trace says which search came from the cache.
    out = await Searcher([search], today=lambda: TODAY)(record("Orbit kettle enamel", "Lantern parade"))
    assert [(s.query, s.cached) for s in out.searches] == [("Orbit kettle enamel", True), ("Lantern parade", False)]
    assert out.gaps[0].status == "filled" and out.facts[0].source.startswith("https://example.test/")


async def test_identical_queries_in_flight_share_one_upstream_call(fake, redis_client, unique):
    fake.default = SerpReply.echo(delay=0.2)
    search = cached(fake, redis_client, unique)
    outcomes = await asyncio.gather(*(search.search_with_meta("Lantern Fair 2026") for _ in range(10)))
    assert fake.calls_for("Lantern Fair 2026") == 1
    assert sum(o.coalesced for o in outcomes) == 9 and not any(o.cached for o in outcomes)
    # Two concurrent requests with overlapping gaps: each distinct query goes upstream once.
    searcher = Searcher([search], today=lambda: TODAY)
    await asyncio.gather(searcher(record("Kite Day", "Tide Run", request_id="a")),
                         searcher(record("Tide Run", "kite  day", "Kite Day", request_id="b")))
    assert (fake.calls_for("Kite Day"), fake.calls_for("Tide Run")) == (1, 1)


async def test_a_caller_that_gives_up_does_not_cancel_the_shared_call(fake, redis_client, unique):
    fake.default = SerpReply.echo(delay=0.3)
    search = cached(fake, redis_client, unique)
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(search.search("harbour boats"), 0.05)
    again = await search.search_with_meta("harbour boats")  # joins the call still in flight, or reads its result
    assert again.hits and fake.calls_for("harbour boats") == 1


async def test_failures_are_not_cached(fake, redis_client, unique):
    fake.script("flaky query", SerpReply.unauthorized(), SerpReply.echo())
    search = cached(fake, redis_client, unique)
    errors_before = metric("gapstream_search_calls_total", backend="serpapi", outcome="unauthorized")
    with pytest.raises(SearchError):
        await search.search("flaky query")
    assert metric("gapstream_search_calls_total", backend="serpapi", outcome="unauthorized") == errors_before + 1
    assert (await search.search_with_meta("flaky query")).cached is False and fake.calls_for("flaky query") == 2


async def test_the_per_minute_budget_is_shared_through_redis(fake, redis_client, unique):
    worker_a = cached(fake, redis_client, unique, budget_per_minute=2, clock=lambda: 1_000_000.0)
    worker_b = cached(fake, redis_client, unique, budget_per_minute=2, clock=lambda: 1_000_000.0)
    await worker_a.search("one")
    await worker_b.search("two")
    await worker_a.search("one")  # a cache hit costs nothing
    with pytest.raises(SearchError) as caught:
        await worker_b.search("three")
    assert caught.value.kind == "budget_exhausted" and not caught.value.retriable
    assert fake.calls_for("three") == 0
    out = await Searcher([worker_a], today=lambda: TODAY)(record("four"))
    assert out.gaps[0].status == "unfilled" and "budget" in out.gaps[0].reason
    assert any("serpapi failed" in d.detail and "budget" in d.detail for d in out.degraded)
    later = cached(fake, redis_client, unique, budget_per_minute=2, clock=lambda: 1_000_060.0)
    assert await later.search("three")  # the next minute has its own budget


async def test_without_redis_searching_goes_on_uncached(fake):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    dead = aioredis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=0.2, socket_timeout=0.2)
    search = cached(fake, dead, "dead", redis_timeout_s=0.1)
    first = await search.search_with_meta("kite day")
    second = await search.search_with_meta("kite day")
    assert first.hits and second.hits and not first.cached and not second.cached
    assert fake.calls_for("kite day") == 2 and search.stats["redis_errors"] >= 1
    # The per-minute budget falls back to this process's own count.
    limited = cached(fake, dead, "dead", budget_per_minute=1, redis_timeout_s=0.1)
    await limited.search("tide run")
    with pytest.raises(SearchError) as caught:
        await limited.search("tide run")
    assert caught.value.kind == "budget_exhausted" and fake.calls_for("tide run") == 1
    await dead.aclose()


def test_time_sensitive_queries():
    assert is_time_sensitive("Lantern Fair 2026") and is_time_sensitive("latest Orbit kettle")
    assert is_time_sensitive("what is on this week") and not is_time_sensitive("Orbit kettle enamel")
