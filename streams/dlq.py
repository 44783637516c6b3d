"""`gapstream dlq list|show|replay`: inspect dead letters and re-publish them after a fix.

A dead letter's id is `<partition>:<offset>` on the dead-letters topic. Replay sends the original payload (base64
decoded when it was binary) with its original key to its original topic, where the stage reads it again; the
stages' dedupe and the result claims keep a replay of something that did go through from producing a second result.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
from dataclasses import dataclass
from typing import Any, Optional

import click

from infra.settings import Settings
from schemas.records import DeadLetter
from schemas.topics import ALL_TOPICS, DEAD_LETTERS

_ID = re.compile(r"^(\d{1,6}):(\d{1,19})$")


@dataclass(frozen=True)
class Letter:
    partition: int
    offset: int
    record: Optional[DeadLetter]
    raw: bytes

    @property
    def id(self) -> str:
        return f"{self.partition}:{self.offset}"


def _bootstrap(settings: Settings) -> str:
    if not settings.kafka_bootstrap:
        raise click.ClickException("dlq needs GAPSTREAM_KAFKA_BOOTSTRAP=host:port of a running deployment")
    return settings.kafka_bootstrap


async def read_letters(settings: Settings) -> list[Letter]:
    """Every dead letter from the beginning of the topic up to its current end."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from streams.faust_app import kafka_client_options

    topic = DEAD_LETTERS.name(settings.topic_prefix)
    consumer = AIOKafkaConsumer(bootstrap_servers=_bootstrap(settings), group_id=None, enable_auto_commit=False,
                                fetch_max_wait_ms=50, **kafka_client_options(settings))
    await consumer.start()
    try:
        from streams.broker import partitions_of

        tps = [TopicPartition(topic, p) for p in (await partitions_of(consumer, [topic]))[topic]]
        if not tps:
            return []
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        letters: list[Letter] = []
        remaining = {tp for tp in tps if ends[tp] > 0}
        while remaining:
            for tp, messages in (await consumer.getmany(timeout_ms=500)).items():
                for message in messages:
                    letters.append(Letter(tp.partition, message.offset, _parse(message.value), message.value or b""))
            for tp in list(remaining):
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
        return sorted(letters, key=lambda letter: (letter.record.at if letter.record else "", letter.id))
    finally:
        await consumer.stop()


def _parse(value: Optional[bytes]) -> Optional[DeadLetter]:
    try:
        return DeadLetter.model_validate_json(value or b"")
    except ValueError:
        return None  # not ours; listed as unreadable rather than hidden


def original_payload(record: DeadLetter) -> bytes:
    if record.payload_encoding == "base64":
        return base64.b64decode(record.payload)
    return record.payload.encode("utf-8")


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
    letters = [lt for lt in asyncio.run(read_letters(settings))
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
    letter = _find(asyncio.run(read_letters(settings)), letter_id)
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


def _replayable(letter: Letter, prefix: str) -> Optional[str]:
    """Why a letter cannot be replayed, or None."""
    r = letter.record
    if r is None:
        return "not a dead-letter record"
    if r.payload_truncated:
        return "its payload was truncated"
    if r.topic not in {spec.name(prefix) for spec in ALL_TOPICS} or r.topic == DEAD_LETTERS.name(prefix):
        return f"its topic {r.topic!r} is not a pipeline topic of prefix {prefix!r}"
    return None


async def _publish(settings: Settings, letters: list[Letter]) -> None:
    from streams.broker import for_broker
    from streams.client import new_producer

    settings = await for_broker(_bootstrap(settings), settings)
    producer = new_producer(_bootstrap(settings), settings)
    await producer.start()
    try:
        for letter in letters:
            r = letter.record
            assert r is not None
            await producer.send_and_wait(r.topic, key=r.key.encode() if r.key else None, value=original_payload(r))
    finally:
        await producer.stop()


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
    letters = asyncio.run(read_letters(settings))
    if replay_all:
        chosen = [lt for lt in letters if stage is None or (lt.record is not None and lt.record.stage == stage)]
        chosen = [lt for lt in chosen if _replayable(lt, settings.topic_prefix) is None]
    else:
        chosen = [_find(letters, letter_id) for letter_id in letter_ids]
        for letter in chosen:
            why = _replayable(letter, settings.topic_prefix)
            if why:
                raise click.ClickException(f"cannot replay {letter.id}: {why}")
    if not dry_run:
        asyncio.run(_publish(settings, chosen))
    verb = "would replay" if dry_run else "replayed"
    for letter in chosen:
        assert letter.record is not None
        click.echo(f"{verb} {letter.id} -> {letter.record.topic} (key {letter.record.key or '-'})")
    click.echo(f"{verb} {len(chosen)} dead letter(s)")


command: Any = dlq
