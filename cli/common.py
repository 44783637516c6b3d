"""What every `gapstream` command shares: the one-line error, the services it talks to, request options, output."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
from typing import Any, AsyncIterator, Optional

import click

from cli.report import format_result
from infra.settings import Settings
from schemas.records import ImageRequest, ResultRecord, new_request_id
from streams.logs import configure


class CliError(Exception):
    """Shown to the user as one line, without a traceback."""


def configure_logging(settings: Settings, verbose: bool) -> None:
    level = logging.INFO if verbose else getattr(logging, settings.log_level, logging.WARNING)
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
async def running_redis(settings: Settings) -> AsyncIterator[str]:
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
async def running_broker(settings: Settings) -> AsyncIterator[str]:
    """The configured broker, or an embedded one whose logs live under GAPSTREAM_HOME."""
    if settings.kafka_bootstrap:
        yield settings.kafka_bootstrap
        return
    from streams.local import EmbeddedBroker

    broker = await asyncio.to_thread(EmbeddedBroker(log_dir=settings.home / "logs").start)
    try:
        yield broker.bootstrap
    finally:
        await asyncio.to_thread(broker.stop)


def build_request(prompt: str, user: str, request_id: Optional[str], **options: Any) -> ImageRequest:
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


def with_conversation_options(command: Any) -> Any:
    """--follow and --ask, the same on `run` and `submit`."""
    command = click.option("--ask", "allow_clarification", is_flag=True, default=None,
                           help="Allow a clarifying question when memory cannot fill a gap "
                                "(answer with `gapstream answer`).")(command)
    return click.option("--follow", "parent_request_id", default=None, metavar="REQUEST_ID",
                        help="A follow-up of this earlier request: start from its result and change only what "
                             "PROMPT asks.")(command)


def print_result(result: ResultRecord, as_json: bool) -> None:
    if as_json:
        click.echo(result.model_dump_json(indent=2))
        return
    click.echo(format_result(result))


def exit_for(result: ResultRecord) -> None:
    """A question waiting for its answer is a success too: the request goes on once it is answered."""
    sys.exit(0 if result.status in ("completed", "needs_clarification") else 1)
