"""Log lines (streams/logs.py) name the request and stage of their own task, in JSON and in text."""

import asyncio
import io
import json
import logging

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
