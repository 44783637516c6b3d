"""The one place that chooses backends: which adapter stands behind each stage port, from settings.

`open_backends` builds only what the chosen stages need (the `needs` of their rows in `streams.topology`), so a
CPU-only worker never imports torch. Callers that bring their own backends (the benchmarks' simulated models) pass
them as `BackendOverrides`; the production path never chooses a simulated one.

- memory, pending questions, dedupe marks and result claims: Redis, under the deployment's namespace;
- images: a directory (path or `file://` URI) or `s3://bucket/prefix`;
- search: `GAPSTREAM_CORPUS_DIR` → `CorpusSearch` (BM25, and cosine with the embedder) behind `CachedSearch`
  without a cache (coalescing and metrics only: a local index is cheaper to ask than Redis, and a changed file shows
  at once); `SERPAPI_API_KEY` → `SerpApiSearch` behind `CachedSearch` with Redis, the cache TTLs and the per-minute
  budget. Both may be on: the Searcher merges their hits, each labelled with its backend;
- text to image: the tiny offline pipeline unless `GAPSTREAM_IMAGE_MODEL` names a real one;
- language and vision models: an OpenAI-compatible endpoint when `GAPSTREAM_LLM_MODEL` / `GAPSTREAM_VLM_MODEL`
  name one; none: the heuristic stages;
- embedder: the packaged MiniLM model unless `GAPSTREAM_SEMANTIC_MATCHING` is off.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union
from urllib.parse import unquote, urlparse

from agents.ports import (
    Embedder,
    ImageStore,
    MemoryStore,
    PageReader,
    PendingQuestions,
    SearchBackend,
    StructuredLLM,
    TextToImage,
)
from infra.image_store import FilesystemImageStore
from infra.redis_clarify import RedisPendingQuestions
from infra.redis_errors import OutageTranslating
from infra.redis_memory import RedisDedupe, RedisMemoryStore
from infra.result_claims import ResultClaims
from infra.search_cache import CachedSearch
from infra.settings import Settings

# What a stage may need beyond memory, dedupe marks, claims and the image store, which every worker has (cheap).
OPTIONAL_NEEDS = frozenset({"embedder", "search", "text_to_image", "llm", "vlm"})


@dataclass(frozen=True)
class BackendOverrides:
    """Backends a caller supplies instead of those the settings choose (the benchmarks' simulated models)."""

    text_to_image: Optional[TextToImage] = None
    llm: Optional[StructuredLLM] = None  # planner and enricher
    vlm: Optional[StructuredLLM] = None  # critic
    search: Optional[list[SearchBackend]] = None


@dataclass
class Backends:
    settings: Settings
    redis: Any  # redis.asyncio.Redis, shared by every Redis adapter below and by the watchdog
    memory: MemoryStore
    pending: PendingQuestions
    dedupe: RedisDedupe
    claims: ResultClaims  # one result per request and phase (issue 7)
    image_store: ImageStore
    search: list[SearchBackend] = field(default_factory=list)
    text_to_image: Optional[TextToImage] = None
    llm: Optional[StructuredLLM] = None  # planner and enricher; None: heuristic stages
    embedder: Optional[Embedder] = None  # planner and searcher: matching by meaning; None: words only
    vlm: Optional[StructuredLLM] = None  # critic; None: quality checks only

    async def aclose(self) -> None:
        for model in {id(m): m for m in (self.llm, self.vlm) if m is not None}.values():
            close = getattr(model, "aclose", None)
            if close is not None:
                await close()
        await self.redis.aclose()


async def open_backends(settings: Settings, redis_url: str, needs: frozenset[str],
                        overrides: Optional[BackendOverrides] = None) -> Backends:
    """The backends for a worker whose stages need `needs` (see `streams.topology.needs_of`)."""
    import redis.asyncio as aioredis

    unknown = set(needs) - OPTIONAL_NEEDS
    if unknown:
        raise ValueError(f"unknown backend need(s): {', '.join(sorted(unknown))}")
    overrides = overrides or BackendOverrides()
    client = aioredis.Redis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=3,
                                     health_check_interval=30)
    namespace = settings.redis_namespace
    embedder = await asyncio.to_thread(build_embedder, settings) if "embedder" in needs else None
    search: list[SearchBackend] = []
    if "search" in needs:
        search = overrides.search if overrides.search is not None else await asyncio.to_thread(
            build_search_backends, settings, client, embedder)
    text_to_image = None
    if "text_to_image" in needs:
        text_to_image = overrides.text_to_image or await asyncio.to_thread(load_text_to_image, settings)
    # Only the models a stage here uses, and none the caller overrides: an unused client would never be closed.
    llm = (overrides.llm or build_llm(settings, settings.llm_model)) if "llm" in needs else None
    vlm = (overrides.vlm or build_llm(settings, settings.vlm_model)) if "vlm" in needs else None
    return Backends(
        settings=settings,
        redis=client,
        memory=OutageTranslating(memory_store_for(settings, client)),  # type: ignore[arg-type]
        pending=pending_questions_for(settings, client),
        dedupe=RedisDedupe(client, prefix=namespace),
        claims=ResultClaims(client, prefix=namespace, lease_s=settings.result_claim_lease_s,
                            ttl_s=settings.dedupe_ttl_s),
        image_store=open_image_store(settings.image_store, s3_endpoint_url=settings.s3_endpoint_url,
                                    s3_region=settings.s3_region),
        search=search,
        text_to_image=text_to_image,
        llm=llm,
        embedder=embedder,
        vlm=vlm,
    )


def memory_store_for(settings: Settings, client: Any) -> RedisMemoryStore:
    """Per-user memory under the deployment's namespace: what the planner reads is what the CLI and the page show."""
    return RedisMemoryStore(client, prefix=settings.redis_namespace, ttl_s=settings.memory_ttl_s,
                            history_cap=settings.memory_history_cap)


def pending_questions_for(settings: Settings, client: Any) -> PendingQuestions:
    return RedisPendingQuestions(client, prefix=settings.redis_namespace)


def open_image_store(spec: Union[str, Path], *, s3_endpoint_url: Optional[str] = None,
                    s3_region: Optional[str] = None) -> ImageStore:
    """The image store a setting names: a directory path, a `file://` URI, or `s3://bucket/prefix`."""
    spec = str(spec).strip()
    if not spec:
        raise ValueError("image store is empty: give a directory path, a file:// URI or s3://bucket/prefix")
    if spec.startswith("s3://"):
        from infra.s3_store import S3ImageStore  # boto3 (extra `s3`) only when an S3 store is configured

        return S3ImageStore.from_uri(spec, endpoint_url=s3_endpoint_url, region=s3_region)
    if spec.startswith("file:"):
        parsed = urlparse(spec)
        if parsed.netloc not in ("", "localhost"):
            raise ValueError(f"image store {spec!r} names host {parsed.netloc!r}; only local paths are supported")
        return FilesystemImageStore(unquote(parsed.path))
    if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", spec):
        raise ValueError(f"image store {spec!r}: unsupported scheme; use a directory path, a file:// URI or "
                         "s3://bucket/prefix")
    return FilesystemImageStore(spec)


def load_text_to_image(settings: Settings) -> TextToImage:
    """The tiny offline model unless `settings.image_model` names a real one (hub id or local directory).
    Blocking (loads the model): call it with `asyncio.to_thread` from async code."""
    from infra.diffusion import DiffusersTextToImage, is_tiny  # torch and diffusers: generator workers only

    if is_tiny(settings.image_model):
        return DiffusersTextToImage.tiny(size=settings.default_size, steps=settings.default_steps,
                                         device=settings.device, max_batch=settings.max_batch)
    return DiffusersTextToImage.from_pretrained(
        settings.image_model, settings.device, settings.dtype, max_batch=settings.max_batch,
        attention_slicing=settings.attention_slicing, cpu_offload=settings.cpu_offload,
    )


def build_llm(settings: Settings, model: Optional[str]) -> Optional[StructuredLLM]:
    """The OpenAI-compatible endpoint's `model`, or None when no model is configured."""
    if not model:
        return None
    from infra.llm import OpenAICompatibleLLM  # the `llm` extra only when a model is configured

    return OpenAICompatibleLLM(model, base_url=settings.openai_base_url, api_key=settings.openai_api_key,
                               timeout_s=settings.llm_timeout_s, retries=settings.llm_retries,
                               max_tokens=settings.llm_max_tokens)


def build_llms(settings: Settings) -> tuple[Optional[StructuredLLM], Optional[StructuredLLM]]:
    """(text model, vision model) from settings; None where that model is not configured."""
    return build_llm(settings, settings.llm_model), build_llm(settings, settings.vlm_model)


def build_embedder(settings: Settings) -> Optional[Embedder]:
    """The shared MiniLM embedder, or None when semantic matching is off. Raises `EmbeddingsUnavailable` naming
    the extra to install when it is on and the model is missing. Blocking (loads the model)."""
    if not settings.semantic_matching:
        return None
    from infra.embeddings import shared_embedder  # torch and transformers only when matching by meaning

    return shared_embedder()


def build_search_backends(settings: Settings, redis_client: Any = None, embedder: Any = None) -> list[SearchBackend]:
    """Blocking (the corpus is indexed here): call it with `asyncio.to_thread` from async code. `redis_client` is a
    `redis.asyncio.Redis` (or None: no result cache, budget counted per process); with `embedder` the corpus is
    ranked by meaning as well as by words."""
    backends: list[SearchBackend] = []
    if settings.corpus_dir is not None:
        from infra.corpus import CorpusSearch

        backends.append(CachedSearch(CorpusSearch(settings.corpus_dir, embedder=embedder), None))
    if settings.serpapi_api_key:
        from infra.serpapi_search import SerpApiSearch  # the `web` extra only when a key is set

        web = SerpApiSearch(settings.serpapi_api_key, base_url=settings.serpapi_url,
                            timeout_s=settings.search_timeout_s)
        backends.append(CachedSearch(
            web, redis_client, ttl_s=settings.search_cache_ttl_s, fresh_ttl_s=settings.search_cache_fresh_ttl_s,
            budget_per_minute=settings.search_budget_per_minute or None, prefix=f"{settings.redis_namespace}search:",
        ))
    return backends


def build_page_reader(settings: Settings) -> Optional[PageReader]:
    """None when `GAPSTREAM_SEARCH_READ_PAGES` is 0 (the default); pass `read_pages=settings.search_read_pages`
    to the Searcher with it."""
    if settings.search_read_pages <= 0:
        return None
    from infra.page_reader import HttpPageReader

    return HttpPageReader(max_bytes=settings.search_page_max_bytes, timeout_s=min(settings.search_timeout_s, 10.0))


def searcher_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for `agents.searcher.Searcher` besides the backends: budget, timeout, page reading."""
    return {
        "budget_per_request": settings.search_budget_per_request or None,
        "timeout_s": settings.search_timeout_s + 1.0,  # the adapters' own deadline (retries included) comes first
        "page_reader": build_page_reader(settings),
        "read_pages": settings.search_read_pages,
    }
