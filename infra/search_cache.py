"""A caching, coalescing, budgeted wrapper around any `SearchBackend`.

- Cache: Redis, keyed by backend + normalised query (`agents.text.normalize_query`: NFKC, case-folded,
  whitespace collapsed, word order kept), holding the normalised hits as JSON with a TTL — `fresh_ttl_s` for
  time-sensitive queries (a year, "latest", "this year", "today", …) and for empty results, `ttl_s` otherwise.
  Upstream is asked for `fetch_limit` hits (≥ the caller's limit) so one entry serves any smaller limit.
- Coalescing: identical queries in flight in this process share one task — the cache read and, on a miss, the
  upstream call — so N concurrent requests for one query cost one upstream call. The task is shielded: a caller
  that times out does not cancel it for the others, and its result still reaches the cache.
- Budget: at most `budget_per_minute` upstream calls per minute window, counted in Redis (`INCR` on a per-minute
  key) so every worker shares it; past it, `SearchError(kind="budget_exhausted")`. Cache hits are free.
- Redis trouble never fails a search: it is a cache miss (and a per-process budget count), and Redis is left alone
  for `redis_retry_s` before it is tried again.
- `search_with_meta` says whether the hits came from the cache (`SearchOutcome.cached`), which the Searcher puts in
  `Search.cached`. Prometheus: `gapstream_search_cache_total{backend,outcome=hit|miss|coalesced}`,
  `gapstream_search_calls_total{backend,outcome}`, `gapstream_search_seconds{backend}`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import time
from collections import Counter
from typing import Any, Callable, Optional

from agents.ports import SearchBackend, SearchError, SearchOutcome
from agents.text import normalize_query
from infra.metrics import SEARCH_CACHE, SEARCH_CALLS, SEARCH_SECONDS
from schemas.records import Hit

log = logging.getLogger(__name__)

CACHE_FORMAT = 1
_TIME_SENSITIVE = re.compile(
    r"\b(?:19|20)\d\d\b|\b(?:latest|newest|current|currently|recent|recently|upcoming|today|tonight|tomorrow|"
    r"yesterday|this (?:year|month|week|season)|next (?:year|month|week)|news|live|now)\b",
    re.I,
)
_KINDS = {"unauthorized", "bad_request", "rate_limited", "server_error", "timeout", "unreachable",
          "invalid_response", "budget_exhausted"}


def is_time_sensitive(query: str) -> bool:
    return bool(_TIME_SENSITIVE.search(query or ""))


class CachedSearch:
    """`SearchBackend` (same `name` as the wrapped one) with a Redis result cache, in-process coalescing of identical
    queries and a per-minute upstream budget. `redis_client=None` keeps coalescing, budget and metrics only."""

    def __init__(
        self,
        backend: SearchBackend,
        redis_client: Any = None,
        *,
        ttl_s: int = 24 * 3600,
        fresh_ttl_s: int = 3600,
        budget_per_minute: Optional[int] = None,
        fetch_limit: int = 10,
        prefix: str = "gapstream:search:",
        redis_timeout_s: float = 1.0,
        redis_retry_s: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not callable(getattr(backend, "search", None)) or not isinstance(getattr(backend, "name", None), str):
            raise ValueError(f"{backend!r} is not a SearchBackend")
        if ttl_s < 0 or fresh_ttl_s < 0 or fetch_limit < 1:
            raise ValueError("ttl_s and fresh_ttl_s must be >= 0 (0: no caching), fetch_limit >= 1")
        if budget_per_minute is not None and budget_per_minute < 0:
            raise ValueError(f"budget_per_minute must be >= 0 (0 or None: no limit), got {budget_per_minute}")
        self.backend = backend
        self.name = backend.name
        self.redis = redis_client
        self.ttl_s = ttl_s
        self.fresh_ttl_s = min(fresh_ttl_s, ttl_s) if ttl_s else fresh_ttl_s
        self.budget_per_minute = budget_per_minute or None
        self.fetch_limit = fetch_limit
        self.prefix = prefix
        self.redis_timeout_s = redis_timeout_s
        self.redis_retry_s = redis_retry_s
        self.clock = clock
        self.stats: Counter[str] = Counter()  # hit, miss, coalesced, upstream, redis_errors (for tests/benchmarks)
        self._inflight: dict[str, tuple[int, asyncio.Future]] = {}
        self._redis_down_until = 0.0
        self._local_budget: dict[int, int] = {}

    def __repr__(self) -> str:
        return f"CachedSearch({self.backend!r})"

    # -- keys ------------------------------------------------------------------------------------------------------

    def cache_key(self, query: str) -> str:
        digest = hashlib.sha256(normalize_query(query).encode()).hexdigest()[:40]
        return f"{self.prefix}v{CACHE_FORMAT}:{self.name}:{digest}"

    def ttl_for(self, query: str, hits: list[Hit]) -> int:
        return self.fresh_ttl_s if (not hits or is_time_sensitive(query)) else self.ttl_s

    # -- Redis, never fatal ----------------------------------------------------------------------------------------

    def _redis_usable(self) -> bool:
        return self.redis is not None and time.monotonic() >= self._redis_down_until

    def _redis_failed(self, exc: BaseException) -> None:
        self.stats["redis_errors"] += 1
        if time.monotonic() >= self._redis_down_until:
            log.warning("search cache: Redis unavailable (%s: %s); searching without cache for %.0f s",
                        type(exc).__name__, exc, self.redis_retry_s)
        self._redis_down_until = time.monotonic() + self.redis_retry_s

    async def _redis(self, call: Callable[[], Any]) -> Any:
        return await asyncio.wait_for(call(), self.redis_timeout_s)

    async def _read(self, key: str, limit: int) -> Optional[list[Hit]]:
        if self.ttl_s <= 0 or not self._redis_usable():
            return None
        try:
            raw = await self._redis(lambda: self.redis.get(key))
        except Exception as exc:  # noqa: BLE001 - a cache that cannot be read is a miss
            self._redis_failed(exc)
            return None
        if raw is None:
            return None
        try:
            entry = json.loads(raw)
            hits = [Hit.model_validate(h) for h in entry["hits"]]
            if len(hits) < limit and len(hits) >= int(entry.get("limit", 0)) and int(entry.get("limit", 0)) < limit:
                return None  # stored for a smaller limit and there may be more
            return hits[:limit]
        except Exception:  # noqa: BLE001 - an entry of another format or a corrupt one is a miss
            return None

    async def _write(self, key: str, query: str, hits: list[Hit], limit: int) -> None:
        ttl = self.ttl_for(query, hits)
        if self.ttl_s <= 0 or ttl <= 0 or not self._redis_usable():
            return
        entry = {"v": CACHE_FORMAT, "q": normalize_query(query), "limit": limit, "at": self.clock(),
                 "hits": [h.model_dump() for h in hits]}
        try:
            await self._redis(lambda: self.redis.set(key, json.dumps(entry, ensure_ascii=False), ex=ttl))
        except Exception as exc:  # noqa: BLE001
            self._redis_failed(exc)

    async def _take_budget(self) -> None:
        if self.budget_per_minute is None:
            return
        window = int(self.clock() // 60)
        used: Optional[int] = None
        if self._redis_usable():
            key = f"{self.prefix}budget:{self.name}:{window}"
            try:
                async def incr() -> Any:
                    pipe = self.redis.pipeline(transaction=True)
                    pipe.incr(key)
                    pipe.expire(key, 120)
                    return await pipe.execute()

                used = int((await self._redis(incr))[0])
            except Exception as exc:  # noqa: BLE001 - fall back to counting in this process
                self._redis_failed(exc)
        if used is None:
            self._local_budget = {w: n for w, n in self._local_budget.items() if w >= window - 1}
            used = self._local_budget[window] = self._local_budget.get(window, 0) + 1
        if used > self.budget_per_minute:
            raise SearchError(f"{self.name} search budget of {self.budget_per_minute} calls per minute exhausted",
                              retriable=False, kind="budget_exhausted")

    # -- searching -------------------------------------------------------------------------------------------------

    async def _lookup(self, key: str, query: str, limit: int) -> tuple[list[Hit], bool]:
        """The shared task of one query: cache, else budget + upstream + cache write. (hits, from_cache)."""
        cached = await self._read(key, limit)
        if cached is not None:
            return cached, True
        started = time.perf_counter()
        outcome = "ok"
        try:
            await self._take_budget()
            self.stats["upstream"] += 1
            hits = list(await self.backend.search(query, limit) or [])
            outcome = "ok" if hits else "empty"
        except SearchError as exc:
            outcome = exc.kind if exc.kind in _KINDS else "error"
            raise
        except asyncio.TimeoutError:
            outcome = "timeout"
            raise
        except Exception:
            outcome = "error"
            raise
        finally:
            SEARCH_CALLS.labels(self.name, outcome).inc()
            if outcome != "budget_exhausted":
                SEARCH_SECONDS.labels(self.name).observe(time.perf_counter() - started)
        await self._write(key, query, hits, limit)
        return hits, False

    async def search_with_meta(self, query: str, limit: int = 5) -> SearchOutcome:
        if not isinstance(query, str) or not normalize_query(query):
            raise ValueError("search query is empty")
        if not isinstance(limit, int) or limit < 1:
            raise ValueError(f"limit must be a positive integer, got {limit!r}")
        key = self.cache_key(query)
        running = self._inflight.get(key)
        if running is not None and running[0] >= limit:
            hits, from_cache = await asyncio.shield(running[1])
            self._count("hit" if from_cache else "coalesced")
            return SearchOutcome(hits=hits[:limit], cached=from_cache, coalesced=not from_cache)
        fetch = max(limit, self.fetch_limit)
        task = asyncio.ensure_future(self._lookup(key, query.strip(), fetch))
        self._inflight[key] = (fetch, task)

        def done(finished: asyncio.Future) -> None:
            if self._inflight.get(key, (0, None))[1] is finished:
                del self._inflight[key]
            if not finished.cancelled():
                finished.exception()  # retrieved here so an abandoned failure is not reported as never retrieved

        task.add_done_callback(done)
        hits, from_cache = await asyncio.shield(task)
        self._count("hit" if from_cache else "miss")
        return SearchOutcome(hits=hits[:limit], cached=from_cache)

    def _count(self, outcome: str) -> None:
        self.stats[outcome] += 1
        if self.redis is not None or outcome == "coalesced":
            SEARCH_CACHE.labels(self.name, outcome).inc()

    async def search(self, query: str, limit: int = 5) -> list[Hit]:
        return (await self.search_with_meta(query, limit)).hits

    def close(self) -> None:
        close = getattr(self.backend, "close", None)
        if callable(close):
            close()
