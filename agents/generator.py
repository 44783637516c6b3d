"""The generate stage: one enriched prompt in, every draft of the round rendered and stored, one images record out."""

from __future__ import annotations

import asyncio
import hashlib
import io
from typing import Any, Mapping

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
    files instead of adding new ones.
    """

    def __init__(self, model: TextToImage, store: ImageStore) -> None:
        self.model = model
        self.store = store

    def jobs(self, record: EnrichedPromptRecord) -> list[GenerationJob]:
        params = record.params
        if not params.seeds:
            raise ValueError(f"request {record.request_id}: params.seeds is empty, nothing to generate")
        return [
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

    def _store(self, record: EnrichedPromptRecord, jobs: list[GenerationJob], images: list[Any]) -> list[ImageRef]:
        refs = []
        for i, (job, image) in enumerate(zip(jobs, images)):
            metadata = {
                "prompt": job.prompt,
                "negative_prompt": job.negative_prompt,
                "seed": str(job.seed),
                "model": self.model.model_name,
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

    async def __call__(self, record: EnrichedPromptRecord) -> ImagesRecord:
        jobs = self.jobs(record)
        # Generation and file writes block for up to seconds: off the event loop, so the consumer keeps polling.
        images = await asyncio.to_thread(self.model.generate, jobs)
        if len(images) != len(jobs):
            raise RuntimeError(f"{self.model.model_name} returned {len(images)} images for {len(jobs)} jobs")
        refs = await asyncio.to_thread(self._store, record, jobs, images)
        return ImagesRecord.model_validate(
            {**record.model_dump(), "images": [ref.model_dump() for ref in refs], "model": self.model.model_name}
        )
