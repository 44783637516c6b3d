"""`gapstream dlq list|show|replay`: inspect dead letters and re-publish them after a fix (see `streams.dlq`)."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Optional

import click

from infra.settings import Settings
from streams.dlq import NEEDS_BOOTSTRAP, Letter, publish_letters, read_letters, replayable

_ID = re.compile(r"^(\d{1,6}):(\d{1,19})$")


def _read(settings: Settings) -> list[Letter]:
    if not settings.kafka_bootstrap:
        raise click.ClickException(NEEDS_BOOTSTRAP)
    return asyncio.run(read_letters(settings))


def _one_line(letter: Letter) -> str:
    r = letter.record
    if r is None:
        return f"{letter.id:<10} (unreadable dead letter)"
    where = f"{r.topic}[{r.partition}]@{r.offset}"
    error = " ".join(r.error.split())[:100]
    return f"{letter.id:<10} {r.at}  {r.stage:<9} {r.error_class:<22} {r.request_id or '-':<24} {where}  {error}"


def _find(letters: list[Letter], letter_id: str) -> Letter:
    if not _ID.fullmatch(letter_id):
        raise click.BadParameter(f"{letter_id!r} is not a dead letter id (PARTITION:OFFSET, as `dlq list` shows)")
    for letter in letters:
        if letter.id == letter_id:
            return letter
    raise click.ClickException(f"no dead letter {letter_id}")


@click.group()
def dlq() -> None:
    """Dead letters: messages a stage could not process, with the reason and the original payload."""


@dlq.command("list")
@click.option("--stage", default=None, help="Only this stage's dead letters.")
@click.option("--limit", type=click.IntRange(1, 100_000), default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.pass_obj
def list_(settings: Settings, stage: Optional[str], limit: int, as_json: bool) -> None:
    """Dead letters, oldest first: ID, time, stage, error class, request id, origin and reason."""
    letters = [lt for lt in _read(settings)
               if stage is None or (lt.record is not None and lt.record.stage == stage)][-limit:]
    if as_json:
        for letter in letters:
            click.echo(json.dumps({"id": letter.id, **(letter.record.model_dump() if letter.record else {})}))
        return
    if not letters:
        click.echo("no dead letters")
    for letter in letters:
        click.echo(_one_line(letter))


@dlq.command()
@click.argument("letter_id")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def show(settings: Settings, letter_id: str, as_json: bool) -> None:
    """One dead letter in full, with its original payload."""
    letter = _find(_read(settings), letter_id)
    if letter.record is None:
        raise click.ClickException(f"dead letter {letter_id} is not a dead-letter record")
    if as_json:
        click.echo(json.dumps({"id": letter.id, **letter.record.model_dump()}, indent=2))
        return
    r = letter.record
    for name in ("stage", "error_class", "error", "retriable", "topic", "partition", "offset", "key", "request_id",
                 "at", "payload_encoding", "payload_truncated"):
        click.echo(f"{name:>17}: {getattr(r, name)}")
    click.echo("          payload:")
    click.echo(r.payload)


@dlq.command()
@click.argument("letter_ids", nargs=-1)
@click.option("--all", "replay_all", is_flag=True, help="Every replayable dead letter (with --stage: of that stage).")
@click.option("--stage", default=None)
@click.option("--dry-run", is_flag=True, help="Say what would be replayed, send nothing.")
@click.pass_obj
def replay(settings: Settings, letter_ids: tuple[str, ...], replay_all: bool, stage: Optional[str],
           dry_run: bool) -> None:
    """Re-publish dead letters' original payloads to their original topics (after fixing the cause)."""
    if bool(letter_ids) == replay_all:
        raise click.UsageError("give dead letter ids, or --all")
    letters = _read(settings)
    if replay_all:
        chosen = [lt for lt in letters if stage is None or (lt.record is not None and lt.record.stage == stage)]
        chosen = [lt for lt in chosen if replayable(lt, settings.topic_prefix) is None]
    else:
        chosen = [_find(letters, letter_id) for letter_id in letter_ids]
        for letter in chosen:
            why = replayable(letter, settings.topic_prefix)
            if why:
                raise click.ClickException(f"cannot replay {letter.id}: {why}")
    if not dry_run:
        asyncio.run(publish_letters(settings, chosen))
    verb = "would replay" if dry_run else "replayed"
    for letter in chosen:
        assert letter.record is not None
        click.echo(f"{verb} {letter.id} -> {letter.record.topic} (key {letter.record.key or '-'})")
    click.echo(f"{verb} {len(chosen)} dead letter(s)")
