"""Log lines name their request and stage; per-request metrics keep labels bounded."""

import asyncio
import io
import json
import logging

from infra import metrics
from schemas.records import Critique, Degraded, DraftScore, ResultRecord
from streams import logs


def _lines(buffer: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in buffer.getvalue().splitlines()]


def test_json_lines_carry_the_request_and_stage_of_their_own_task():
    buffer = io.StringIO()
    handler = logs.configure(logging.INFO, "json", buffer)
    log = logging.getLogger("gapstream.test")
    try:
        async def handle(stage: str, request_id: str) -> None:
            with logs.bound(stage, request_id):
                await asyncio.sleep(0.01)  # interleave with the other task
                log.info("working on it")
                await asyncio.to_thread(log.info, "in a thread")

        async def both() -> None:
            await asyncio.gather(handle("planner", "r-1"), handle("critic", "r-2"))

        asyncio.run(both())
        log.warning("between messages")
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("failed")
    finally:
        logging.getLogger().removeHandler(handler)
    lines = _lines(buffer)
    pairs = {(line["stage"], line["request_id"], line["message"]) for line in lines[:4]}
    assert pairs == {("planner", "r-1", "working on it"), ("planner", "r-1", "in a thread"),
                     ("critic", "r-2", "working on it"), ("critic", "r-2", "in a thread")}
    assert lines[4]["request_id"] is None and lines[4]["stage"] is None and lines[4]["level"] == "WARNING"
    assert "ValueError: boom" in lines[5]["exception"]


def test_text_lines_show_the_context_or_dashes():
    buffer = io.StringIO()
    handler = logs.configure(logging.INFO, "text", buffer)
    try:
        with logs.bound("enricher", "r-9"):
            logging.getLogger("gapstream.test").info("hello")
        logging.getLogger("gapstream.test").info("outside")
    finally:
        logging.getLogger().removeHandler(handler)
    first, second = buffer.getvalue().splitlines()
    assert "[enricher r-9]: hello" in first and "[- -]: outside" in second


def test_degraded_reasons_are_counted_by_their_kind_not_read_back_from_prose():
    kinds = ("search_budget", "memory_unavailable", "timeout")
    before = {kind: metrics.DEGRADED.labels(kind)._value.get() for kind in (*kinds, "other")}
    # The sentences would have classified otherwise (a word like "search" or "failed" in them): the kind decides.
    degraded = [Degraded(stage="searcher", kind="search_budget", detail="memory failed"),
                Degraded(stage="planner", kind="memory_unavailable", detail="search timed out"),
                Degraded(stage="critic", kind="timeout", detail="critic failed")]
    metrics.observe_result(ResultRecord(request_id="r-2", user_id="alice", status="failed", degraded=degraded))
    assert {kind: metrics.DEGRADED.labels(kind)._value.get() - before[kind] for kind in before} == {
        "search_budget": 1, "memory_unavailable": 1, "timeout": 1, "other": 0}


def test_a_result_records_drafts_score_and_each_reason_class_once():
    from schemas.records import ImageRequest

    before = metrics.DEGRADED.labels("llm_fallback")._value.get()
    walls_before = metrics.REQUEST_WALL_SECONDS._sum.get()
    drafts_before = metrics.REQUEST_DRAFTS._sum.get()
    result = ResultRecord(
        request_id="r-1", user_id="alice", status="completed", score=0.8, rounds=2,
        request=ImageRequest(request_id="r-1", user_id="alice", prompt="x", created_at="2000-01-01T00:00:00+00:00"),
        critiques=[Critique(round=r, verdict="revise", score=0.5,
                            drafts=[DraftScore(uri=f"file:///{r}-{i}.png", score=0.5) for i in range(3)])
                   for r in (0, 1)],
        degraded=[Degraded(stage="planner", kind="llm_fallback",
                           detail="planner: model unavailable (x): heuristic fallback"),
                  Degraded(stage="enricher", kind="llm_fallback", detail="enricher: bad answer: heuristic fallback")],
    )
    metrics.observe_result(result)
    assert metrics.DEGRADED.labels("llm_fallback")._value.get() == before + 1
    assert metrics.REQUEST_DRAFTS._sum.get() == drafts_before + 6
    assert metrics.REQUEST_WALL_SECONDS._sum.get() == walls_before  # a clock years off is not a latency
    metrics.observe_result(result.model_copy(update={"request": ImageRequest(request_id="r-1", user_id="alice",
                                                                             prompt="x")}))
    assert metrics.REQUEST_WALL_SECONDS._sum.get() > walls_before
