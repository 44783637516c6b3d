"""The topic records are the public API: what a producer in any language may send, and what it gets back."""

import base64
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
    from schemas.records import GapsRecord, MemoryItem
    from schemas.questions import AnswerRecord

    old_item = {"id": "m-1", "kind": "fact", "text": "my dog Max is a corgi", "subject": "max", "value": "corgi"}
    assert MemoryItem.model_validate(old_item).expires_at is None
    request = {"request_id": "r-1", "user_id": "alice", "prompt": "a fox"}
    gaps = GapsRecord.model_validate({"request_id": "r-1", "user_id": "alice", "request": request})
    assert gaps.base_prompt is None and gaps.parent is None and gaps.clarification is None
    assert ResultRecord.model_validate({"request_id": "r", "user_id": "u", "status": "completed"}).question is None
    with pytest.raises(ValueError):
        AnswerRecord(request_id="r-1", user_id="alice", answer="   ")


# One valid message per topic, as a producer in another language would write it: every nested record appears at
# least once, so a round trip that drops or alters a field anywhere shows.
_REQUEST = {"request_id": "r-1", "user_id": "alice", "prompt": "a fox at the Lantern Fair", "drafts": 2,
            "max_rounds": 3, "accept_score": 0.8, "width": 64, "height": 64, "seed": 7}
_IMAGE = {"uri": "file:///images/r-1/0.png", "sha256": "0" * 64, "width": 64, "height": 64, "seed": 7}
_GAPS = {
    "request_id": "r-1", "user_id": "alice", "round": 1, "request": _REQUEST,
    "gaps": [{"id": "g1", "kind": "knowledge", "description": "what the Lantern Fair looks like",
              "strategy": "search", "subject": "Lantern Fair", "query": "Lantern Fair 2026", "time_sensitive": True,
              "status": "filled", "value": "emerald lanterns", "source": "lantern-fair.md",
              "filled_by": "search:corpus"}],
    "checklist": [{"id": "c1", "text": "emerald lanterns", "terms": ["emerald", "lanterns"], "gap_id": "g1"}],
    "memory_used": [{"id": "m-1", "kind": "fact", "text": "my dog Max is a corgi", "subject": "max",
                     "value": "corgi"}],
}
_SEARCH_RESULTS = {
    **_GAPS,
    "searches": [{"gap_id": "g1", "query": "Lantern Fair 2026", "backend": "corpus", "seconds": 0.01,
                  "hits": [{"source": "lantern-fair.md", "text": "lanterns are emerald", "score": 2.5}]}],
    "facts": [{"id": "f1", "gap_id": "g1", "text": "lanterns are emerald", "source": "lantern-fair.md"}],
}
_CRITIQUE = {"round": 0, "verdict": "revise", "score": 0.5, "checks": [{"item_id": "c1", "passed": False}],
             "drafts": [{"uri": _IMAGE["uri"], "score": 0.5, "quality": {"std": 30.0}}],
             "suggestions": ["add: emerald lanterns"], "prompt": "a fox at the Lantern Fair"}
_ENRICHED = {
    **_SEARCH_RESULTS,
    "prompt": "a fox at the Lantern Fair, emerald lanterns",
    "additions": [{"text": "emerald lanterns", "gap_id": "g1", "source": "lantern-fair.md"}],
    "params": {"width": 64, "height": 64, "steps": 4, "guidance": 7.5, "seeds": [7, 8]},
    "prompt_history": ["a fox at the Lantern Fair"], "critiques": [_CRITIQUE],
    "best": _IMAGE, "best_score": 0.5, "best_prompt": "a fox at the Lantern Fair",
}
_IMAGES = {**_ENRICHED, "images": [_IMAGE], "model": "tiny-sd"}
_DEAD_LETTER = {"stage": "planner", "error_class": "ValidationError", "error": "invalid requests record: prompt",
                "topic": "gapstream.requests", "partition": 0, "offset": 7, "key": "r-1", "request_id": "r-1",
                "payload": '{"request_id": "r-1"}'}
EXAMPLES = {
    "requests": _REQUEST,
    "gaps": _GAPS,
    "search-results": _SEARCH_RESULTS,
    "enriched-prompts": _ENRICHED,
    "images": _IMAGES,
    "critiques": {**_IMAGES, "critique": {**_CRITIQUE, "round": 1, "verdict": "exhausted",
                                          "stop_reason": "max_rounds=3 reached"}},
    "results": {"request_id": "r-1", "user_id": "alice", "status": "completed", "prompt": _ENRICHED["prompt"],
                "images": [_IMAGE], "best_image": _IMAGE, "score": 0.5},
    "dead-letters": _DEAD_LETTER,
    "clarifications": {"request_id": "r-1", "user_id": "alice", "gap_id": "g2", "subject": "dog",
                       "question": "What does your dog look like?", "expires_at": "2026-11-26T12:00:00.000+00:00"},
    "answers": {"request_id": "r-1", "user_id": "alice", "answer": "a corgi with a red collar"},
}
# What a producer must always send; anything else has a default. Listed here, not read from the models, so that
# loosening (or tightening) a record's contract fails a test.
REQUIRED = {
    "requests": {"request_id", "user_id", "prompt"},
    "gaps": {"request_id", "user_id", "request"},
    "search-results": {"request_id", "user_id", "request"},
    "enriched-prompts": {"request_id", "user_id", "request", "prompt", "params"},
    "images": {"request_id", "user_id", "request", "prompt", "params", "images"},
    "critiques": {"request_id", "user_id", "request", "prompt", "params", "images", "critique"},
    "results": {"request_id", "user_id", "status"},
    "dead-letters": {"stage", "error_class", "error", "topic", "payload"},
    "clarifications": {"request_id", "user_id", "gap_id", "subject", "question", "expires_at"},
    "answers": {"request_id", "user_id", "answer"},
}
SPECS = {spec.suffix: spec for spec in ALL_TOPICS}


def _contains(dumped, example) -> bool:
    """True when every value of `example` is in `dumped` unchanged (defaults may add fields; none may go)."""
    if isinstance(example, dict):
        return isinstance(dumped, dict) and all(k in dumped and _contains(dumped[k], v) for k, v in example.items())
    if isinstance(example, list):
        return isinstance(dumped, list) and len(dumped) == len(example) and all(map(_contains, dumped, example))
    return dumped == example


def _replace(example: dict, path: tuple, value) -> dict:
    """A deep copy of `example` with the field at `path` (keys and list indexes) set to `value`."""
    copy = json.loads(json.dumps(example))
    target = copy
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return copy


def test_every_topic_has_an_example_and_its_required_fields_here():
    assert set(EXAMPLES) == set(REQUIRED) == set(SPECS)


@pytest.mark.parametrize("suffix", sorted(SPECS))
def test_a_valid_message_of_every_topic_survives_a_json_round_trip(suffix):
    record_type = SPECS[suffix].record
    record = record_type.model_validate_json(json.dumps(EXAMPLES[suffix]))
    text = record.model_dump_json()
    assert record_type.model_validate_json(text) == record
    assert _contains(json.loads(text), EXAMPLES[suffix])


@pytest.mark.parametrize("suffix", sorted(SPECS))
def test_every_topic_requires_its_required_fields_and_only_those(suffix):
    record_type = SPECS[suffix].record
    assert {name for name, info in record_type.model_fields.items() if info.is_required()} == REQUIRED[suffix]
    for name in REQUIRED[suffix]:
        without = {k: v for k, v in EXAMPLES[suffix].items() if k != name}
        with pytest.raises(ValidationError) as error:
            record_type.model_validate(without)
        assert name in {e["loc"][0] for e in error.value.errors() if e["type"] == "missing"}, name


LIMITS = [
    ("requests", ("accept_score",), 1.5), ("requests", ("accept_score",), -0.1), ("requests", ("guidance",), 30.5),
    ("requests", ("drafts",), 9), ("requests", ("max_rounds",), 0), ("requests", ("width",), 2056),
    ("requests", ("width",), 12), ("requests", ("seed",), 2**32), ("requests", ("request_id",), "x" * 129),
    ("requests", ("parent_request_id",), "a b"), ("requests", ("negative_prompt",), "n" * 4001),
    ("gaps", ("round",), -1), ("gaps", ("round",), 6), ("gaps", ("user_id",), "a:b"),
    ("gaps", ("gaps", 0, "kind"), "guess"), ("gaps", ("gaps", 0, "strategy"), "ask twice"),
    ("gaps", ("gaps", 0, "status"), "done"), ("gaps", ("request", "prompt"), ""),
    ("gaps", ("memory_used", 0, "kind"), "rumour"),
    ("search-results", ("searches", 0, "hits", 0, "score"), "high"), ("search-results", ("facts", 0, "source"), None),
    ("enriched-prompts", ("params", "seeds"), "seven"), ("enriched-prompts", ("critiques", 0, "verdict"), "maybe"),
    ("enriched-prompts", ("best_score",), "best"),
    ("images", ("images",), []), ("images", ("images", 0, "width"), "wide"),
    ("critiques", ("critique", "verdict"), "great"), ("critiques", ("critique", "score"), "high"),
    ("results", ("status",), "done"), ("results", ("best_image", "sha256"), None),
    ("dead-letters", ("payload_encoding",), "latin-1"), ("dead-letters", ("partition",), "first"),
    ("dead-letters", ("retriable",), "sometimes"),
    ("clarifications", ("request_id",), "a b"), ("clarifications", ("user_id",), "*"),
    ("answers", ("answer",), ""), ("answers", ("answer",), "   "), ("answers", ("answer",), "x" * 1001),
    ("answers", ("answer",), "a\x01b"), ("answers", ("user_id",), "a b"),
]


@pytest.mark.parametrize("suffix, path, value", LIMITS, ids=[f"{s}:{'.'.join(map(str, p))}" for s, p, _ in LIMITS])
def test_out_of_limit_values_are_rejected_where_they_are(suffix, path, value):
    SPECS[suffix].record.model_validate(EXAMPLES[suffix])  # the example itself is fine
    with pytest.raises(ValidationError) as error:
        SPECS[suffix].record.model_validate(_replace(EXAMPLES[suffix], path, value))
    assert any(tuple(e["loc"][:len(path)]) == path for e in error.value.errors()), error.value.errors()


@pytest.mark.parametrize("encoding", ["utf-8", "base64"])
def test_a_dead_letter_accepts_exactly_two_payload_encodings(encoding):
    letter = DeadLetter.model_validate({**_DEAD_LETTER, "payload_encoding": encoding})
    assert letter.payload_encoding == encoding
    assert DeadLetter.model_json_schema()["properties"]["payload_encoding"]["enum"] == ["utf-8", "base64"]


def test_a_dead_letter_carries_undecodable_bytes_as_base64_and_defaults_to_utf8_untruncated():
    raw = b"\xff{not json\x00"
    letter = DeadLetter.model_validate({**_DEAD_LETTER, "request_id": None, "payload_encoding": "base64",
                                        "payload": base64.b64encode(raw).decode("ascii")})
    back = DeadLetter.model_validate_json(letter.model_dump_json())
    assert back.payload_encoding == "base64" and base64.b64decode(back.payload, validate=True) == raw
    plain = DeadLetter.model_validate(_DEAD_LETTER)
    assert (plain.payload_encoding, plain.payload_truncated, plain.retriable) == ("utf-8", False, False)
    assert plain.at and plain.schema_version == 1
