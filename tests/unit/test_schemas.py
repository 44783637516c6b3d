"""The topic records are the public API: what a producer in any language may send, and what it gets back."""

import json

import pytest
from pydantic import ValidationError

from schemas.records import (
    CritiqueRecord,
    DeadLetter,
    GapsRecord,
    ImageRequest,
    ResultRecord,
    SearchResultsRecord,
)
from schemas.topics import ALL_TOPICS, DEFAULT_PREFIX


def test_a_request_needs_only_id_user_and_prompt():
    request = ImageRequest.model_validate_json('{"request_id": "r-1", "user_id": "alice", "prompt": "a fox"}')
    assert (request.schema_version, request.drafts, request.max_rounds, request.width) == (1, 1, 2, None)
    assert request.created_at


def test_unknown_fields_are_ignored_and_the_record_survives_a_round_trip():
    raw = {"request_id": "r-1", "user_id": "alice", "prompt": "a fox", "future_field": [1, 2]}
    request = ImageRequest.model_validate(raw)
    assert ImageRequest.model_validate_json(request.model_dump_json()) == request


@pytest.mark.parametrize("field, value", [
    ("user_id", "a b"), ("user_id", "x" * 129), ("user_id", "*"), ("user_id", "a:b"), ("user_id", "a\nb"),
    ("user_id", ""), ("prompt", ""), ("prompt", "   "), ("prompt", "p" * 4001), ("prompt", "nul\x00byte"),
    ("width", 100), ("height", 4096), ("steps", 0), ("seed", -1), ("max_rounds", 6), ("drafts", 0),
    ("request_id", "has space"), ("width", "wide"),
])
def test_bad_request_fields_are_rejected(field, value):
    raw = {"request_id": "r-1", "user_id": "alice", "prompt": "a fox", field: value}
    with pytest.raises(ValidationError) as error:
        ImageRequest.model_validate(raw)
    assert field in str(error.value)


def test_missing_required_fields_are_named():
    with pytest.raises(ValidationError) as error:
        ImageRequest.model_validate({"request_id": "r-1"})
    assert {e["loc"][0] for e in error.value.errors()} == {"user_id", "prompt"}


def test_stage_records_carry_the_request_and_must_agree_with_it():
    request = ImageRequest(request_id="r-1", user_id="alice", prompt="a fox")
    gaps = GapsRecord(request_id="r-1", user_id="alice", request=request)
    search = SearchResultsRecord.model_validate(gaps.model_dump())
    assert search.request == request and search.round == 0
    with pytest.raises(ValidationError):
        GapsRecord(request_id="r-2", user_id="alice", request=request)


def test_a_critique_without_images_is_invalid():
    request = ImageRequest(request_id="r-1", user_id="alice", prompt="a fox")
    body = {"request_id": "r-1", "user_id": "alice", "request": request.model_dump(), "prompt": "a fox",
            "params": {"width": 64, "height": 64, "steps": 4, "guidance": 1.0, "seeds": [1]},
            "images": [], "critique": {"round": 0, "verdict": "accept", "score": 1.0}}
    with pytest.raises(ValidationError, match="images"):
        CritiqueRecord.model_validate(body)


def test_every_topic_is_declared_once_with_its_record_and_key():
    names = [spec.name() for spec in ALL_TOPICS]
    assert len(set(names)) == len(names) == 10  # issue 6 added clarifications and answers
    assert all(name.startswith(DEFAULT_PREFIX) for name in names)
    assert all(spec.key == "request_id" for spec in ALL_TOPICS)
    assert {spec.record for spec in ALL_TOPICS} >= {ImageRequest, ResultRecord, DeadLetter}


def test_results_and_dead_letters_are_plain_json():
    result = ResultRecord(request_id="r", user_id="u", status="failed", error="planner: boom")
    assert json.loads(result.model_dump_json())["status"] == "failed"


def test_issue6_fields_are_optional_so_older_messages_still_validate():
    from schemas.records import AnswerRecord, GapsRecord, MemoryItem

    old_item = {"id": "m-1", "kind": "fact", "text": "my dog Max is a corgi", "subject": "max", "value": "corgi"}
    assert MemoryItem.model_validate(old_item).expires_at is None
    request = {"request_id": "r-1", "user_id": "alice", "prompt": "a fox"}
    gaps = GapsRecord.model_validate({"request_id": "r-1", "user_id": "alice", "request": request})
    assert gaps.base_prompt is None and gaps.parent is None and gaps.clarification is None
    assert ResultRecord.model_validate({"request_id": "r", "user_id": "u", "status": "completed"}).question is None
    with pytest.raises(ValueError):
        AnswerRecord(request_id="r-1", user_id="alice", answer="   ")
