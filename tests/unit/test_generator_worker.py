"""The micro-batching generator consumer without a broker: grouping, one pipeline call per group, one images message
per request, bad messages dead-lettered without failing their batch neighbours, redeliveries skipped."""

from __future__ import annotations

import asyncio
import io

import numpy as np
import pytest
from PIL import Image

from agents.generator import Generator, plan_batches
from agents.ports import GenerationDefaults, GenerationJob
from infra.diffusion import DiffusersTextToImage
from infra.image_store import FilesystemImageStore
from infra.settings import Settings
from schemas.records import EnrichedPromptRecord, GenerationParams, ImageRequest
from schemas.topics import DEAD_LETTERS, ENRICHED_PROMPTS, IMAGES, RESULTS
from streams.generator_worker import BatchQueue, BatchingGenerator, build_generator
from streams.stages import Delivery, StageProcessor
from tests.unit.test_diffusion import BATCH_TOLERANCE, SpyPipeline
from tests.unit.fakes import MemoryDedupe, Sent


@pytest.fixture(scope="module")
def tiny() -> DiffusersTextToImage:
    return DiffusersTextToImage.tiny(seed=0)


def job(seed=0, width=64, height=64, steps=4, guidance=1.0) -> GenerationJob:
    return GenerationJob("p", "", width, height, steps, guidance, seed)


def test_plan_batches_groups_by_key_keeps_drafts_together_and_caps_images():
    items = [
        ("a", [job(1), job(2)]),  # 64x64, two drafts
        ("b", [job(3, width=32)]),  # another size
        ("c", [job(4), job(5)]),
        ("d", [job(6)]),  # would make 5 images with a and c: starts a new batch
        ("e", [job(7, width=32)]),
        ("big", [job(s) for s in range(6)]),  # more drafts than the cap: a batch of its own
    ]
    batches = plan_batches(items, max_images=4)
    assert batches == [["a", "c"], ["b", "e"], ["d"], ["big"]]
    assert plan_batches(items, max_images=1)[0] == ["a"]
    assert plan_batches([], 8) == []
    with pytest.raises(ValueError):
        plan_batches(items, 0)


def record(request_id: str, seeds=(1,), width=64, prompt="a lighthouse at dusk", negative_prompt="",
           **params) -> EnrichedPromptRecord:
    request = ImageRequest(request_id=request_id, user_id="ann", prompt=prompt)
    fields = dict(width=width, height=64, steps=4, guidance=1.0, seeds=list(seeds)) | params
    return EnrichedPromptRecord(request_id=request_id, user_id="ann", round=1, request=request, prompt=prompt,
                                negative_prompt=negative_prompt, params=GenerationParams(**fields))


def delivery(value, offset=0) -> Delivery:
    if not isinstance(value, bytes):
        value = value.model_dump_json().encode()
    return Delivery(topic="gapstream.enriched-prompts", partition=0, offset=offset, key=b"k", value=value,
                    timestamp=None)


def batcher(model, tmp_path, max_batch=8, dedupe=None):
    sent = Sent()
    settings = Settings.from_env({"GAPSTREAM_HOME": str(tmp_path)})
    generator = build_generator(model, FilesystemImageStore(tmp_path / "images"))

    async def one(rec):  # the per-message handler; the batcher must not need it
        raise AssertionError("the batcher renders through the generator, not message by message")

    processor = StageProcessor("generator", ENRICHED_PROMPTS, one, sent, settings, dedupe or MemoryDedupe())
    return BatchingGenerator(processor, generator, max_batch), sent


async def test_a_mixed_batch_makes_one_call_per_size_and_one_message_per_request(tiny, tmp_path):
    spy = SpyPipeline(tiny.pipeline)
    model = DiffusersTextToImage(spy, tiny.model_name, tiny.defaults, max_batch=8)
    consumer, sent = batcher(model, tmp_path)
    records = [record("r1", seeds=(11, 12)), record("r2", seeds=(21,), prompt="a red fox"),
               record("r3", seeds=(31,), width=32), record("r4", seeds=(41,))]
    deliveries = [delivery(r, i) for i, r in enumerate(records)]
    deliveries.insert(2, delivery(b"{not json", 9))
    deliveries.append(delivery(record("r5", width=512), 10))  # beyond the tiny model's 256 px
    deliveries.append(delivery(records[0], 11))  # redelivered within the same batch

    outcomes = await consumer.process_batch(deliveries)

    assert outcomes == ["ok", "ok", "dead-letter", "ok", "ok", "dead-letter", "duplicate"]
    assert sorted(spy.calls) == [1, 4]  # all 64x64 drafts of r1, r2, r4 in one call; r3 alone
    images = {m["request_id"]: m for m in sent.on(IMAGES)}
    assert sorted(images) == ["r1", "r2", "r3", "r4"] and len(sent.on(IMAGES)) == 4
    assert [ref["seed"] for ref in images["r1"]["images"]] == [11, 12]
    assert images["r3"]["images"][0]["width"] == 32
    assert all(m["timings"][-1]["stage"] == "generator" for m in sent.on(IMAGES))

    letters = sent.on(DEAD_LETTERS)
    assert any("not JSON" in d["error"] for d in letters)
    too_big = next(d for d in letters if d["request_id"] == "r5")
    assert "width" in too_big["error"] and "256" in too_big["error"] and too_big["retriable"] is False
    assert [r["request_id"] for r in sent.on(RESULTS)] == ["r5"] and sent.on(RESULTS)[0]["status"] == "failed"

    # Batched drafts are the images each seed gives alone (up to float rounding in batched matmuls).
    store = consumer.generator.store
    for request_id, rec in (("r1", records[0]), ("r2", records[1])):
        for ref in images[request_id]["images"]:
            stored = np.asarray(Image.open(io.BytesIO(store.get(ref["uri"]))).convert("RGB"), dtype=np.int16)
            alone = tiny.generate(Generator(tiny, store).jobs(rec.model_copy(
                update={"params": rec.params.model_copy(update={"seeds": [ref["seed"]]})})))[0]
            assert np.abs(stored - np.asarray(alone, dtype=np.int16)).max() <= BATCH_TOLERANCE

    # A later redelivery of the whole batch (the worker died before its offsets were committed) adds nothing.
    again = await consumer.process_batch([delivery(r, i) for i, r in enumerate(records)])
    assert again == ["duplicate"] * 4 and len(sent.on(IMAGES)) == 4 and spy.calls.count(4) == 1


async def test_max_batch_caps_images_per_call(tiny, tmp_path):
    spy = SpyPipeline(tiny.pipeline)
    model = DiffusersTextToImage(spy, tiny.model_name, tiny.defaults, max_batch=3)
    consumer, sent = batcher(model, tmp_path, max_batch=3)
    outcomes = await consumer.process_batch(
        [delivery(record(f"m{i}", seeds=(i, i + 100)), i) for i in range(3)])  # 6 images, 2 per request
    assert outcomes == ["ok"] * 3
    assert spy.calls == [2, 2, 2]  # a request's drafts never split, so 2+2 > 3 means one request per call
    assert len(sent.on(IMAGES)) == 3


class PoisonPipeline:
    """A plug-in backend (the callable shape DiffusersTextToImage drives) that fails any call with a bad prompt."""

    device = "cpu"

    def __init__(self):
        self.calls = []

    def __call__(self, *, prompt, negative_prompt, width, height, num_inference_steps, guidance_scale, generator,
                 output_type):
        self.calls.append(list(prompt))
        if any("poison" in p for p in prompt):
            raise RuntimeError("CUDA error: device-side assert triggered")
        return [Image.new("RGB", (width, height), (int(g.initial_seed()) % 256, 0, 0)) for g in generator]


async def test_a_failing_batch_is_retried_one_by_one_so_only_the_bad_request_fails(tmp_path):
    backend = PoisonPipeline()
    model = DiffusersTextToImage(backend, "plug-in", GenerationDefaults(64, 64, 4, 1.0, 512), max_batch=8)
    consumer, sent = batcher(model, tmp_path)
    records = [record("ok1", seeds=(5,)), record("bad", prompt="poison apple"), record("ok2", seeds=(7, 9))]
    outcomes = await consumer.process_batch([delivery(r, i) for i, r in enumerate(records)])

    assert outcomes == ["ok", "dead-letter", "ok"]
    assert len(backend.calls[0]) == 4  # first the whole batch, in one call
    assert sorted(m["request_id"] for m in sent.on(IMAGES)) == ["ok1", "ok2"]
    ok2 = next(m for m in sent.on(IMAGES) if m["request_id"] == "ok2")
    assert [ref["seed"] for ref in ok2["images"]] == [7, 9] and ok2["model"] == "plug-in"
    (letter,) = sent.on(DEAD_LETTERS)
    assert letter["request_id"] == "bad" and "device-side assert" in letter["error"]
    assert [r["request_id"] for r in sent.on(RESULTS)] == ["bad"]


async def test_direct_calls_get_a_clear_value_error_for_out_of_limit_requests(tiny, tmp_path):
    generator = Generator(tiny, FilesystemImageStore(tmp_path))
    with pytest.raises(ValueError, match=r"request big .*width must be a multiple of 8 between 8 and 256"):
        await generator(record("big", width=1024))
    with pytest.raises(ValueError, match="steps"):
        await generator(record("slow", steps=500))
    with pytest.raises(ValueError, match="seed"):
        await generator(record("neg", seeds=(-3,)))


async def test_same_seed_and_model_give_the_same_stored_image_across_workers(tmp_path):
    first = Generator(DiffusersTextToImage.tiny(seed=0), FilesystemImageStore(tmp_path / "a"))
    second = Generator(DiffusersTextToImage.tiny(seed=0), FilesystemImageStore(tmp_path / "b"))
    rec = record("same", seeds=(1234, 99), negative_prompt="fog")
    a, b = await first(rec), await second(rec)
    assert [r.sha256 for r in a.images] == [r.sha256 for r in b.images]
    assert a.images[0].sha256 != a.images[1].sha256
    meta = Image.open(io.BytesIO(first.store.get(a.images[0].uri))).text
    assert meta["seed"] == "1234" and meta["prompt"] == rec.prompt and meta["negative_prompt"] == "fog"
    assert meta["model"] == "gapstream/tiny-random-sd" and (meta["width"], meta["steps"]) == ("64", "4")


# ---- BatchQueue: what the agent hands the model ---------------------------------------------------------------


async def test_a_lone_job_on_an_idle_generator_is_batched_at_once():
    waiting = BatchQueue(max_batch=8)
    await waiting.put("a")
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await waiting.next_batch() == ["a"]
    assert loop.time() - started < 0.05  # no gathering window by default


async def test_jobs_that_queued_while_the_model_was_busy_make_one_batch_capped_at_max_batch():
    waiting = BatchQueue(max_batch=3)
    reader = asyncio.create_task(_put_all(waiting, ["a", "b", "c", "d", "e"]))
    await asyncio.sleep(0.05)  # the model is "busy": the reader fills the queue and then waits on its bound
    assert not reader.done()
    assert await waiting.next_batch() == ["a", "b", "c"]
    assert await waiting.next_batch() == ["d", "e"]
    await reader


async def test_a_gathering_window_waits_for_late_jobs_and_no_job_is_lost():
    waiting = BatchQueue(max_batch=4, gather_s=0.3)
    await waiting.put("a")

    async def late() -> None:
        await asyncio.sleep(0.05)
        await waiting.put("b")

    task = asyncio.create_task(late())
    assert await waiting.next_batch() == ["a", "b"]  # the window ran out: a short batch, not a lost job
    await task
    await waiting.put("c")
    assert await waiting.next_batch() == ["c"]


def test_batch_queue_rejects_nonsense_sizes():
    with pytest.raises(ValueError, match="max_batch"):
        BatchQueue(max_batch=0)
    with pytest.raises(ValueError, match="gather_s"):
        BatchQueue(max_batch=1, gather_s=-1)


async def _put_all(waiting: BatchQueue, items: list[str]) -> None:
    for item in items:
        await waiting.put(item)
