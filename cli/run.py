"""`gapstream run|worker|submit`: one request in this process, stages against a deployment, a request to one."""

from __future__ import annotations

import asyncio
import json
import signal
from typing import Any, Optional

import click

from cli.common import (
    CliError,
    build_request,
    exit_for,
    print_result,
    running_broker,
    running_redis,
    with_conversation_options,
    with_request_options,
)
from cli.progress import Printer
from infra.settings import Settings
from schemas.records import ImageRequest, ResultRecord


@click.command()
@click.argument("prompt")
@with_request_options
@with_conversation_options
@click.pass_obj
def run(settings: Settings, prompt: str, user: str, request_id: Optional[str], timeout_s: float, as_json: bool,
        progress: bool, **options: Any) -> None:
    """Run one request through every stage in this process (embedded broker and Redis unless configured)."""
    request = build_request(prompt, user, request_id, **options)
    result = asyncio.run(_run_local(settings, request, timeout_s, progress))
    print_result(result, as_json)
    exit_for(result)


async def _run_local(settings: Settings, request: ImageRequest, timeout_s: float, progress: bool = False
                     ) -> ResultRecord:
    # The wiring imports Faust and aiokafka: only the commands that run stages pay for them, not `--help`.
    from streams.broker import for_embedded
    from streams.client import submit_and_wait
    from streams.pipeline import Worker
    from streams.progress import watching
    from streams.topology import STAGES

    settings = for_embedded(settings)
    async with running_broker(settings) as bootstrap, running_redis(settings) as redis_url:
        async with Worker(settings, bootstrap, redis_url, STAGES):
            async with watching(bootstrap, settings, request.request_id, Printer(), progress):
                result = await submit_and_wait(bootstrap, settings, request, timeout_s)
    assert result is not None
    return result


@click.command()
@click.option("--stages", default="all", show_default=True,
              help="Comma-separated stages to run: planner,searcher,enricher,generator,critic,publisher.")
@click.option("--metrics-port", type=int, default=None,
              help="Serve Prometheus /metrics on this port (default GAPSTREAM_METRICS_PORT, 0 = off).")
@click.pass_obj
def worker(settings: Settings, stages: str, metrics_port: Optional[int]) -> None:
    """Run stages against GAPSTREAM_KAFKA_BOOTSTRAP and GAPSTREAM_REDIS_URL until interrupted."""
    from streams.topology import parse_stages

    chosen = parse_stages(stages)
    if not settings.kafka_bootstrap:
        raise CliError("worker needs GAPSTREAM_KAFKA_BOOTSTRAP=host:port (use `gapstream run` for a local run)")
    if not settings.redis_url:
        raise CliError("worker needs GAPSTREAM_REDIS_URL=redis://host:port/0")
    asyncio.run(_serve(settings, chosen, settings.metrics_port if metrics_port is None else metrics_port))


async def _serve(settings: Settings, stages: tuple[str, ...], metrics_port: int) -> None:
    from infra import metrics
    from streams import logs
    from streams.client import wait_for_broker
    from streams.faust_app import kafka_client_options
    from streams.lag import start_for
    from streams.pipeline import Worker

    await wait_for_broker(settings.kafka_bootstrap or "")
    port = metrics.serve(metrics_port, settings.metrics_host)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with Worker(settings, settings.kafka_bootstrap or "", settings.redis_url or "", stages) as running:
        where = f", metrics on {settings.metrics_host}:{port}/metrics" if port else ""
        logs.announce(f"gapstream worker: stages {','.join(stages)} on {settings.kafka_bootstrap}{where}")
        # Consumer lag is only worth sampling where someone scrapes it.
        lag = (await start_for(running.apps, running.bootstrap, settings.lag_interval_s,
                               kafka_client_options(settings))
               if port and settings.lag_interval_s > 0 else None)
        try:
            await stop.wait()
        finally:
            if lag is not None:
                await lag.aclose()
    logs.announce("gapstream worker: stopped")


@click.command()
@click.argument("prompt")
@with_request_options
@with_conversation_options
@click.option("--wait", is_flag=True, help="Wait for the result and print it.")
@click.pass_obj
def submit(settings: Settings, prompt: str, user: str, request_id: Optional[str], timeout_s: float, as_json: bool,
           wait: bool, progress: bool, **options: Any) -> None:
    """Publish a request to a running deployment (GAPSTREAM_KAFKA_BOOTSTRAP)."""
    from streams.client import ensure_topics, submit_and_wait, wait_for_broker
    from streams.progress import watching

    if not settings.kafka_bootstrap:
        raise CliError("submit needs GAPSTREAM_KAFKA_BOOTSTRAP=host:port of a running deployment")
    request = build_request(prompt, user, request_id, **options)

    async def go() -> Optional[ResultRecord]:
        bootstrap = settings.kafka_bootstrap or ""
        await wait_for_broker(bootstrap)
        # Before the progress watcher, which reads the topics from their current end; resolved for the broker.
        resolved = await ensure_topics(bootstrap, settings)
        async with watching(bootstrap, resolved, request.request_id, Printer(), wait and progress):
            return await submit_and_wait(bootstrap, resolved, request, timeout_s if wait else None)

    result = asyncio.run(go())
    if result is None:
        click.echo(json.dumps({"request_id": request.request_id}) if as_json else request.request_id)
        return
    print_result(result, as_json)
    exit_for(result)
