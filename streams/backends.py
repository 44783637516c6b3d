"""Builds the adapters behind the stage ports from settings: the one place that chooses backends."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Optional

from agents.ports import Embedder, ImageStore, MemoryStore, SearchBackend, StructuredLLM, TextToImage
from infra.settings import Settings

STAGES = ("planner", "searcher", "enricher", "generator", "critic", "publisher")
# Stages that produce no pipeline output of their own; `all` includes them (issue 7: request deadlines).
SUPPORT_STAGES = ("watchdog",)


class UnknownStageError(ValueError):
    pass


def parse_stages(spec: Optional[str]) -> tuple[str, ...]:
    """`planner,searcher` → ordered, de-duplicated stage names; empty or 'all' → every stage."""
    if spec is None or spec.strip() in ("", "all"):
        return STAGES + SUPPORT_STAGES
    names = [name.strip() for name in spec.split(",") if name.strip()]
    known = STAGES + SUPPORT_STAGES
    unknown = [name for name in names if name not in known]
    if unknown:
        raise UnknownStageError(f"unknown stage(s) {', '.join(unknown)}; choose from {', '.join(known)}")
    return tuple(stage for stage in known if stage in names)


@dataclass
class Backends:
    settings: Settings
    redis_url: str
    memory: MemoryStore
    dedupe: "RedisDedupe"  # noqa: F821 - infra.redis_memory, imported lazily
    image_store: ImageStore
    search: list[SearchBackend] = field(default_factory=list)
    text_to_image: Optional[TextToImage] = None
    llm: Optional[StructuredLLM] = None  # planner and enricher; None: heuristic stages
    embedder: Optional[Embedder] = None  # planner and searcher: matching by meaning; None: words only
    vlm: Optional[StructuredLLM] = None  # critic; None: quality checks only
    _redis: object = None
    claims: object = None  # infra.result_claims.ResultClaims: one result per request and phase (issue 7)

    async def aclose(self) -> None:
        for model in {id(m): m for m in (self.llm, self.vlm) if m is not None}.values():
            close = getattr(model, "aclose", None)
            if close is not None:
                await close()
        if self._redis is not None:
            await self._redis.aclose()


async def open_backends(settings: Settings, redis_url: str, stages: tuple[str, ...]) -> Backends:
    """Only what the chosen stages need is built: a CPU-only worker never imports torch."""
    import redis.asyncio as aioredis

    from infra.image_store import open_image_store
    from infra.redis_memory import RedisDedupe, RedisMemoryStore
    from infra.redis_errors import OutageTranslating
    from infra.result_claims import ResultClaims

    client = aioredis.Redis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=3,
                                     health_check_interval=30)
    embedder = None
    if {"planner", "searcher"} & set(stages) and settings.semantic_matching:
        from infra.embeddings import build_embedder

        embedder = await asyncio.to_thread(build_embedder, settings)
    search: list[SearchBackend] = []
    if "searcher" in stages:
        from infra.search_factory import build_search_backends

        search = await asyncio.to_thread(build_search_backends, settings, client, embedder)
    text_to_image = None
    if "generator" in stages:
        from infra.diffusion import load_text_to_image

        text_to_image = await asyncio.to_thread(load_text_to_image, settings)
    llm = vlm = None
    if settings.llm_model or settings.vlm_model:
        from infra.llm import build_llms

        llm, vlm = build_llms(settings)
    if not {"planner", "enricher"} & set(stages):
        llm = None
    if "critic" not in stages:
        vlm = None
    return Backends(
        settings=settings,
        llm=llm,
        vlm=vlm,
        embedder=embedder,
        redis_url=redis_url,
        memory=OutageTranslating(RedisMemoryStore(client, prefix=settings.redis_namespace,
                                                   ttl_s=settings.memory_ttl_s,
                                                   history_cap=settings.memory_history_cap)),  # type: ignore[arg-type]
        dedupe=RedisDedupe(client, prefix=settings.redis_namespace),
        image_store=open_image_store(settings.image_store, s3_endpoint_url=settings.s3_endpoint_url,
                                     s3_region=settings.s3_region),
        search=search,
        text_to_image=text_to_image,
        _redis=client,
        claims=ResultClaims(client, prefix=settings.redis_namespace, lease_s=settings.result_claim_lease_s,
                            ttl_s=settings.dedupe_ttl_s),
    )
