"""Search backends and the page reader from settings; `streams/` calls these (the only place that wires backends).

- `GAPSTREAM_CORPUS_DIR` → `CorpusSearch` (BM25 over the folder), wrapped in `CachedSearch` without a cache:
  coalescing and metrics only (a local index is cheaper to ask than Redis, and a changed file shows at once).
- `SERPAPI_API_KEY` → `SerpApiSearch` (host from `GAPSTREAM_SERPAPI_URL`) behind `CachedSearch` with Redis, the
  cache TTLs and the per-minute budget.
Both may be on: the Searcher merges their hits, each labelled with its backend.
"""

from __future__ import annotations

from typing import Any, Optional

from agents.ports import PageReader, SearchBackend
from infra.settings import Settings


def build_search_backends(settings: Settings, redis_client: Any = None, embedder: Any = None) -> list[SearchBackend]:
    """Blocking (the corpus is indexed here): call it with `asyncio.to_thread` from async code. `redis_client` is a
    `redis.asyncio.Redis` (or None: no result cache, budget counted per process); with `embedder` the corpus is
    ranked by meaning as well as by words."""
    backends: list[SearchBackend] = []
    if settings.corpus_dir is not None:
        from infra.corpus import CorpusSearch
        from infra.search_cache import CachedSearch

        backends.append(CachedSearch(CorpusSearch(settings.corpus_dir, embedder=embedder), None))
    if settings.serpapi_api_key:
        from infra.search_cache import CachedSearch
        from infra.serpapi_search import SerpApiSearch

        web = SerpApiSearch(settings.serpapi_api_key, base_url=settings.serpapi_url,
                            timeout_s=settings.search_timeout_s)
        backends.append(CachedSearch(
            web, redis_client, ttl_s=settings.search_cache_ttl_s, fresh_ttl_s=settings.search_cache_fresh_ttl_s,
            budget_per_minute=settings.search_budget_per_minute or None,
            prefix=f"{settings.redis_namespace}search:",
        ))
    return backends


def build_page_reader(settings: Settings) -> Optional[PageReader]:
    """None when `GAPSTREAM_SEARCH_READ_PAGES` is 0 (the default); pass `read_pages=settings.search_read_pages`
    to the Searcher with it."""
    if settings.search_read_pages <= 0:
        return None
    from infra.page_reader import HttpPageReader

    return HttpPageReader(max_bytes=settings.search_page_max_bytes,
                          timeout_s=min(settings.search_timeout_s, 10.0))


def searcher_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for `agents.searcher.Searcher` besides the backends: budget, timeout, page reading."""
    return {
        "budget_per_request": settings.search_budget_per_request or None,
        "timeout_s": settings.search_timeout_s + 1.0,  # the adapters' own deadline (retries included) comes first
        "page_reader": build_page_reader(settings),
        "read_pages": settings.search_read_pages,
    }
