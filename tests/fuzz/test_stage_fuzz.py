"""Bad input against the per-message envelope of every stage: a dead letter with its reason, never a crash.

The named classes (tests/fuzz/bad_inputs.py) run through the planner's processor one by one; hypothesis then throws
arbitrary JSON, arbitrary bytes and mutated valid records at every stage's input topic.
"""

import base64
import json

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from infra.settings import Settings
from schemas.records import DeadLetter, GapsRecord, ImageRequest, ResultRecord
from schemas.topics import CRITIQUES, DEAD_LETTERS, ENRICHED_PROMPTS, GAPS, IMAGES, REQUESTS, RESULTS, SEARCH_RESULTS
from streams.stages import MAX_DEAD_LETTER_PAYLOAD, Delivery, StageProcessor
from tests.fuzz.bad_inputs import BAD_REQUESTS, TOLERATED_REQUESTS, with_ids
from tests.unit.fakes import MemoryDedupe, Sent

pytestmark = pytest.mark.fuzz
SETTINGS = Settings.from_env({"GAPSTREAM_HOME": "/tmp/gapstream-fuzz"})
INPUTS = {"planner": REQUESTS, "searcher": GAPS, "enricher": SEARCH_RESULTS, "generator": ENRICHED_PROMPTS,
          "critic": IMAGES, "publisher": CRITIQUES}


def _processor(stage="planner"):
    sent, calls = Sent(), []

    async def handler(record):
        calls.append(record)
        if isinstance(record, ImageRequest):
            return [(GAPS, GapsRecord(request_id=record.request_id, user_id=record.user_id, request=record))]
        return None

    return StageProcessor(stage, INPUTS[stage], handler, sent, SETTINGS, MemoryDedupe()), sent, calls


def _delivery(value: bytes, topic="gapstream.requests"):
    return Delivery(topic=topic, partition=2, offset=41, key=b"fuzz", value=value)


def _payload_bytes(letter: dict) -> bytes:
    if letter["payload_encoding"] == "base64":
        return base64.b64decode(letter["payload"])
    return letter["payload"].encode("utf-8")


@pytest.mark.parametrize("name,raw,routable", BAD_REQUESTS, ids=[name for name, _, _ in BAD_REQUESTS])
async def test_each_named_bad_request_class_becomes_one_dead_letter(name, raw, routable):
    processor, sent, calls = _processor()
    raw = with_ids(raw, f"fz-{name}")
    await processor.process(_delivery(raw))
    assert calls == []
    [letter] = sent.on(DEAD_LETTERS)
    DeadLetter.model_validate(letter)
    assert letter["stage"] == "planner" and letter["error_class"] and letter["error"].strip()
    assert (letter["topic"], letter["partition"], letter["offset"], letter["key"]) == ("gapstream.requests", 2, 41,
                                                                                       "fuzz")
    original = raw[:MAX_DEAD_LETTER_PAYLOAD]
    assert _payload_bytes(letter) == original and letter["payload_truncated"] == (len(raw) > MAX_DEAD_LETTER_PAYLOAD)
    results = sent.on(RESULTS)
    if routable:
        [result] = results
        assert ResultRecord.model_validate(result).status == "failed" and result["request_id"] == f"fz-{name}"
    else:
        assert results == []


@pytest.mark.parametrize("name,raw", TOLERATED_REQUESTS, ids=[name for name, _ in TOLERATED_REQUESTS])
async def test_tolerated_inputs_are_processed(name, raw):
    processor, sent, calls = _processor()
    await processor.process(_delivery(with_ids(raw, f"ok-{name}")))
    assert len(calls) == 1 and sent.on(DEAD_LETTERS) == []


def test_there_are_at_least_30_named_bad_input_classes():
    names = [name for name, _, _ in BAD_REQUESTS]
    assert len(names) >= 30 and len(set(names)) == len(names)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=50),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=20,
)
id_like = st.one_of(st.text(max_size=200), st.integers(), st.none(), st.sampled_from(["*", "a:b", "a b", "a\nb", ""]))


async def _check_one_outcome(stage, raw):
    processor, sent, calls = _processor(stage)
    await processor.process(_delivery(raw, topic=f"gapstream.{INPUTS[stage].suffix}"))  # must not raise
    letters = sent.on(DEAD_LETTERS)
    assert (len(calls), len(letters)) in ((1, 0), (0, 1)), (calls, letters)
    for letter in letters:
        assert letter["error"].strip() and _payload_bytes(letter) == raw[:MAX_DEAD_LETTER_PAYLOAD]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stage=st.sampled_from(sorted(INPUTS)), value=json_values)
async def test_any_json_at_any_stage_is_processed_or_dead_lettered(stage, value):
    await _check_one_outcome(stage, json.dumps(value).encode())


@settings(max_examples=40, deadline=None)
@given(stage=st.sampled_from(sorted(INPUTS)), raw=st.binary(max_size=300))
async def test_any_bytes_at_any_stage_are_processed_or_dead_lettered(stage, raw):
    await _check_one_outcome(stage, raw)


@settings(max_examples=80, deadline=None)
@given(
    field=st.sampled_from(["request_id", "user_id", "prompt", "negative_prompt", "width", "height", "steps", "seed",
                           "drafts", "max_rounds", "accept_score", "guidance", "extra"]),
    value=st.one_of(json_values, id_like, st.integers(min_value=-2**70, max_value=2**70),
                    st.text(min_size=3990, max_size=4100)),
)
async def test_a_mutated_request_is_processed_or_dead_lettered(field, value):
    body = {"request_id": "r1", "user_id": "eve", "prompt": "a lighthouse", field: value}
    await _check_one_outcome("planner", json.dumps(body).encode())


@settings(max_examples=40, deadline=None)
@given(stage=st.sampled_from(sorted(set(INPUTS) - {"planner"})), request_id=id_like, user_id=id_like,
       extra=st.dictionaries(st.text(max_size=10), json_values, max_size=4))
async def test_a_partial_record_at_a_later_stage_is_dead_lettered(stage, request_id, user_id, extra):
    body = {**extra, "request_id": request_id, "user_id": user_id}
    await _check_one_outcome(stage, json.dumps(body).encode())
