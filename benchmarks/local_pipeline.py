"""Figures for the local path: start-up, first and second request in one process, and sustained throughput.

    python benchmarks/local_pipeline.py [--requests 60] [--in-flight 8]

Starts the embedded broker and the embedded Redis (a throw-away GAPSTREAM_HOME), runs every stage in this process
with the offline defaults, and prints one JSON object of figures. It asserts nothing: the figures go in the docs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

from infra.settings import Settings
from schemas.records import ImageRequest, new_request_id
from streams.topology import STAGES
from streams.client import ResultWatcher, new_producer, publish_request
from streams.local import EmbeddedBroker, EmbeddedRedis
from streams.pipeline import Worker

PROMPTS = [
    "a poster of my dog Max at the beach in my usual style",
    "a poster for this year's Lantern Fair",
    "a studio shot of the latest Orbit kettle",
    "friends celebrating hanami",
    "a bowl of lemons on a marble counter, soft daylight",
]


async def measure(requests: int, in_flight: int, home: Path, corpus: Path | None) -> dict:
    figures: dict = {"machine": f"{platform.machine()}, {os.cpu_count()} cpu", "stages": list(STAGES)}
    env = {"GAPSTREAM_HOME": str(home)}
    if corpus:
        env["GAPSTREAM_CORPUS_DIR"] = str(corpus)
    settings = Settings.from_env({**env, "GAPSTREAM_BROKER_KIND": "tansu", "GAPSTREAM_TOPIC_REPLICATION": "1"})
    started = time.perf_counter()
    with EmbeddedBroker(log_dir=home) as broker, EmbeddedRedis(home / "redis") as redis_server:
        figures["services_start_s"] = round(time.perf_counter() - started, 3)
        async with Worker(settings, broker.bootstrap, redis_server.url, STAGES) as worker:
            figures["worker_start_s"] = round(time.perf_counter() - started, 3)
            watcher = ResultWatcher(broker.bootstrap, settings)
            await watcher.start()
            producer = new_producer(broker.bootstrap, settings)
            await producer.start()

            async def one(prompt: str, user: str) -> float:
                request = ImageRequest(request_id=new_request_id(), user_id=user, prompt=prompt)
                sent = time.perf_counter()
                await publish_request(producer, settings, request)
                result = await watcher.wait(request.request_id, 120)
                if result.status != "completed":
                    raise RuntimeError(result.error)
                return time.perf_counter() - sent

            try:
                figures["first_request_s"] = round(await one(PROMPTS[0], "bench-alice"), 3)
                figures["first_request_since_start_s"] = round(time.perf_counter() - started, 3)
                figures["second_request_s"] = round(await one(PROMPTS[1], "bench-alice"), 3)

                gate = asyncio.Semaphore(in_flight)

                async def gated(i: int) -> float:
                    async with gate:
                        return await one(PROMPTS[i % len(PROMPTS)], f"bench-u{i % 7}")

                t0 = time.perf_counter()
                latencies = sorted(await asyncio.gather(*(gated(i) for i in range(requests))))
                elapsed = time.perf_counter() - t0
                figures |= {
                    "requests": requests,
                    "in_flight": in_flight,
                    "requests_per_minute": round(requests / elapsed * 60, 1),
                    "latency_p50_s": round(statistics.median(latencies), 3),
                    "latency_p95_s": round(latencies[int(0.95 * (len(latencies) - 1))], 3),
                }
            finally:
                await producer.stop()
                await watcher.stop()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=60)
    parser.add_argument("--in-flight", type=int, default=8)
    parser.add_argument("--corpus", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="gapstream-bench-") as home:
        print(json.dumps(asyncio.run(measure(args.requests, args.in_flight, Path(home), args.corpus)), indent=2))


if __name__ == "__main__":
    main()
