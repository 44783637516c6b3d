"""`gapstream`: run a request locally, run workers against a deployment, submit requests, manage memory."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from typing import Any, AsyncIterator, Optional

import click

from infra.settings import Settings, SettingsError
from schemas.records import ImageRequest, ResultRecord, new_request_id
from streams.local import LocalServiceError

log = logging.getLogger("gapstream.cli")


class CliError(Exception):
    """Shown to the user as one line, without a traceback."""


def _settings() -> Settings:
    return Settings.from_env()


def _configure_logging(settings: Settings, verbose: bool) -> None:
    level = logging.INFO if verbose else getattr(logging, settings.log_level, logging.WARNING)
    from streams.logs import configure

    configure(level, settings.log_format)  # GAPSTREAM_LOG_FORMAT=json: one object per line, request_id and stage
    if not verbose:
        # Faust and aiokafka are chatty about routine group membership; transformers and diffusers warn about
        # optional packages and about CLIP's 77-token limit, which the result's prompt already shows.
        for name in ("faust", "mode", "aiokafka"):
            logging.getLogger(name).setLevel(max(level, logging.WARNING))
        # Both libraries reset their own loggers when first used, so only their environment switches stick.
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")


@contextlib.asynccontextmanager
async def _redis_url(settings: Settings) -> AsyncIterator[str]:
    """The configured Redis, or an embedded one whose data lives under GAPSTREAM_HOME."""
    if settings.redis_url:
        yield settings.redis_url
        return
    from streams.local import EmbeddedRedis

    server = await asyncio.to_thread(EmbeddedRedis(settings.home / "redis").start)
    try:
        yield server.url
    finally:
        await asyncio.to_thread(server.stop)


@contextlib.asynccontextmanager
async def _bootstrap(settings: Settings) -> AsyncIterator[str]:
    if settings.kafka_bootstrap:
        yield settings.kafka_bootstrap
        return
    from streams.local import EmbeddedBroker

    broker = await asyncio.to_thread(EmbeddedBroker(log_dir=settings.home / "logs").start)
    try:
        yield broker.bootstrap
    finally:
        await asyncio.to_thread(broker.stop)


def _request(prompt: str, user: str, request_id: Optional[str], **options: Any) -> ImageRequest:
    from pydantic import ValidationError

    from streams.stages import describe_validation_error

    fields = {k: v for k, v in options.items() if v is not None}
    try:
        return ImageRequest(request_id=request_id or new_request_id(), user_id=user, prompt=prompt, **fields)
    except ValidationError as exc:
        raise CliError(f"invalid request: {describe_validation_error(exc)}") from None


request_options = [
    click.option("--user", "-u", required=True, help="Whose memory and preferences to use."),
    click.option("--request-id", default=None, help="Defaults to a new random id."),
    click.option("--negative", "negative_prompt", default=None, help="Things the image must not show."),
    click.option("--width", type=int, default=None),
    click.option("--height", type=int, default=None),
    click.option("--steps", type=int, default=None),
    click.option("--seed", type=int, default=None),
    click.option("--drafts", type=int, default=None, help="Images per round."),
    click.option("--max-rounds", type=int, default=None, help="Critique rounds at most (1-5)."),
    click.option("--accept-score", type=float, default=None, help="Critic score that ends the loop (0-1)."),
    click.option("--timeout", "timeout_s", type=float, default=300.0, show_default=True,
                 help="Seconds to wait for the result."),
    click.option("--json", "as_json", is_flag=True, help="Print the result record as JSON, and nothing else."),
    click.option("--progress/--no-progress", default=True, show_default=True,
                 help="Show each stage as it completes, on stderr."),
]


def with_request_options(func: Any) -> Any:
    for option in reversed(request_options):
        func = option(func)
    return func


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--verbose", "-v", is_flag=True, help="Log progress to stderr.")
@click.pass_context
def cli(ctx: click.Context, verbose: bool) -> None:
    """gapstream: find what an image request leaves out, fill it, generate, critique, loop."""
    settings = _settings()
    _configure_logging(settings, verbose)
    ctx.obj = settings


def with_conversation_options(command: Any) -> Any:
    """--follow and --ask, the same on `run` and `submit`."""
    command = click.option("--ask", "allow_clarification", is_flag=True, default=None,
                           help="Allow a clarifying question when memory cannot fill a gap "
                                "(answer with `gapstream answer`).")(command)
    return click.option("--follow", "parent_request_id", default=None, metavar="REQUEST_ID",
                        help="A follow-up of this earlier request: start from its result and change only what "
                             "PROMPT asks.")(command)


@cli.command()
@click.argument("prompt")
@with_request_options
@with_conversation_options
@click.pass_obj
def run(settings: Settings, prompt: str, user: str, request_id: Optional[str], timeout_s: float, as_json: bool,
        progress: bool, **options: Any) -> None:
    """Run one request through every stage in this process (embedded broker and Redis unless configured)."""
    request = _request(prompt, user, request_id, **options)
    result = asyncio.run(_run_local(settings, request, timeout_s, progress))
    _print_result(result, as_json)
    sys.exit(0 if result.status in ("completed", "needs_clarification") else 1)


async def _run_local(settings: Settings, request: ImageRequest, timeout_s: float, progress: bool = False
                     ) -> ResultRecord:
    from streams.topology import STAGES
    from streams.client import submit_and_wait
    from streams.pipeline import Worker
    from streams.progress import watching

    from streams.broker import for_embedded

    settings = for_embedded(settings)
    async with _bootstrap(settings) as bootstrap, _redis_url(settings) as redis_url:
        async with Worker(settings, bootstrap, redis_url, STAGES):
            async with watching(bootstrap, settings, request.request_id, progress):
                result = await submit_and_wait(bootstrap, settings, request, timeout_s)
    assert result is not None
    return result


@cli.command()
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


@cli.command()
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
    request = _request(prompt, user, request_id, **options)

    async def go() -> Optional[ResultRecord]:
        bootstrap = settings.kafka_bootstrap or ""
        await wait_for_broker(bootstrap)
        # Before the progress watcher, which reads the topics from their current end; resolved for the broker.
        resolved = await ensure_topics(bootstrap, settings)
        async with watching(bootstrap, resolved, request.request_id, wait and progress):
            return await submit_and_wait(bootstrap, resolved, request, timeout_s if wait else None)

    result = asyncio.run(go())
    if result is None:
        click.echo(json.dumps({"request_id": request.request_id}) if as_json else request.request_id)
        return
    _print_result(result, as_json)
    sys.exit(0 if result.status in ("completed", "needs_clarification") else 1)


@cli.group()
def memory() -> None:
    """What gapstream remembers about a user."""


@memory.command("add")
@click.argument("user")
@click.argument("text")
@click.pass_obj
def memory_add(settings: Settings, user: str, text: str) -> None:
    """Remember a fact or preference, e.g. "my dog Max is a corgi" or "I like watercolor"."""
    from agents.memory import items_from_user_text

    items = items_from_user_text(text)

    async def go() -> list[Any]:
        async with _memory_store(settings) as store:
            return await store.add(user, items)

    added = asyncio.run(go())
    for item in items:
        state = "added" if any(a.id == item.id for a in added) else "already known"
        click.echo(f"{item.id}  {item.kind:<10} {state}: {item.text}")


@memory.command("show")
@click.argument("user")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def memory_show(settings: Settings, user: str, as_json: bool) -> None:
    """List what is remembered about USER, oldest first."""

    async def go() -> list[Any]:
        async with _memory_store(settings) as store:
            return await store.items(user)

    items = asyncio.run(go())
    if as_json:
        click.echo(json.dumps([item.model_dump() for item in items], indent=2))
        return
    if not items:
        click.echo(f"nothing remembered about {user}")
    for item in items:
        subject = f" [{item.subject}]" if item.subject else ""
        until = f", until {item.expires_at}" if item.expires_at else ""
        click.echo(f"{item.id}  {item.kind:<10}{subject} {item.text}  (from {item.source}, {item.created_at}{until})")


@memory.command("forget")
@click.argument("user")
@click.option("--item", "item_id", default=None, help="Forget only this item id.")
@click.pass_obj
def memory_forget(settings: Settings, user: str, item_id: Optional[str]) -> None:
    """Delete all of USER's memory (or one item)."""

    async def go() -> int:
        async with _memory_store(settings) as store:
            return await store.forget(user, item_id)

    removed = asyncio.run(go())
    click.echo(f"forgot {removed} item(s) of {user}")


@contextlib.asynccontextmanager
async def _memory_store(settings: Settings) -> AsyncIterator[Any]:
    from infra.redis_memory import RedisMemoryStore

    async with _redis_url(settings) as url:
        store = RedisMemoryStore.from_url(url, prefix=settings.redis_namespace, ttl_s=settings.memory_ttl_s,
                                          history_cap=settings.memory_history_cap)
        try:
            yield store
        finally:
            await store.aclose()


# Command groups that live in their own modules, one line each.
from streams.bench import bench  # noqa: E402
from streams.clarify import answer_command  # noqa: E402

cli.add_command(bench)
cli.add_command(answer_command)
from streams.dlq import dlq  # noqa: E402

cli.add_command(dlq)
from streams.schemas_cli import schemas  # noqa: E402

cli.add_command(schemas)
from ui.command import ui_command  # noqa: E402  (imports nothing of the web stack until it runs)

cli.add_command(ui_command)


def _print_result(result: ResultRecord, as_json: bool) -> None:
    if as_json:
        click.echo(result.model_dump_json(indent=2))
        return
    from streams.report import format_result

    click.echo(format_result(result))


def main(argv: Optional[list[str]] = None) -> None:
    """Entry point: every expected failure is one line on stderr and a non-zero exit, never a traceback."""
    from pydantic import ValidationError

    from streams.topology import UnknownStageError
    from streams.broker import BrokerAccessError
    from streams.client import ResultTimeout

    try:
        cli.main(args=argv, prog_name="gapstream", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("gapstream: aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        click.echo(f"gapstream: {exc.format_message()} (see gapstream --help)", err=True)
        sys.exit(exc.exit_code)
    except ValidationError as exc:
        from streams.stages import describe_validation_error

        click.echo(f"gapstream: invalid input: {describe_validation_error(exc)}", err=True)
        sys.exit(2)
    except (CliError, SettingsError, LocalServiceError, UnknownStageError, ResultTimeout, ValueError) as exc:
        click.echo(f"gapstream: {exc}", err=True)
        sys.exit(2)
    except BrokerAccessError as exc:  # reached, but refused: the message names the setting to check
        click.echo(f"gapstream: {exc}", err=True)
        sys.exit(3)
    except (ConnectionError, OSError) as exc:
        click.echo(f"gapstream: cannot reach a service: {exc}", err=True)
        sys.exit(3)
    except KeyboardInterrupt:
        click.echo("gapstream: interrupted", err=True)
        sys.exit(130)
    except Exception as exc:  # a bug: still one line, the traceback only when asked for
        if {"-v", "--verbose"} & set(argv if argv is not None else sys.argv[1:]):
            raise
        click.echo(f"gapstream: unexpected {type(exc).__name__}: {exc} (run with --verbose for details)", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
