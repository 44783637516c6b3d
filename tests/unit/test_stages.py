"""The per-message envelope every stage runs in: bad input becomes data, duplicates are skipped, retries are bounded."""

import base64
import json

import pytest

from infra.settings import Settings
from schemas.records import DeadLetter, GapsRecord, ImageRequest, ResultRecord
from schemas.topics import DEAD_LETTERS, GAPS, REQUESTS, RESULTS
from streams.stages import Delivery, StageProcessor, is_retriable
from tests.unit.fakes import MemoryDedupe, Sent


def _processor(handler, sent, dedupe=None):
    settings = Settings.from_env({"GAPSTREAM_HOME": "/tmp/gapstream-unit"})
    return StageProcessor("planner", REQUESTS, handler, sent, settings, dedupe or MemoryDedupe())


def _delivery(value: bytes, key=b"k", offset=7):
    return Delivery(topic="gapstream.requests", partition=1, offset=offset, key=key, value=value)


async def _plan(request):
    return [(GAPS, GapsRecord(request_id=request.request_id, user_id=request.user_id, request=request))]


def _request_bytes(**fields):
    body = {"request_id": "r1", "user_id": "alice", "prompt": "a cat"} | fields
    return json.dumps(body).encode()


async def test_a_good_message_is_processed_once_and_timed():
    sent = Sent()
    processor = _processor(_plan, sent)
    await processor.process(_delivery(_request_bytes()))
    await processor.process(_delivery(_request_bytes(), offset=8))  # redelivery
    gaps = sent.on(GAPS)
    assert len(gaps) == 1
    assert gaps[0]["timings"][0]["stage"] == "planner"
    assert not sent.on(DEAD_LETTERS)


@pytest.mark.parametrize("raw, reason", [
    (b"\xff\xfe garbage", "not JSON"),
    (b"[1, 2, 3]", "expected a JSON object"),
    (b'"just a string"', "expected a JSON object"),
])
async def test_undecodable_messages_become_dead_letters_with_the_payload(raw, reason):
    sent = Sent()
    await _processor(_plan, sent).process(_delivery(raw))
    [letter] = [DeadLetter.model_validate(v) for v in sent.on(DEAD_LETTERS)]
    assert reason in letter.error
    assert (letter.topic, letter.partition, letter.offset) == ("gapstream.requests", 1, 7)
    stored = base64.b64decode(letter.payload) if letter.payload_encoding == "base64" else letter.payload.encode()
    assert stored == raw
    assert not sent.on(RESULTS) and not sent.on(GAPS)


@pytest.mark.parametrize("fields, field", [
    ({"prompt": ""}, "prompt"),
    ({"prompt": "x" * 4001}, "prompt"),
    ({"user_id": "bad user\n*"}, "user_id"),
    ({"width": 65}, "width"),
    ({"max_rounds": 9}, "max_rounds"),
    ({"seed": "abc"}, "seed"),
])
async def test_invalid_requests_get_a_dead_letter_and_a_failed_result_when_routable(fields, field):
    sent = Sent()
    await _processor(_plan, sent).process(_delivery(_request_bytes(**fields)))
    [letter] = sent.on(DEAD_LETTERS)
    assert field in letter["error"] and letter["request_id"] == "r1"
    results = [ResultRecord.model_validate(v) for v in sent.on(RESULTS)]
    if field == "user_id":  # a result cannot be addressed to a malformed user
        assert results == []
    else:
        assert [r.status for r in results] == ["failed"] and field in results[0].error


async def test_unknown_fields_are_tolerated():
    sent = Sent()
    await _processor(_plan, sent).process(_delivery(_request_bytes(colour_scheme="teal", v2_field={"a": 1})))
    assert len(sent.on(GAPS)) == 1


async def test_retriable_errors_are_retried_then_dead_lettered(monkeypatch):
    monkeypatch.setattr("streams.stages.RETRY_DELAYS_S", (0.0, 0.0))
    calls = []

    async def flaky(request):
        calls.append(1)
        raise ConnectionError("search backend down")

    sent = Sent()
    await _processor(flaky, sent).process(_delivery(_request_bytes()))
    assert len(calls) == 3
    [letter] = sent.on(DEAD_LETTERS)
    assert letter["retriable"] is True and "retries exhausted" in letter["error"]
    assert sent.on(RESULTS)[0]["status"] == "failed"


async def test_a_stage_bug_is_not_retried_and_the_next_message_still_works():
    calls = []

    async def buggy(request):
        calls.append(request.prompt)
        if request.prompt == "boom":
            raise KeyError("oops")
        return await _plan(request)

    sent = Sent()
    processor = _processor(buggy, sent)
    await processor.process(_delivery(_request_bytes(prompt="boom")))
    await processor.process(_delivery(_request_bytes(request_id="r2", prompt="fine")))
    assert calls == ["boom", "fine"]
    assert sent.on(DEAD_LETTERS)[0]["error_class"] == "KeyError"
    assert [g["request_id"] for g in sent.on(GAPS)] == ["r2"]


async def test_one_failed_result_per_request_even_if_it_fails_twice():
    async def always_bad(request):
        raise ValueError("unsupported")

    sent = Sent()
    processor = _processor(always_bad, sent)
    await processor.process(_delivery(_request_bytes()))
    await processor.process(_delivery(_request_bytes()))
    assert len(sent.on(RESULTS)) == 1
    assert len(sent.on(DEAD_LETTERS)) == 2


async def test_without_redis_the_stage_still_processes():
    class DownDedupe:
        async def seen(self, key):
            raise ConnectionError("redis down")

        async def mark(self, key, ttl_s):
            raise ConnectionError("redis down")

        async def claim(self, key, ttl_s):
            raise ConnectionError("redis down")

    sent = Sent()
    await _processor(_plan, sent, DownDedupe()).process(_delivery(_request_bytes()))
    assert len(sent.on(GAPS)) == 1


def test_retriable_reads_the_errors_own_flag_first():
    class Flagged(Exception):
        retriable = False

    assert is_retriable(TimeoutError())
    assert not is_retriable(Flagged())
    assert not is_retriable(ValueError())
