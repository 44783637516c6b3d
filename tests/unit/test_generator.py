"""The generate stage with the tiny model and a filesystem store: files, hashes, names, idempotent redelivery."""

from __future__ import annotations

import asyncio
import hashlib
import io

import numpy as np
import pytest
from PIL import Image

from agents.generator import Generator
from agents.ports import GenerationDefaults, GenerationJob
from infra.diffusion import DiffusersTextToImage
from infra.image_store import FilesystemImageStore
from schemas.records import EnrichedPromptRecord, GenerationParams, ImageRequest, ImagesRecord


@pytest.fixture(scope="module")
def tiny() -> DiffusersTextToImage:
    return DiffusersTextToImage.tiny(seed=0)


@pytest.fixture
def store(tmp_path) -> FilesystemImageStore:
    return FilesystemImageStore(tmp_path / "images")


def record(seeds=(5, 9), round_=1, request_id="req-42") -> EnrichedPromptRecord:
    request = ImageRequest(request_id=request_id, user_id="alice", prompt="a poster of the final")
    return EnrichedPromptRecord(
        request_id=request_id,
        user_id="alice",
        round=round_,
        request=request,
        prompt="a poster of the final, watercolour",
        negative_prompt="blurry",
        params=GenerationParams(width=64, height=64, steps=4, guidance=1.0, seeds=list(seeds)),
        prompt_history=["a poster of the final"],
    )


async def test_generates_stores_and_describes_each_draft(tiny, store):
    rec = record()
    out = await Generator(tiny, store)(rec)

    assert isinstance(out, ImagesRecord)
    assert out.model == tiny.model_name
    assert (out.request_id, out.user_id, out.round, out.prompt) == (rec.request_id, "alice", 1, rec.prompt)
    assert out.request == rec.request and out.params == rec.params and out.prompt_history == rec.prompt_history
    assert [ref.seed for ref in out.images] == [5, 9]
    for i, ref in enumerate(out.images):
        path = store.resolve(ref.uri)
        assert path == store.root / "req-42" / f"r1-d{i}-{ref.seed}.png"
        data = path.read_bytes()
        assert hashlib.sha256(data).hexdigest() == ref.sha256
        image = Image.open(io.BytesIO(data))
        assert image.size == (ref.width, ref.height) == (64, 64)
        assert image.text["prompt"] == rec.prompt
        assert image.text["negative_prompt"] == "blurry"
        assert image.text["seed"] == str(ref.seed)
        assert image.text["model"] == tiny.model_name
    assert out.images[0].sha256 != out.images[1].sha256


async def test_stored_image_is_the_models_image_for_that_seed(tiny, store):
    out = await Generator(tiny, store)(record(seeds=[9]))
    stored = np.asarray(Image.open(io.BytesIO(store.get(out.images[0].uri))).convert("RGB"))
    job = GenerationJob("a poster of the final, watercolour", "blurry", 64, 64, 4, 1.0, 9)
    assert np.array_equal(stored, np.asarray(tiny.generate([job])[0]))


async def test_redelivery_overwrites_the_same_files(tiny, store):
    generator = Generator(tiny, store)
    first = await generator(record())
    second = await generator(record())
    assert [r.model_dump() for r in first.images] == [r.model_dump() for r in second.images]
    assert len([p for p in store.root.rglob("*") if p.is_file()]) == 2


async def test_rounds_get_their_own_files(tiny, store):
    generator = Generator(tiny, store)
    r0 = await generator(record(round_=0))
    r1 = await generator(record(round_=1))
    assert {ref.uri for ref in r0.images}.isdisjoint(ref.uri for ref in r1.images)


async def test_no_seeds_is_an_error(tiny, store):
    with pytest.raises(ValueError, match="seeds"):
        await Generator(tiny, store)(record(seeds=[]))


class ThreadCheckingModel:
    """A fake model that fails if it is called on the event loop's thread."""

    model_name = "fake/solid"
    defaults = GenerationDefaults(64, 64, 1, 0.0, 256)

    def __init__(self) -> None:
        self.jobs: list[GenerationJob] = []

    def generate(self, jobs):
        with pytest.raises(RuntimeError):
            asyncio.get_running_loop()
        self.jobs.extend(jobs)
        return [Image.new("RGB", (j.width, j.height), (j.seed % 256, 0, 0)) for j in jobs]


async def test_generation_runs_off_the_event_loop_with_one_job_per_seed(store):
    model = ThreadCheckingModel()
    out = await Generator(model, store)(record(seeds=[1, 2, 3]))
    assert [j.seed for j in model.jobs] == [1, 2, 3]
    assert {(j.prompt, j.negative_prompt, j.width, j.steps) for j in model.jobs} == {
        ("a poster of the final, watercolour", "blurry", 64, 4)
    }
    assert out.model == "fake/solid" and len(out.images) == 3


async def test_a_model_returning_too_few_images_is_an_error(store):
    class Short(ThreadCheckingModel):
        def generate(self, jobs):
            return super().generate(jobs)[:-1]

    with pytest.raises(RuntimeError, match="returned 1 images for 2 jobs"):
        await Generator(Short(), store)(record(seeds=[1, 2]))
