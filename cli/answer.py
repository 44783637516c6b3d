"""`gapstream answer REQUEST_ID TEXT`: answer the question a request asked; the same request resumes."""

from __future__ import annotations

import asyncio
import json
from typing import Any, Optional

import click

from cli.common import CliError, exit_for, print_result, running_broker, running_redis
from schemas.records import ResultRecord
from schemas.questions import AnswerRecord
from schemas.topics import ANSWERS


async def publish_answer(bootstrap: str, settings: Any, answer: AnswerRecord,
                         timeout_s: Optional[float]) -> Optional[ResultRecord]:
    """Publish one answer; with a timeout, wait for the request's next result."""
    from streams.client import publish_and_wait

    return await publish_and_wait(bootstrap, settings, ANSWERS.name(settings.topic_prefix), answer.request_id,
                                  answer.model_dump_json().encode(), timeout_s)


@click.command("answer")
@click.argument("request_id")
@click.argument("text")
@click.option("--user", "-u", required=True, help="Who asked the request (must be its user).")
@click.option("--timeout", "timeout_s", type=float, default=300.0, show_default=True)
@click.option("--no-wait", is_flag=True, help="Publish the answer and return (deployments only).")
@click.option("--json", "as_json", is_flag=True, help="Print the result record as JSON, and nothing else.")
@click.pass_obj
def answer_command(settings: Any, request_id: str, text: str, user: str, timeout_s: float, no_wait: bool,
                   as_json: bool) -> None:
    """Answer the question a request asked (status needs_clarification); the same request resumes."""
    from pydantic import ValidationError

    from streams.stages import describe_validation_error

    try:
        record = AnswerRecord(request_id=request_id, user_id=user, answer=text)
    except ValidationError as exc:
        raise CliError(f"invalid answer: {describe_validation_error(exc)}") from None

    async def local() -> Optional[ResultRecord]:
        from streams.pipeline import Worker
        from streams.topology import STAGES

        async with running_broker(settings) as bootstrap, running_redis(settings) as redis_url:
            async with Worker(settings, bootstrap, redis_url, STAGES):
                return await publish_answer(bootstrap, settings, record, timeout_s)

    async def check() -> None:
        # Say so at once rather than wait out the timeout: the planner ignores answers nobody asked for.
        import redis.asyncio as aioredis

        from infra.redis_clarify import RedisPendingQuestions

        async with running_redis(settings) as url:
            client = aioredis.Redis.from_url(url)
            try:
                seen = await RedisPendingQuestions(client, prefix=settings.redis_namespace).peek(request_id)
            finally:
                await client.aclose()
        if seen is None:
            raise CliError(f"no question is waiting for request {request_id}")
        if seen.user_id != user:
            raise CliError(f"request {request_id} belongs to another user")

    if settings.local_mode or settings.redis_url:
        asyncio.run(check())
    if settings.local_mode:
        result = asyncio.run(local())
    else:
        result = asyncio.run(publish_answer(settings.kafka_bootstrap, settings, record,
                                            None if no_wait else timeout_s))
    if result is None:
        click.echo(json.dumps({"request_id": request_id}) if as_json else f"answer for {request_id} published")
        return
    print_result(result, as_json)
    exit_for(result)
