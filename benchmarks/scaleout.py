"""`gapstream bench scaleout`: generator images/s in 1, 2 and 4 worker processes of one consumer group.

Each worker is a generator worker process (`benchmarks.sim_worker`: the `streams.pipeline.Worker` that
`gapstream worker --stages generator` runs) whose model is simulated (`benchmarks.simulated`, a sleep per image): on
a 2-CPU machine, real models in 4 processes would measure the CPUs, not the design. Everything else is real: the
broker, the consumer group and its rebalancing, the dedupe keys in Redis, PNG encoding and the image store. Jobs go
round-robin over the partitions (as many keys do in practice), so the figure measures the group, not how a few keys
happen to hash.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import click

from benchmarks.common import SequentialAgent, machine, request, run_settings, say, services
from benchmarks.sim_worker import STARTED as STARTED_LINE
from infra.settings import Settings


async def _template(settings: Settings, redis_url: str) -> dict:
    """A real enriched-prompt record, made by the real planner, searcher and enricher."""
    from schemas.topics import ENRICHED_PROMPTS
    from streams.backends import open_backends
    from streams.topology import needs_of

    stages = ("planner", "searcher", "enricher")
    backends = await open_backends(settings, redis_url, needs_of(stages))
    try:
        record = await SequentialAgent(backends, stages).run(request(0, "tpl-" + uuid.uuid4().hex[:6]), until=ENRICHED_PROMPTS)
        return json.loads(record.model_dump_json())
    finally:
        await backends.aclose()


class WorkerProcess:
    def __init__(self, settings: Settings, bootstrap: str, redis_url: str, index: int, image_s: float) -> None:
        self.env = {
            **os.environ,
            "GAPSTREAM_KAFKA_BOOTSTRAP": bootstrap,
            "GAPSTREAM_REDIS_URL": redis_url,
            "GAPSTREAM_HOME": str(settings.home),
            "GAPSTREAM_IMAGE_STORE": settings.image_store,
            "GAPSTREAM_TOPIC_PREFIX": settings.topic_prefix,
            "GAPSTREAM_TOPIC_PARTITIONS": str(settings.topic_partitions),
            "GAPSTREAM_APP_ID": settings.app_id,
            "GAPSTREAM_BROKER_SESSION_TIMEOUT": str(settings.broker_session_timeout),
            "GAPSTREAM_METRICS_PORT": "0",
        }
        self.index = index
        self.image_s = image_s
        self.proc: Any = None
        self.tail: list[str] = []
        self._drain: Any = None

    async def start(self, timeout_s: float = 120.0) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "benchmarks.sim_worker", "--stages", "generator",
            "--seconds-per-image", str(self.image_s),
            env=self.env, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE, cwd=str(Path(__file__).resolve().parent.parent),
        )
        started = asyncio.get_running_loop().create_future()
        self._drain = asyncio.create_task(self._read(started))
        try:
            await asyncio.wait_for(started, timeout_s)
        except asyncio.TimeoutError:
            raise click.ClickException(f"generator worker {self.index} did not start: {' | '.join(self.tail)}")

    async def _read(self, started: asyncio.Future) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        async for raw in self.proc.stderr:
            line = raw.decode(errors="replace").rstrip()
            self.tail = (self.tail + [line])[-5:]
            if STARTED_LINE in line and not started.done():
                started.set_result(None)
        if not started.done():
            started.set_exception(click.ClickException(
                f"generator worker {self.index} exited: {' | '.join(self.tail)}"))

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 30)
            except asyncio.TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        if self._drain is not None:
            await asyncio.gather(self._drain, return_exceptions=True)


async def _group_ready(settings: Settings, bootstrap: str, group: str, members: int, timeout_s: float) -> bool:
    """Whether the group is stable with `members` members (False if the broker cannot say in time). Tansu leaves
    member assignments empty in DescribeGroups, so the warm-up batch that follows is what proves every member
    works."""
    from aiokafka.admin import AIOKafkaAdminClient

    from streams.faust_app import kafka_client_options

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **kafka_client_options(settings))
    await admin.start()
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            try:
                described = await admin.describe_consumer_groups([group])
            except Exception:
                return False
            groups = getattr(described[0], "groups", None) if described else None
            if groups:
                state, member_list = groups[0][2], groups[0][5]
                if state == "Stable" and len(member_list) == members:
                    return True
            await asyncio.sleep(0.2)
    finally:
        await admin.close()
    return False


async def one_size(base: Settings, bootstrap: str, redis_url: str, home: Path, template: dict, workers: int,
                   partitions: int, images: int, image_s: float) -> dict:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    from schemas.topics import ENRICHED_PROMPTS, IMAGES
    from streams.broker import producer_options
    from streams.client import ensure_topics
    from streams.faust_app import kafka_client_options

    settings = run_settings(base, home, f"scale{workers}", topic_partitions=partitions)
    settings = await ensure_topics(bootstrap, settings)
    procs = [WorkerProcess(settings, bootstrap, redis_url, i, image_s) for i in range(workers)]
    security = kafka_client_options(settings)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, **producer_options(settings), **security)
    consumer = AIOKafkaConsumer(IMAGES.name(settings.topic_prefix), bootstrap_servers=bootstrap, group_id=None,
                                auto_offset_reset="earliest", fetch_max_wait_ms=settings.fetch_wait_ms,
                                **security)
    try:
        await asyncio.gather(*(p.start() for p in procs), producer.start(), consumer.start())
        group = f"{settings.app_id}-generator"
        if not await _group_ready(settings, bootstrap, group, workers, 60):
            await asyncio.sleep(settings.broker_session_timeout)  # the broker cannot tell: give the join its time
        source = ENRICHED_PROMPTS.name(settings.topic_prefix)
        seen: set[str] = set()

        async def batch(tag: str, count: int) -> tuple[float, float]:
            """Send `count` one-image jobs round-robin over the partitions; (first send, last image) times."""
            ids = [f"{tag}-{i}" for i in range(count)]
            started = time.perf_counter()
            for i, rid in enumerate(ids):
                # The record embeds its request, whose id must match the record's (else it is a dead letter).
                value = json.dumps({**template, "request_id": rid,
                                    "request": {**template["request"], "request_id": rid}}).encode()
                await producer.send(source, key=rid.encode(), value=value, partition=i % partitions)
            await producer.flush()
            wanted, last = set(ids), started
            deadline = time.monotonic() + 60 + count * image_s * 2
            while wanted - seen:
                if time.monotonic() > deadline:
                    tails = " || ".join(" | ".join(p.tail) for p in procs)
                    raise click.ClickException(f"{len(wanted - seen)} of {count} images never arrived "
                                               f"({workers} workers): {tails}")
                for messages in (await consumer.getmany(timeout_ms=500)).values():
                    for message in messages:
                        rid = json.loads(message.value).get("request_id")
                        if rid in wanted and rid not in seen:
                            seen.add(rid)
                            last = time.perf_counter()
            return started, last

        run = uuid.uuid4().hex[:6]
        await batch(f"warm-{run}", partitions)  # every member has handled a job: joins and first-use costs paid
        started, last = await batch(f"run-{run}", images)
        rate = images / (last - started)
        say(f"  {workers} worker(s): {rate:.2f} images/s")
        return {"images_per_s": round(rate, 3), "seconds": round(last - started, 3)}
    finally:
        await asyncio.gather(*(p.stop() for p in procs), return_exceptions=True)
        await asyncio.gather(producer.stop(), consumer.stop(), return_exceptions=True)


async def measure(base: Settings, sizes: list[int], partitions: int, images: int, image_s: float) -> dict:
    figures: dict[str, Any] = {"machine": machine(), "partitions": partitions, "images_per_run": images,
                               "simulated_seconds_per_image": image_s, "worker_processes": sizes}
    async with services(base) as (bootstrap, redis_url, home):
        template_settings = run_settings(base, home, "tpl", corpus_dir=None, serpapi_api_key=None, llm_model=None,
                                         vlm_model=None)
        template = await _template(template_settings, redis_url)
        for k in sizes:
            say(f"{k} generator worker process(es), {partitions} partitions, {images} images of {image_s} s")
            run = await one_size(base, bootstrap, redis_url, home, template, k, partitions, images, image_s)
            figures[f"images_per_s_{k}_workers"] = run["images_per_s"]
    one = figures.get("images_per_s_1_workers")
    for k in sizes:
        if one and k != 1:
            figures[f"scaling_efficiency_{k}_workers"] = round(figures[f"images_per_s_{k}_workers"] / (k * one), 3)
    figures["ideal_images_per_s_1_worker"] = round(1 / image_s, 3) if image_s else None
    return figures


def render(f: dict) -> str:
    m = f["machine"]
    lines = [f"machine: {m['cpus']} CPUs, {m['cpu_model']}; {f['partitions']} partitions, {f['images_per_run']} "
             f"images per run, simulated {f['simulated_seconds_per_image']} s per image", "",
             f"{'worker processes':>18}{'images/s':>12}{'efficiency':>12}"]
    for k in f["worker_processes"]:
        eff = f.get(f"scaling_efficiency_{k}_workers")
        lines.append(f"{k:>18}{f[f'images_per_s_{k}_workers']:>12.2f}{(f'{eff:.3f}' if eff else '-'):>12}")
    lines += ["", "efficiency = images/s at k / (k x images/s at 1); targets >= 0.9 at 2, >= 0.8 at 4"]
    return "\n".join(lines)


def _sizes(value: str) -> list[int]:
    try:
        sizes = sorted({int(v) for v in value.split(",") if v.strip()})
    except ValueError:
        raise click.BadParameter(f"expected comma-separated worker counts, got {value!r}") from None
    if not sizes or sizes[0] < 1 or sizes[-1] > 32:
        raise click.BadParameter("worker counts must be between 1 and 32")
    return sizes


@click.command()
@click.option("--workers", "workers", default="1,2,4", show_default=True,
              help="Comma-separated numbers of generator worker processes to measure.")
@click.option("--partitions", type=click.IntRange(1, 256), default=8, show_default=True)
@click.option("--images", type=click.IntRange(1), default=96, show_default=True, help="Images per measurement.")
@click.option("--image-s", type=click.FloatRange(0), default=0.2, show_default=True,
              help="Simulated seconds per image.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object of figures on stdout.")
@click.pass_obj
def command(settings: Settings, workers: str, partitions: int, images: int, image_s: float, as_json: bool) -> None:
    """Generator images/s in 1, 2 and 4 worker processes of one consumer group, and the scaling efficiency."""
    if settings is None:
        settings = Settings.from_env()
    sizes = _sizes(workers)
    if sizes[-1] > partitions:
        raise click.BadParameter(f"{sizes[-1]} workers need at least as many partitions (got {partitions})")
    figures = asyncio.run(measure(settings, sizes, partitions, images, image_s))
    click.echo(json.dumps(figures, indent=2) if as_json else render(figures))
