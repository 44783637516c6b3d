"""Log lines name their request and stage; per-request metrics keep labels bounded."""

import asyncio
import io
import json
import logging

from infra import metrics
from schemas.records import Critique, DraftScore, ResultRecord
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


def test_degraded_notes_become_a_few_reason_classes():
    notes = {
        "search: search budget exhausted (8 queries per request); 2 gap(s) unfilled": "search_budget",
        "planner: model unavailable (timeout): heuristic fallback": "llm",
        "search backend serpapi failed for g1: timeout": "search",
        "memory unavailable: ConnectionError: refused": "memory",
        "critic: no readable draft to show the model": "critic",
        "generator failed": "stage_failed",
        "something new": "other",
    }
    assert {note: metrics.degraded_reason_label(note) for note in notes} == notes


def test_a_result_records_drafts_score_and_each_reason_class_once():
    from schemas.records import ImageRequest

    before = metrics.DEGRADED.labels("llm")._value.get()
    walls_before = metrics.REQUEST_WALL_SECONDS._sum.get()
    drafts_before = metrics.REQUEST_DRAFTS._sum.get()
    result = ResultRecord(
        request_id="r-1", user_id="alice", status="completed", score=0.8, rounds=2,
        request=ImageRequest(request_id="r-1", user_id="alice", prompt="x", created_at="2000-01-01T00:00:00+00:00"),
        critiques=[Critique(round=r, verdict="revise", score=0.5,
                            drafts=[DraftScore(uri=f"file:///{r}-{i}.png", score=0.5) for i in range(3)])
                   for r in (0, 1)],
        degraded=["planner: model unavailable (x): heuristic fallback", "enricher: bad answer: heuristic fallback"],
    )
    metrics.observe_result(result)
    assert metrics.DEGRADED.labels("llm")._value.get() == before + 1
    assert metrics.REQUEST_DRAFTS._sum.get() == drafts_before + 6
    assert metrics.REQUEST_WALL_SECONDS._sum.get() == walls_before  # a clock years off is not a latency
    metrics.observe_result(result.model_copy(update={"request": ImageRequest(request_id="r-1", user_id="alice",
                                                                             prompt="x")}))
    assert metrics.REQUEST_WALL_SECONDS._sum.get() > walls_before
