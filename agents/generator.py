"""The generate stage: one enriched prompt in, every draft of the round rendered and stored, one images record out."""

from __future__ import annotations

import asyncio
import hashlib
import io
import time
from typing import Any, Callable, Hashable, Mapping, Optional, Sequence, TypeVar

from agents.ports import GenerationJob, ImageStore, TextToImage
from schemas.records import EnrichedPromptRecord, ImageRef, ImagesRecord


def encode_png(image: Any, metadata: Mapping[str, str]) -> bytes:
    """PNG bytes with each metadata entry as a text chunk, so a stored image says how it was made.

    Pillow is imported here, not at module level, so importing the stages stays cheap.
    """
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    for key, value in metadata.items():
        # add_text falls back to an iTXt chunk when the value is not Latin-1, so any prompt survives.
        info.add_text(str(key), str(value))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


class Generator:
    """Render `record.params.seeds` drafts of `record.prompt` and store them as PNGs in the image store.

    Names are deterministic (`{request_id}/r{round}-d{i}-{seed}.png`), so a redelivered message overwrites the same
    files instead of adding new ones. `render` takes several records and makes one model call for all their drafts,
    which the micro-batching consumer uses; `observe(images, seconds)` hears about every model call.
    """

    def __init__(
        self, model: TextToImage, store: ImageStore, observe: Optional[Callable[[int, float], None]] = None
    ) -> None:
        self.model = model
        self.store = store
        self.observe = observe

    def jobs(self, record: EnrichedPromptRecord) -> list[GenerationJob]:
        """The record's jobs, checked against the model's limits (ValueError naming the request and the limit)."""
        params = record.params
        if not params.seeds:
            raise ValueError(f"request {record.request_id}: params.seeds is empty, nothing to generate")
        jobs = [
            GenerationJob(
                prompt=record.prompt,
                negative_prompt=record.negative_prompt,
                width=params.width,
                height=params.height,
                steps=params.steps,
                guidance=params.guidance,
                seed=seed,
            )
            for seed in params.seeds
        ]
        validate = getattr(self.model, "validate", None)
        if validate is not None:
            try:
                validate(jobs)
            except ValueError as exc:
                raise ValueError(f"request {record.request_id} for model {self.model.model_name}: {exc}") from None
        return jobs

    def _store(self, record: EnrichedPromptRecord, jobs: list[GenerationJob], images: list[Any]) -> list[ImageRef]:
        refs = []
        for i, (job, image) in enumerate(zip(jobs, images)):
            metadata = {
                "prompt": job.prompt,
                "negative_prompt": job.negative_prompt,
                "seed": str(job.seed),
                "model": self.model.model_name,
                "width": str(job.width),
                "height": str(job.height),
                "steps": str(job.steps),
                "guidance": str(job.guidance),
                "request_id": record.request_id,
                "round": str(record.round),
            }
            data = encode_png(image, metadata)
            uri = self.store.put(data, f"{record.request_id}/r{record.round}-d{i}-{job.seed}.png")
            width, height = image.size
            refs.append(
                ImageRef(uri=uri, sha256=hashlib.sha256(data).hexdigest(), width=width, height=height, seed=job.seed)
            )
        return refs

    def _generate(self, jobs: list[GenerationJob]) -> list[Any]:
        started = time.perf_counter()
        images = self.model.generate(jobs)
        if len(images) != len(jobs):
            raise RuntimeError(f"{self.model.model_name} returned {len(images)} images for {len(jobs)} jobs")
        if self.observe is not None:
            self.observe(len(jobs), time.perf_counter() - started)
        return images

    async def render(self, records: Sequence[EnrichedPromptRecord]) -> list[ImagesRecord]:
        """One images record per input record, from one model call over every draft of every record.

        The model splits the jobs into pipeline calls by batch key and its own batch limit; callers that want one
        call group records with `plan_batches` first.
        """
        per_record = [self.jobs(record) for record in records]
        flat = [job for jobs in per_record for job in jobs]
        # Generation and file writes block for up to seconds: off the event loop, so the consumer keeps polling.
        images = await asyncio.to_thread(self._generate, flat)
        out, start = [], 0
        for record, jobs in zip(records, per_record):
            own = images[start : start + len(jobs)]
            start += len(jobs)
            refs = await asyncio.to_thread(self._store, record, jobs, own)
            out.append(ImagesRecord.model_validate(
                {**record.model_dump(), "images": [ref.model_dump() for ref in refs], "model": self.model.model_name}
            ))
        return out

    async def __call__(self, record: EnrichedPromptRecord) -> ImagesRecord:
        return (await self.render([record]))[0]


T = TypeVar("T")


def plan_batches(items: Sequence[tuple[T, Sequence[GenerationJob]]], max_images: int) -> list[list[T]]:
    """Group items (each with its jobs) into batches of one batch key and at most `max_images` jobs.

    An item's jobs (the drafts of one request) never split across batches, so one pipeline call renders them
    all; an item with more jobs than `max_images` gets a batch of its own. Order within a key is kept (first come,
    first served), and keys appear in the order of their first item.
    """
    if max_images < 1:
        raise ValueError(f"max_images must be at least 1, got {max_images}")
    open_batches: dict[Hashable, tuple[list[T], int]] = {}
    done: list[tuple[int, list[T]]] = []
    first_seen: dict[Hashable, int] = {}
    for position, (item, jobs) in enumerate(items):
        key = jobs[0].batch_key() if jobs else None
        first_seen.setdefault(key, position)
        batch, size = open_batches.get(key, ([], 0))
        if batch and size + len(jobs) > max_images:
            done.append((first_seen[key], batch))
            first_seen[key] = position
            batch, size = [], 0
        batch.append(item)
        open_batches[key] = (batch, size + len(jobs))
    done.extend((first_seen[key], batch) for key, (batch, _) in open_batches.items() if batch)
    return [batch for _, batch in sorted(done, key=lambda pair: pair[0])]
