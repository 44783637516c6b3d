"""What the pipeline and scale-out benchmarks share: services, settings for a run, the sequential agent loop, stats.

Progress goes to stderr (`say`); figures are returned as dicts whose keys name their unit.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, AsyncIterator, Optional

import click

from infra.settings import Settings
from schemas.records import ImageRequest
from schemas.topics import REQUESTS, RESULTS, TopicSpec

# Prompts with knowledge gaps (so the searcher searches), memory references and missing style: every stage works.
PROMPTS = (
    "a poster for this year's Lantern Fair",
    "a poster of my dog Max at the beach in my usual style",
    "a studio shot of the latest Orbit kettle",
    "friends celebrating hanami",
)


def say(message: str) -> None:
    click.echo(message, err=True)


def machine() -> dict[str, Any]:
    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {"cpus": os.cpu_count(), "cpu_model": model, "python": platform.python_version()}


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[rank]


def run_settings(base: Settings, home: Path, label: str, **changes: Any) -> Settings:
    """A run's own topics and consumer groups, so runs never read each other's messages on a shared broker."""
    tag = f"bench-{label}-{uuid.uuid4().hex[:6]}"
    return base.with_overrides(
        home=home, image_store=str(home / "images"), topic_prefix=f"{tag}.", app_id=tag, **changes
    )


@contextlib.asynccontextmanager
async def services(settings: Settings) -> AsyncIterator[tuple[str, str, Path]]:
    """(bootstrap, redis_url, scratch dir): the configured broker/Redis, else embedded ones in a scratch dir that
    is removed afterwards, so a benchmark never touches the user's memory or images."""
    from streams.local import EmbeddedBroker, EmbeddedRedis

    with tempfile.TemporaryDirectory(prefix="gapstream-bench-") as scratch:
        home = Path(scratch)
        async with contextlib.AsyncExitStack() as stack:
            bootstrap = settings.kafka_bootstrap
            if not bootstrap:
                broker = await asyncio.to_thread(EmbeddedBroker(log_dir=home / "logs").start)
                stack.callback(broker.stop)
                bootstrap = broker.bootstrap
            redis_url = settings.redis_url
            if not redis_url:
                server = await asyncio.to_thread(EmbeddedRedis(home / "redis").start)
                stack.callback(server.stop)
                redis_url = server.url
            yield bootstrap, redis_url, home


def request(i: int, run: str, max_rounds: int = 1, drafts: int = 1) -> ImageRequest:
    # Users of the run's own (empty) memory: a benchmark never reads or writes anyone else's.
    return ImageRequest(request_id=f"{run}-{i}", user_id=f"bench-{run}-{i % 7}", prompt=PROMPTS[i % len(PROMPTS)],
                        max_rounds=max_rounds, drafts=drafts)


class SequentialAgent:
    """The usual agent script: the same stage functions the workers run, called one after another for one request
    at a time, records handed from stage to stage in memory (no Kafka, no dedupe)."""

    def __init__(self, backends: Any, stages: Optional[tuple[str, ...]] = None) -> None:
        from streams.topology import BY_NAME, STAGES, stage_handlers

        self.routes: dict[str, list[tuple[TopicSpec, Any]]] = {}
        for stage in stages or STAGES:
            for source, handler in stage_handlers(BY_NAME[stage], backends):
                self.routes.setdefault(source.suffix, []).append((source, handler))

    async def run(self, request: ImageRequest, until: TopicSpec = RESULTS) -> Any:
        """The first record that reaches `until` (the result, by default)."""
        queue: list[tuple[TopicSpec, Any]] = [(REQUESTS, request)]
        while queue:
            topic, record = queue.pop(0)
            if topic.suffix == until.suffix:
                return record
            for source, handler in self.routes.get(topic.suffix, []):
                typed = record if isinstance(record, source.record) else source.record.model_validate(
                    record.model_dump())
                for out_topic, out in await handler(typed) or ():
                    queue.append((out_topic, out))
        raise RuntimeError(f"request {request.request_id} never reached {until.suffix}")


class StageCpu:
    """CPU seconds each stage spends on the event loop thread, measured by timing every step of every
    `StageProcessor.process` coroutine with the thread's CPU clock (decode, dedupe calls, the stage, encode, send).

    While active it wraps `StageProcessor.process` (restored on exit): instrumentation of this benchmark only.
    Work handed to other threads (Faust's consumer thread, `to_thread` calls) is not in it; the whole process's CPU is
    measured separately (`cpu_s_per_request_process`).
    """

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def __enter__(self) -> "StageCpu":
        from streams.stages import StageProcessor

        self._original = original = StageProcessor.process
        totals = self.seconds

        async def process(processor: Any, delivery: Any) -> None:
            return await _Timed(original(processor, delivery), totals, processor.stage)

        StageProcessor.process = process  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        from streams.stages import StageProcessor

        StageProcessor.process = self._original  # type: ignore[method-assign]


class _Timed:
    """Await `coro`, adding the thread CPU time of each of its steps to `totals[key]`."""

    def __init__(self, coro: Any, totals: dict[str, float], key: str) -> None:
        self.coro, self.totals, self.key = coro, totals, key

    def __await__(self) -> Any:
        it = self.coro.__await__()
        value: Any = None
        error: Optional[BaseException] = None
        while True:
            started = time.thread_time()
            try:
                yielded = it.throw(error) if error is not None else it.send(value)
            except StopIteration as done:
                return done.value
            finally:
                self.totals[self.key] = self.totals.get(self.key, 0.0) + time.thread_time() - started
            try:
                value, error = (yield yielded), None
            except BaseException as exc:  # cancellation and the like go into the coroutine, as with a plain await
                value, error = None, exc
