"""The generator as a micro-batching consumer: several enriched-prompts messages, one pipeline call.

The generator agent takes whatever enriched-prompts messages have queued while the model was busy, up to
`GAPSTREAM_MAX_BATCH` (optionally waiting `GAPSTREAM_BATCH_WAIT_MS` for more), groups the records whose jobs share
a batch key (size, steps, guidance; one model per worker) into calls of at most `GAPSTREAM_MAX_BATCH` images,
keeping the drafts of a request together, and renders each group with one pipeline call off the event loop. Each
request then gets its own images message.

Delivery: the agent acks the messages of a batch only after this code has handled all of them (sent the images
messages and marked them done), and Faust commits only acked offsets. A worker killed mid-batch therefore leaves
the batch's offsets uncommitted, and the next owner of those partitions (another member, or this one restarted)
renders the batch again. The dedupe mark after each send keeps a redelivered request from getting a second images
message unless the kill lands between the send and the mark (at-least-once; Tansu has no transactions).

Each message is decoded, deduplicated, dead-lettered and timed by the same `StageProcessor` steps as every other
stage's messages; only the model call is shared.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from dataclasses import dataclass
from typing import Any, Optional, Sequence

from agents.generator import Generator, plan_batches
from agents.ports import GenerationJob, ImageStore, TextToImage
from infra import metrics
from infra.settings import Settings
from schemas.topics import IMAGES
from streams.stages import Delivery, StageProcessor

log = logging.getLogger("gapstream.generator")


def build_generator(model: TextToImage, store: ImageStore) -> Generator:
    """A Generator whose model calls feed the generator metrics."""
    name = model.model_name or "unknown"

    def observe(images: int, seconds: float) -> None:
        metrics.GENERATOR_IMAGES.labels(name).inc(images)
        metrics.IMAGES.labels(name).inc(images)
        metrics.GENERATOR_BATCH_SIZE.labels(name).observe(images)
        if images:
            metrics.GENERATOR_SECONDS_PER_IMAGE.labels(name).observe(seconds / images)
        _record_gpu_memory()

    return Generator(model, store, observe=observe)


def _record_gpu_memory() -> None:
    torch = sys.modules.get("torch")  # never import torch just for a gauge
    if torch is None or not torch.cuda.is_available() or not torch.cuda.is_initialized():
        return
    metrics.GPU_MEMORY.labels("allocated").set(torch.cuda.memory_allocated())
    metrics.GPU_MEMORY.labels("reserved").set(torch.cuda.memory_reserved())


@dataclass
class _Entry:
    index: int
    delivery: Delivery
    record: Any
    payload: dict
    jobs: list[GenerationJob]


class BatchingGenerator:
    """Handles a batch of deliveries from `enriched-prompts`; never raises (failures become dead letters)."""

    def __init__(self, processor: StageProcessor, generator: Generator, max_batch: int) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        self.processor = processor
        self.generator = generator
        self.max_batch = max_batch

    async def process_batch(self, deliveries: Sequence[Delivery]) -> list[str]:
        """The outcome of each delivery, in order: ok, duplicate, dead-letter or internal-error."""
        stage = self.processor.stage
        started = time.perf_counter()
        outcomes: list[Optional[str]] = [None] * len(deliveries)
        metrics.STAGE_IN_FLIGHT.labels(stage).inc(len(deliveries))
        try:
            entries = await self._admit(deliveries, outcomes)
            for batch in plan_batches([(entry, entry.jobs) for entry in entries], self.max_batch):
                await self._render(batch, outcomes, started)
        except Exception as exc:  # the last line of defence: the agent must survive anything
            log.exception("generator failed to handle a batch of %d", len(deliveries))
            metrics.STAGE_ERRORS.labels(stage, type(exc).__name__).inc()
        finally:
            metrics.STAGE_IN_FLIGHT.labels(stage).dec(len(deliveries))
        seconds = time.perf_counter() - started
        final = [outcome or "internal-error" for outcome in outcomes]
        for outcome in final:
            metrics.STAGE_EVENTS.labels(stage, outcome).inc()
            metrics.STAGE_SECONDS.labels(stage).observe(seconds)
        return final

    async def _admit(self, deliveries: Sequence[Delivery], outcomes: list[Optional[str]]) -> list[_Entry]:
        """Decode, dedupe and validate each message; the rest go to dead-letters with their reason."""
        entries: list[_Entry] = []
        in_batch: set[str] = set()
        for index, delivery in enumerate(deliveries):
            decoded = await self.processor.decode(delivery)
            if isinstance(decoded, str):
                outcomes[index] = decoded
                continue
            record, payload = decoded
            key = self.processor.dedupe_key(record)
            if key in in_batch or await self.processor.seen(record):
                outcomes[index] = "duplicate"
                continue
            try:
                jobs = self.generator.jobs(record)
            except Exception as exc:  # outside the model's limits: a clear reason, and the rest go on
                outcomes[index] = await self.processor.fail(delivery, exc, payload)
                continue
            in_batch.add(key)
            entries.append(_Entry(index, delivery, record, payload, jobs))
        return entries

    async def _render(self, batch: list[_Entry], outcomes: list[Optional[str]], started: float) -> None:
        now = time.time()
        for entry in batch:
            if entry.delivery.timestamp:
                metrics.GENERATOR_QUEUE_WAIT.observe(max(0.0, now - entry.delivery.timestamp))
        metrics.GENERATOR_BUSY.inc()
        try:
            outputs = await self.processor.with_retries(
                lambda: self.generator.render([entry.record for entry in batch])
            )
        except Exception as exc:
            if len(batch) > 1:
                # One call failed for all: render each alone, so one bad request does not fail its neighbours.
                log.warning("generator batch of %d failed (%s); rendering its requests one by one",
                            len(batch), type(exc).__name__)
                for entry in batch:
                    await self._render([entry], outcomes, started)
                return
            (entry,) = batch
            outcomes[entry.index] = await self.processor.fail(entry.delivery, exc, entry.payload)
            return
        finally:
            metrics.GENERATOR_BUSY.dec()
        for entry, images in zip(batch, outputs):
            try:
                await self.processor.emit(entry.record, [(IMAGES, images)], started)
            except Exception as exc:  # the send failed after retries: as in StageProcessor, a dead letter
                outcomes[entry.index] = await self.processor.fail(entry.delivery, exc, entry.payload)
                continue
            # Marked right after its own send: a kill between two sends redoes only the requests not yet out.
            await self.processor.mark_done(entry.record)
            outcomes[entry.index] = "ok"


class BatchQueue:
    """Where the generator's messages wait for the model: bounded, drained greedily into batches.

    Bounded at one batch, so the reader runs at most one batch ahead of the model and unrendered messages stay in
    Kafka. `next_batch` waits for the first item only; the rest is what queued up meanwhile (the model was busy),
    plus what arrives within `gather_s` when that is > 0.
    """

    def __init__(self, max_batch: int, gather_s: float = 0.0) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        if gather_s < 0:
            raise ValueError(f"gather_s must be >= 0, got {gather_s}")
        self.max_batch = max_batch
        self.gather_s = gather_s
        self._queue: asyncio.Queue = asyncio.Queue(maxsize=max_batch)
        self._arrived = asyncio.Event()

    async def put(self, item: Any) -> None:
        await self._queue.put(item)
        self._arrived.set()

    async def next_batch(self) -> list[Any]:
        loop = asyncio.get_running_loop()
        batch = [await self._queue.get()]
        deadline = loop.time() + self.gather_s
        while len(batch) < self.max_batch:
            if not self._queue.empty():
                batch.append(self._queue.get_nowait())
                continue
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            self._arrived.clear()
            try:  # on an Event, not on queue.get(): a timeout here can never drop an item
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except asyncio.TimeoutError:
                break
        return batch


def batching_agent(batcher: BatchingGenerator, settings: Settings) -> Any:
    """The Faust agent body: greedy micro-batches, each message acked only after `process_batch` has handled it.

    A batch is whatever has queued up when the model is free, up to `max_batch`: while one call renders, the next
    jobs queue, so batches grow with load on their own, and a lone job on an idle worker starts at once instead of
    waiting out a gathering window (Faust's `take_events` waits its whole `within` on every batch: measured, a
    50 ms window added ~45 ms to every request's latency at low load). `batch_wait_ms` > 0 still waits that long
    for more compatible jobs when a batch is not full, for deployments that prefer fuller batches to latency.
    """

    async def agent(stream: Any) -> None:
        manual = stream.noack()  # acked below, after the batch's images messages are sent
        waiting = BatchQueue(settings.max_batch, settings.batch_wait_ms / 1000.0)

        async def read() -> None:
            async for event in manual.events():
                metrics.STAGE_MESSAGES_IN.labels("generator", event.message.topic).inc()  # as other stages count
                await waiting.put(event)

        async def render() -> None:
            while True:
                events = await waiting.next_batch()
                await batcher.process_batch([delivery_of(event.message) for event in events])
                for event in events:
                    await manual.ack(event)

        await asyncio.gather(read(), render())

    return agent


def delivery_of(message: Any) -> Delivery:
    return Delivery(
        topic=message.topic, partition=message.partition, offset=message.offset,
        key=message.key, value=message.value or b"", timestamp=getattr(message, "timestamp", None),
    )
