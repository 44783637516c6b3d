"""The committed JSON Schemas and AsyncAPI document are what a producer in another language codes against."""

import json
from pathlib import Path

import pytest
import yaml
from jsonschema import Draft202012Validator
from pydantic import BaseModel, ValidationError

from schemas import export
from schemas.records import (
    Critique,
    CritiqueRecord,
    DeadLetter,
    Gap,
    GenerationParams,
    ImageRef,
    ImageRequest,
    ResultRecord,
)
from schemas.topics import ALL_TOPICS, DEFAULT_PREFIX, TopicSpec

SCHEMAS = Path(export.__file__).parent


def _validator(suffix: str) -> Draft202012Validator:
    schema = json.loads((SCHEMAS / "json" / f"{suffix}.schema.json").read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def test_committed_schema_files_are_up_to_date():
    outdated = export.stale(SCHEMAS, export.render())
    assert not outdated, (f"stale schema files {outdated}: the records or topics changed; "
                          f"run `gapstream schemas export` and commit schemas/json and schemas/asyncapi.yaml")


def test_every_topic_in_the_registry_gets_a_schema_and_a_channel(tmp_path):
    extra = TopicSpec("brand-new", ImageRequest, description="a topic added later")
    files = export.render((*ALL_TOPICS, extra))
    assert "json/brand-new.schema.json" in files
    assert export.write(tmp_path, files) and export.stale(tmp_path, files) == []
    document = yaml.safe_load(files["asyncapi.yaml"])
    assert document["channels"]["brandNew"]["address"] == f"{DEFAULT_PREFIX}brand-new"


def test_the_asyncapi_document_names_every_topic_key_and_message():
    document = yaml.safe_load((SCHEMAS / "asyncapi.yaml").read_text())
    assert document["asyncapi"].startswith("3.")
    addresses = {channel["address"]: channel for channel in document["channels"].values()}
    assert set(addresses) == {spec.name(DEFAULT_PREFIX) for spec in ALL_TOPICS}
    messages = document["components"]["messages"]
    for spec in ALL_TOPICS:
        channel = addresses[spec.name(DEFAULT_PREFIX)]
        (ref,) = [m["$ref"] for m in channel["messages"].values()]
        message = messages[ref.rsplit("/", 1)[-1]]
        payload = message["payload"]["schema"]["$ref"]
        assert (SCHEMAS / payload).is_file() and payload.endswith(f"{spec.suffix}.schema.json")
        assert message["bindings"]["kafka"]["key"]["type"] == "string"
    channel_ids = set(document["channels"])
    for name, operation in document["operations"].items():
        assert operation["action"] in ("send", "receive")
        assert operation["channel"]["$ref"].removeprefix("#/channels/") in channel_ids, name
    actions = {(op["channel"]["$ref"], op["action"]) for op in document["operations"].values()}
    assert ("#/channels/requests", "receive") in actions and ("#/channels/results", "send") in actions


VALID_REQUESTS = [
    {"request_id": "r-42", "user_id": "alice", "prompt": "a fox in my usual style"},
    {"request_id": "r-43", "user_id": "bob@example.com", "prompt": "a kettle", "width": 512, "height": 768,
     "drafts": 4, "max_rounds": 3, "seed": 7, "accept_score": 0.8, "a_field_from_the_future": [1]},
]
INVALID_REQUESTS = [
    {"user_id": "alice", "prompt": "a fox"},  # no request_id
    {"request_id": "r-1", "user_id": "alice"},  # no prompt
    {"request_id": "r-1", "user_id": "a b", "prompt": "a fox"},
    {"request_id": "has space", "user_id": "alice", "prompt": "a fox"},
    {"request_id": "r-1", "user_id": "alice", "prompt": "   "},
    {"request_id": "r-1", "user_id": "alice", "prompt": "nul\x00byte"},
    {"request_id": "r-1", "user_id": "alice", "prompt": "a fox", "width": 65},
    {"request_id": "r-1", "user_id": "alice", "prompt": "a fox", "height": 4096},
    {"request_id": "r-1", "user_id": "alice", "prompt": "a fox", "drafts": 0},
    {"request_id": "r-1", "user_id": "alice", "prompt": "a fox", "max_rounds": "two"},
    {"request_id": "r-1", "user_id": "alice", "prompt": "p" * 4001},
]


@pytest.mark.parametrize("message", VALID_REQUESTS)
def test_valid_requests_pass_the_schema_and_the_worker(message):
    assert not list(_validator("requests").iter_errors(message))
    ImageRequest.model_validate(message)


@pytest.mark.parametrize("message", INVALID_REQUESTS)
def test_invalid_requests_fail_the_schema_as_they_fail_the_worker(message):
    assert list(_validator("requests").iter_errors(message)), message
    with pytest.raises(ValidationError):
        ImageRequest.model_validate(message)


def _dump(record: BaseModel) -> dict:
    return json.loads(record.model_dump_json())


def _critique_record() -> CritiqueRecord:
    request = ImageRequest(request_id="r-7", user_id="alice", prompt="a poster of my dog Max")
    image = ImageRef(uri="file:///data/images/r-7/0.png", sha256="0" * 64, width=64, height=64, seed=3)
    return CritiqueRecord(
        request_id="r-7", user_id="alice", request=request, round=1,
        gaps=[Gap(id="g1", kind="memory", description="what Max looks like", strategy="memory", status="filled",
                  value="a corgi", source="memory:m1")],
        prompt="a poster of my dog Max, a corgi", params=GenerationParams(width=64, height=64, steps=4, guidance=5.0,
                                                                          seeds=[3]),
        images=[image], model="tiny",
        critique=Critique(round=1, verdict="accept", score=0.9),
    )


def test_stage_records_and_results_as_workers_write_them_match_their_schemas():
    critique = _dump(_critique_record())
    # Each stage's record extends the one before; the schemas tolerate the extra fields, as the workers do.
    for suffix in ("gaps", "search-results", "enriched-prompts", "images", "critiques"):
        errors = list(_validator(suffix).iter_errors(critique))
        assert not errors, (suffix, errors[0].message)
    result = _dump(ResultRecord(request_id="r-7", user_id="alice", status="completed", rounds=1, score=0.9))
    assert not list(_validator("results").iter_errors(result))
    letter = _dump(DeadLetter(stage="planner", error_class="ValidationError", error="x", topic="t", payload="{}"))
    assert not list(_validator("dead-letters").iter_errors(letter))


def test_broken_stage_records_fail_their_schemas():
    critique = _dump(_critique_record())
    assert list(_validator("images").iter_errors({**critique, "images": []}))  # a round without drafts
    assert list(_validator("critiques").iter_errors({k: v for k, v in critique.items() if k != "critique"}))
    assert list(_validator("results").iter_errors({"request_id": "r-1", "user_id": "a", "status": "done"}))
    assert list(_validator("gaps").iter_errors({**critique, "gaps": [{"id": "g1", "kind": "mood"}]}))
