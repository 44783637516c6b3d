"""`python -m benchmarks.sim_worker --stages generator --seconds-per-image X`: the scale-out benchmark's worker.

The same `streams.pipeline.Worker` as `gapstream worker` (same consumer groups, settings from the environment,
stopped by SIGTERM or SIGINT), with the model simulated (`benchmarks.simulated`) and handed in as an override: the
simulation is the benchmark's choice, never something a deployment's settings can switch on. No metrics endpoint
and no lag sampling: the benchmark reads its figures from the topics.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from typing import Optional

from benchmarks.simulated import simulated_backends
from infra.settings import Settings
from streams import logs
from streams.backends import BackendOverrides
from streams.topology import parse_stages

STARTED = "benchmark worker: stages"


async def serve(settings: Settings, stages: tuple[str, ...], overrides: BackendOverrides) -> None:
    from streams.client import wait_for_broker
    from streams.pipeline import Worker

    await wait_for_broker(settings.kafka_bootstrap or "")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with Worker(settings, settings.kafka_bootstrap or "", settings.redis_url or "", stages,
                      overrides=overrides):
        logs.announce(f"{STARTED} {','.join(stages)} on {settings.kafka_bootstrap}, simulated models")
        await stop.wait()
    logs.announce("benchmark worker: stopped")


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.sim_worker",
                                     description="The scale-out benchmark's worker: the Worker, its model simulated.")
    parser.add_argument("--stages", default="generator", help="Comma-separated stages (default: generator).")
    parser.add_argument("--seconds-per-image", type=float, required=True,
                        help="Simulated seconds for an image alone (or the first of a batch).")
    parser.add_argument("--seconds-per-batched-image", type=float, default=None,
                        help="Simulated seconds each further image of a batch adds (default: as an image alone).")
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
        stages = parse_stages(args.stages)
        overrides = simulated_backends(args.seconds_per_image, args.seconds_per_batched_image)
    except ValueError as exc:  # SettingsError, an unknown stage, a negative latency
        parser.error(str(exc))
    if not settings.kafka_bootstrap or not settings.redis_url:
        parser.error("needs GAPSTREAM_KAFKA_BOOTSTRAP and GAPSTREAM_REDIS_URL")
    logs.configure(getattr(logging, settings.log_level, logging.WARNING), settings.log_format)
    # Routine group-membership chatter would bury the one line the benchmark waits for.
    for name in ("faust", "mode", "aiokafka"):
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        asyncio.run(serve(settings, stages, overrides))
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
