"""`gapstream memory add|show|forget`: what gapstream remembers about a user, in the deployment's Redis."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any, AsyncIterator, Optional

import click

from cli.common import running_redis
from infra.settings import Settings


@click.group()
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

    async with running_redis(settings) as url:
        store = RedisMemoryStore.from_url(url, prefix=settings.redis_namespace, ttl_s=settings.memory_ttl_s,
                                          history_cap=settings.memory_history_cap)
        try:
            yield store
        finally:
            await store.aclose()
