"""`gapstream bench pipeline`: the raw broker, the pipeline with instant backends, and the pipeline against a
one-request-at-a-time agent script with realistic latencies — measured side by side in one run on one broker.

1. raw: 6 relays of plain aiokafka consumer/producers over a chain of 7 topics (6 hops, as many as a request's
   path from `requests` to `results`), each decoding and re-encoding the JSON of a real critique record;
2. instant: every stage in one worker with the heuristic planner, no search backend, a no-op generator that writes
   a 1×1 image, the quality critic and one round;
3. realistic: backends that sleep like real ones (model calls, searches, images), the pipeline with `--in-flight`
   requests against the same stage functions called in a sequential loop.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from typing import Any, Optional

import click

from benchmarks.common import (
    SequentialAgent,
    StageCpu,
    machine,
    percentile,
    request,
    run_settings,
    say,
    services,
)
from benchmarks.simulated import simulated_backends
from infra.settings import Settings
from streams.backends import BackendOverrides

HOPS = 6


async def _closed_loop(n: int, in_flight: int, send: Any, wait: Any) -> tuple[float, list[float]]:
    """Keep `in_flight` requests outstanding until `n` are done: (elapsed s, per-request latencies s)."""
    gate = asyncio.Semaphore(in_flight)
    latencies: list[float] = []

    async def one(i: int) -> None:
        async with gate:
            sent = time.perf_counter()
            await send(i)
            await wait(i)
            latencies.append(time.perf_counter() - sent)

    started = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n)))
    return time.perf_counter() - started, latencies


def _latency_figures(prefix: str, latencies: list[float]) -> dict[str, float]:
    return {f"{prefix}_p{q}_ms": round(percentile(latencies, q) * 1000, 1) for q in (50, 95, 99)}


# ---- 1. raw chain --------------------------------------------------------------------------------------------


async def raw_chain(settings: Settings, bootstrap: str, payload: dict, n: int, in_flight: int,
                    probe_n: int) -> dict:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    from streams.broker import for_broker, producer_options
    from streams.faust_app import kafka_client_options

    settings = await for_broker(bootstrap, settings)  # the same broker-aware client settings as the workers
    security = kafka_client_options(settings)  # SASL/SSL as the workers use them
    topics = [f"{settings.topic_prefix}raw-{i}" for i in range(HOPS + 1)]
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **security)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(t, num_partitions=settings.topic_partitions,
                                            replication_factor=settings.topic_replication)
                                   for t in topics])
    finally:
        await admin.close()

    def consumer(topic: str, group: str | None) -> AIOKafkaConsumer:
        return AIOKafkaConsumer(
            topic, bootstrap_servers=bootstrap, group_id=group, auto_offset_reset="earliest",
            enable_auto_commit=False, fetch_max_wait_ms=settings.fetch_wait_ms,
            session_timeout_ms=int(settings.broker_session_timeout * 1000),
            heartbeat_interval_ms=max(500, int(settings.broker_session_timeout * 250)), **security,
        )

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, **producer_options(settings), **security)
    await producer.start()
    relays = [consumer(topics[i], f"{settings.app_id}-raw-{i}") for i in range(HOPS)]
    sink = consumer(topics[-1], None)
    arrived: dict[str, asyncio.Future] = {}
    tasks: list[asyncio.Task] = []

    async def relay(source: AIOKafkaConsumer, target: str) -> None:
        while True:
            batches = await source.getmany(timeout_ms=200)
            acks = []
            for messages in batches.values():
                for message in messages:
                    record = json.loads(message.value)  # what a stage does to its input and output, no more
                    acks.append(await producer.send(target, key=message.key, value=json.dumps(record).encode()))
            if acks:
                await asyncio.gather(*acks)  # output acked before the input's offset is committed
                await source.commit()

    async def drain() -> None:
        while True:
            batches = await sink.getmany(timeout_ms=200)
            for messages in batches.values():
                for message in messages:
                    future = arrived.get(json.loads(message.value)["request_id"])
                    if future is not None and not future.done():
                        future.set_result(None)

    try:
        await asyncio.gather(sink.start(), *(r.start() for r in relays))
        deadline = time.monotonic() + 60
        while not all(r.assignment() for r in relays):  # every relay in its group before measuring
            if time.monotonic() > deadline:
                raise TimeoutError("raw relays did not join their groups")
            await asyncio.sleep(0.05)
        tasks = [asyncio.create_task(relay(r, topics[i + 1])) for i, r in enumerate(relays)]
        tasks.append(asyncio.create_task(drain()))
        run = uuid.uuid4().hex[:8]

        async def send(i: int) -> None:
            rid = f"raw-{run}-{i}"
            arrived[rid] = asyncio.get_running_loop().create_future()
            await producer.send_and_wait(topics[0], key=rid.encode(), value=json.dumps(
                {**payload, "request_id": rid}).encode())

        async def wait(i: int) -> None:
            await asyncio.wait_for(arrived[f"raw-{run}-{i}"], 120)

        await _closed_loop(min(n, in_flight), in_flight, send, wait)  # warm-up
        run = uuid.uuid4().hex[:8]
        elapsed, latencies = await _closed_loop(n, in_flight, send, wait)
        run = uuid.uuid4().hex[:8]
        _, probe = await _closed_loop(probe_n, 1, send, wait)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.gather(sink.stop(), *(r.stop() for r in relays), producer.stop(), return_exceptions=True)
    return {"requests_per_s_raw": round(n / elapsed, 2), **_latency_figures("latency_raw", latencies),
            **_latency_figures("latency_raw_one_in_flight", probe)}


# ---- 2 and 3. the pipeline -----------------------------------------------------------------------------------


async def pipeline_run(settings: Settings, bootstrap: str, redis_url: str, n: int, in_flight: int,
                       sample_cpu: bool = False, probe_n: int = 0, overrides: Optional[BackendOverrides] = None
                       ) -> tuple[dict, list[float], Any]:
    from schemas.topics import REQUESTS
    from streams.topology import STAGES
    from streams.client import ResultWatcher, new_producer
    from streams.broker import for_broker
    from streams.pipeline import Worker

    settings = await for_broker(bootstrap, settings)
    async with Worker(settings, bootstrap, redis_url, STAGES, overrides=overrides) as worker:
        await worker.wait_assigned(60)
        watcher = ResultWatcher(bootstrap, settings)
        await watcher.start()
        producer = new_producer(bootstrap, settings)
        await producer.start()
        run = uuid.uuid4().hex[:8]
        failed: list[str] = []
        try:
            async def send(i: int) -> None:
                req = request(i, run)
                await producer.send_and_wait(REQUESTS.name(settings.topic_prefix), key=req.request_id.encode(),
                                             value=req.model_dump_json(exclude_none=True).encode())

            async def wait(i: int) -> None:
                result = await watcher.wait(f"{run}-{i}", 300)
                if result.status != "completed":
                    failed.append(result.error or "failed")

            await _closed_loop(min(n, in_flight, 10), in_flight, send, wait)  # warm-up: joins, first-use imports
            run = uuid.uuid4().hex[:8]
            cpu_before = time.process_time()
            elapsed, latencies = await _closed_loop(n, in_flight, send, wait)
            cpu = time.process_time() - cpu_before
            sampler = StageCpu()
            if sample_cpu:
                # A pass of its own: timing every coroutine step costs ~10 ms of CPU a request (measured), which
                # must not count against the pipeline's throughput above.
                run = uuid.uuid4().hex[:8]
                with sampler:
                    await _closed_loop(n, in_flight, send, wait)
            run = uuid.uuid4().hex[:8]
            probe = (await _closed_loop(probe_n, 1, send, wait))[1] if probe_n else []
        finally:
            await producer.stop()
            await watcher.stop()
    if failed:
        raise click.ClickException(f"{len(failed)} of {n} benchmark requests failed, e.g. {failed[0]}")
    return {"elapsed_s": elapsed, "cpu_s": cpu, "probe": probe}, latencies, sampler


async def sequential_run(settings: Settings, redis_url: str, n: int, overrides: Optional[BackendOverrides] = None
                         ) -> float:
    from streams.backends import open_backends
    from streams.topology import STAGES, needs_of

    backends = await open_backends(settings, redis_url, needs_of(STAGES), overrides)
    try:
        agent = SequentialAgent(backends)
        run = uuid.uuid4().hex[:8]
        await agent.run(request(-1, run))  # warm-up, as the pipeline gets
        started = time.perf_counter()
        for i in range(n):
            result = await agent.run(request(i, run))
            if result.status != "completed":
                raise click.ClickException(f"sequential request failed: {result.error}")
        return time.perf_counter() - started
    finally:
        await backends.aclose()


async def sample_payload(settings: Settings, redis_url: str, overrides: BackendOverrides) -> dict:
    """A real critique record (the biggest record a stage reads), so the raw chain moves what the stages move."""
    from schemas.topics import CRITIQUES
    from streams.backends import open_backends
    from streams.topology import STAGES, needs_of

    backends = await open_backends(settings, redis_url, needs_of(STAGES), overrides)
    try:
        record = await SequentialAgent(backends).run(request(0, "payload-" + uuid.uuid4().hex[:6]), until=CRITIQUES)
        return json.loads(record.model_dump_json())
    finally:
        await backends.aclose()


async def measure(base: Settings, n: int, in_flight: int, realistic_n: int, sequential_n: int,
                  llm_s: float, search_s: float, image_s: float, probe_n: int, raw_n: int,
                  image_batch_s: float) -> dict:
    figures: dict[str, Any] = {"machine": machine(), "hops": HOPS, "requests": n, "raw_requests": raw_n,
                               "in_flight": in_flight, "latency_probe_requests": probe_n}
    async with services(base) as (bootstrap, redis_url, home):
        figures["embedded_services"] = {"broker": not base.kafka_bootstrap, "redis": not base.redis_url}
        # Instant: no model, no search backend, a no-op generator (an instant simulated one).
        instant = run_settings(base, home, "instant", corpus_dir=None, serpapi_api_key=None, llm_model=None,
                               vlm_model=None)
        payload = await sample_payload(instant, redis_url, simulated_backends(0.0))
        figures["record_bytes"] = len(json.dumps(payload))

        say(f"1/3 raw chain: {HOPS} hops, {raw_n} requests, {in_flight} in flight")
        figures |= await raw_chain(instant, bootstrap, payload, raw_n, in_flight, probe_n)

        say(f"2/3 pipeline, instant backends: {n} requests, {in_flight} in flight")
        run, latencies, sampler = await pipeline_run(instant, bootstrap, redis_url, n, in_flight, sample_cpu=True,
                                                     probe_n=probe_n, overrides=simulated_backends(0.0))
        figures["requests_per_s_instant"] = round(n / run["elapsed_s"], 2)
        figures |= _latency_figures("latency_instant", latencies)
        figures |= _latency_figures("latency_instant_one_in_flight", run["probe"])
        figures["cpu_s_per_request_process"] = round(run["cpu_s"] / n, 5)
        stages = {k: round(v / n, 5) for k, v in sampler.seconds.items()}  # the sampled pass ran n requests too
        from streams.topology import STAGES

        figures["cpu_s_per_request_by_stage"] = {stage: stages.get(stage, 0.0) for stage in STAGES}
        figures["cpu_s_per_request_outside_stages"] = round(
            figures["cpu_s_per_request_process"] - sum(stages.values()), 5)
        figures["pipeline_over_raw_ratio"] = round(figures["requests_per_s_instant"] / figures["requests_per_s_raw"],
                                                   3)
        # What the pipeline adds to what the broker costs for the same hops, one request at a time: at 50 in
        # flight both latencies are mostly queueing (in flight / throughput), which the throughput figures show.
        for q in (50, 95, 99):
            figures[f"added_latency_p{q}_ms"] = round(
                figures[f"latency_instant_one_in_flight_p{q}_ms"] - figures[f"latency_raw_one_in_flight_p{q}_ms"], 1)

        def realistic() -> Settings:
            return run_settings(base, home, "realistic", corpus_dir=None, serpapi_api_key=None, llm_model=None,
                                vlm_model=None)

        def sleeping(batched_s: float) -> BackendOverrides:
            return simulated_backends(image_s, batched_s, llm_s=llm_s, search_s=search_s)

        figures["simulated_latency_s"] = {"llm_call": llm_s, "search": search_s, "image": image_s,
                                          "further_image_in_batch": image_batch_s}
        say(f"3/3 realistic latencies: pipeline {realistic_n} requests, {in_flight} in flight; "
            f"sequential script {sequential_n} requests")
        batched = realistic()
        run, latencies, _ = await pipeline_run(batched, bootstrap, redis_url, realistic_n, in_flight,
                                               overrides=sleeping(image_batch_s))
        figures["requests_per_s_pipeline_realistic"] = round(realistic_n / run["elapsed_s"], 3)
        figures |= _latency_figures("latency_realistic", latencies)
        # The script renders one image at a time, so the batch cost never reaches it: one run serves both.
        seconds = await sequential_run(batched, redis_url, sequential_n, sleeping(image_batch_s))
        figures["requests_per_s_sequential"] = round(sequential_n / seconds, 3)
        figures["seconds_per_request_sequential"] = round(seconds / sequential_n, 3)
        figures["pipeline_over_sequential_ratio"] = round(
            figures["requests_per_s_pipeline_realistic"] / figures["requests_per_s_sequential"], 2)
        if image_batch_s != image_s:
            # The same run on a GPU that gains nothing from batching: one worker's ceiling is then 1 / image_s.
            say(f"3/3 again without a batching gain ({image_s} s for every image)")
            run, _, _ = await pipeline_run(realistic(), bootstrap, redis_url, realistic_n, in_flight,
                                           overrides=sleeping(image_s))
            figures["requests_per_s_pipeline_realistic_no_batch_gain"] = round(realistic_n / run["elapsed_s"], 3)
            figures["pipeline_over_sequential_ratio_no_batch_gain"] = round(
                figures["requests_per_s_pipeline_realistic_no_batch_gain"] / figures["requests_per_s_sequential"], 2)
    return figures


ROWS = [
    ("raw chain", "requests_per_s_raw", "latency_raw"),
    ("  one request in flight", None, "latency_raw_one_in_flight"),
    ("pipeline, instant backends", "requests_per_s_instant", "latency_instant"),
    ("  one request in flight", None, "latency_instant_one_in_flight"),
    ("pipeline, realistic latencies", "requests_per_s_pipeline_realistic", "latency_realistic"),
    ("  the same, no batching gain", "requests_per_s_pipeline_realistic_no_batch_gain", None),
    ("sequential agent script", "requests_per_s_sequential", None),
]


def render(f: dict) -> str:
    m = f["machine"]
    lines = [f"machine: {m['cpus']} CPUs, {m['cpu_model']}, Python {m['python']}; {f['hops']} hops, "
             f"{f['in_flight']} in flight, record {f['record_bytes']} bytes", "",
             f"{'':32}{'requests/s':>12}{'p50 ms':>10}{'p95 ms':>10}{'p99 ms':>10}"]
    for label, rate, lat in ROWS:
        if rate and rate not in f:
            continue
        cells = [f"{f[f'{lat}_p{q}_ms']:>10.1f}" for q in (50, 95, 99)] if lat else [f"{'-':>10}"] * 3
        lines.append(f"{label:32}" + (f"{f[rate]:>12.2f}" if rate else f"{'':>12}") + "".join(cells))
    lines += ["",
              f"pipeline / raw requests/s:        {f['pipeline_over_raw_ratio']:.3f}   (target >= 0.10)",
              f"added latency p50 / p99 ms:       {f['added_latency_p50_ms']:.1f} / {f['added_latency_p99_ms']:.1f}"
              "   (one in flight, pipeline minus raw; targets <= 30 / <= 150)",
              f"pipeline / sequential requests/s: {f['pipeline_over_sequential_ratio']:.2f}   (target >= 10)"
              + (f"; {f['pipeline_over_sequential_ratio_no_batch_gain']:.2f} without a batching gain"
                 if "pipeline_over_sequential_ratio_no_batch_gain" in f else ""),
              f"CPU s per request, whole process: {f['cpu_s_per_request_process']:.5f}",
              "CPU s per request on the loop:    " + ", ".join(
                  f"{k} {v:.5f}" for k, v in f["cpu_s_per_request_by_stage"].items()),
              f"CPU s per request outside stages: {f['cpu_s_per_request_outside_stages']:.5f}"
              "   (Faust, aiokafka, the benchmark's own client)"]
    return "\n".join(lines)


@click.command()
@click.option("--requests", "n", type=click.IntRange(1), default=300, show_default=True,
              help="Requests for the instant pipeline.")
@click.option("--raw-requests", "raw_n", type=click.IntRange(1), default=2000, show_default=True,
              help="Requests for the raw chain (it is ~20x faster: enough to run for seconds, not a burst).")
@click.option("--in-flight", type=click.IntRange(1), default=50, show_default=True)
@click.option("--realistic-requests", type=click.IntRange(1), default=150, show_default=True,
              help="Requests for the pipeline with realistic latencies.")
@click.option("--sequential-requests", type=click.IntRange(1), default=8, show_default=True,
              help="Requests for the sequential agent script.")
@click.option("--llm-s", type=click.FloatRange(0), default=0.3, show_default=True, help="Seconds per model call.")
@click.option("--search-s", type=click.FloatRange(0), default=0.2, show_default=True, help="Seconds per search.")
@click.option("--image-s", type=click.FloatRange(0), default=0.15, show_default=True,
              help="Seconds for an image alone (or the first of a batch).")
@click.option("--image-batch-s", type=click.FloatRange(0), default=0.075, show_default=True,
              help="Seconds each further image of one batched call adds (0.075: a batch of 8 renders 1.8x faster than "
                   "one at a time; `gapstream bench generator` measured 1.5-2.7x; --image-s: no gain).")
@click.option("--latency-requests", "probe_n", type=click.IntRange(1), default=100, show_default=True,
              help="Requests sent one at a time to measure added latency without queueing.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object of figures on stdout.")
@click.pass_obj
def command(settings: Settings, n: int, raw_n: int, in_flight: int, realistic_requests: int,
            sequential_requests: int, llm_s: float, search_s: float, image_s: float, image_batch_s: float,
            probe_n: int, as_json: bool) -> None:
    """Raw 6-hop chain vs the pipeline (instant backends) vs a sequential agent script (realistic latencies)."""
    if settings is None:
        settings = Settings.from_env()
    # The benchmark logs its own progress; the stages' fallback warnings for the simulated model are expected.
    logging.getLogger("gapstream").setLevel(logging.ERROR)
    figures = asyncio.run(measure(settings, n, in_flight, realistic_requests, sequential_requests,
                                  llm_s, search_s, image_s, probe_n, raw_n, image_batch_s))
    click.echo(json.dumps(figures, indent=2) if as_json else render(figures))
