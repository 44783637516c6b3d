"""The topology table: every topic has a writer and a reader, handlers match what a stage reads, and each record a
handler returns goes to the one topic that carries its type."""

from __future__ import annotations

import pytest

from schemas.records import GapsRecord, ImageRequest, ResultRecord, SearchResultsRecord
from schemas.topics import ALL_TOPICS, ANSWERS, CLARIFICATIONS, DEAD_LETTERS, GAPS, REQUESTS, RESULTS
from streams.topology import (
    BY_NAME,
    STAGES,
    SUPPORT_STAGES,
    TOPOLOGY,
    Stage,
    UnknownStageError,
    needs_of,
    parse_stages,
    routed,
    stage_handlers,
)


def test_every_topic_is_written_by_someone_and_read_by_someone():
    written = {spec.suffix for stage in TOPOLOGY for spec in stage.writes}
    read = {spec.suffix for stage in TOPOLOGY for spec in stage.reads}
    by_users = {REQUESTS.suffix, ANSWERS.suffix}  # the public API: users write these ...
    to_users = {RESULTS.suffix, CLARIFICATIONS.suffix}  # ... and read these
    every = {spec.suffix for spec in ALL_TOPICS} - {DEAD_LETTERS.suffix}  # every stage writes dead letters
    assert written | by_users == every
    assert read | to_users == every


def test_the_loop_is_closed_the_enricher_reads_what_the_critic_writes():
    assert set(BY_NAME["critic"].writes) & set(BY_NAME["enricher"].reads)
    assert set(BY_NAME["critic"].writes) & set(BY_NAME["publisher"].reads)


def test_stage_names_come_from_the_table():
    assert STAGES == ("planner", "searcher", "enricher", "generator", "critic", "publisher")
    assert SUPPORT_STAGES == ("watchdog",)
    assert parse_stages("all") == STAGES + SUPPORT_STAGES
    assert parse_stages("publisher, planner,planner") == ("planner", "publisher")
    with pytest.raises(UnknownStageError, match="unknown stage.*plannr.*choose from planner"):
        parse_stages("plannr")


def test_a_worker_builds_only_the_backends_its_stages_need():
    assert needs_of(("publisher",)) == frozenset()
    assert needs_of(("generator",)) == {"text_to_image"}
    assert needs_of(("planner", "searcher")) == {"llm", "embedder", "search"}
    assert "text_to_image" not in needs_of(("planner", "searcher", "enricher", "critic", "publisher", "watchdog"))


def _request() -> ImageRequest:
    return ImageRequest(request_id="r1", user_id="u1", prompt="a red bicycle")


async def test_records_are_routed_by_their_exact_type():
    stage = Stage("planner", (REQUESTS,), (GAPS, RESULTS))
    gaps = GapsRecord(request_id="r1", user_id="u1", request=_request())
    result = ResultRecord(request_id="r1", user_id="u1", status="completed")

    async def handle(record):
        return [gaps, result]

    outputs = await routed(stage, handle)(_request())
    assert [(spec, out) for spec, out in outputs] == [(GAPS, gaps), (RESULTS, result)]


async def test_a_record_no_topic_of_the_stage_carries_is_a_wiring_error():
    stage = Stage("planner", (REQUESTS,), (GAPS,))
    # A subclass of GapsRecord is not a GapsRecord on the wire: it must not slip onto `gaps`.
    wrong = SearchResultsRecord(request_id="r1", user_id="u1", request=_request())

    async def handle(record):
        return [wrong]

    with pytest.raises(TypeError, match="SearchResultsRecord.*gaps"):
        await routed(stage, handle)(_request())


async def test_nothing_returned_means_not_this_stages_to_handle():
    async def handle(record):
        return None

    assert await routed(BY_NAME["publisher"], handle)(_request()) is None


def test_a_stage_whose_handlers_disagree_with_its_reads_is_refused():
    stage = Stage("odd", (REQUESTS, ANSWERS), (GAPS,), handlers=lambda backends: {REQUESTS: None})
    with pytest.raises(ValueError, match="odd: handlers for \\['requests'\\].*reads \\['answers', 'requests'\\]"):
        stage_handlers(stage, backends=None)
