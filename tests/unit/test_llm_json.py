"""Reading a model's JSON answer (infra/llm_json.py): the object found leniently, and the valid part salvaged."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ValidationError

from infra.llm_json import extract_json_object, salvage, short_validation_reason


class Item(BaseModel):
    name: str
    size: int


class Answer(BaseModel):
    title: str
    items: list[Item] = []
    tags: list[str] = []


@pytest.mark.parametrize("text", [
    '{"a": 1}',
    '  \n{"a": 1}\n ',
    'Here it is:\n```json\n{"a": 1}\n```\nHope that helps.',
    '```\n{"a": 1}\n```',
    '```json\n{"a": oops}\n```\n```json\n{"a": 1}\n```',  # the first block that decodes
    'Sure! {"a": 1} is my answer.',
    'Sure! {"a": 1} and also {not json}',  # braces after the object
    'Ignore {broken then {"a": 1} at last',
])
def test_the_object_is_found_in_prose_fences_and_plain_json(text):
    assert extract_json_object(text) == {"a": 1}


def test_nested_objects_come_back_whole():
    assert extract_json_object('ok: {"a": {"b": [1, {"c": 2}]}} done') == {"a": {"b": [1, {"c": 2}]}}


@pytest.mark.parametrize("text", ["", "   ", "no json here", "a list [1, 2] is not an object", "{never closed"])
def test_an_answer_without_an_object_is_an_error(text):
    with pytest.raises(ValueError):
        extract_json_object(text)


def _error(data) -> ValidationError:
    try:
        Answer.model_validate(data)
    except ValidationError as exc:
        return exc
    raise AssertionError("expected the data to be invalid")


def test_a_validation_reason_names_the_model_and_where_the_answer_is_wrong():
    reason = short_validation_reason(_error({"items": [{"name": "x", "size": "big"}]}), "Answer")
    assert reason.startswith("answer does not match Answer: ")
    assert "title" in reason and "items.0.size" in reason


def test_a_validation_reason_lists_three_errors_and_counts_the_rest():
    reason = short_validation_reason(_error({"items": [{"name": 1, "size": "x"}, {"name": 2, "size": "y"}]}), "A")
    assert reason.endswith("(+2 more)")  # title, then items.0.name/size and items.1.name/size: 5 errors, 3 shown


def test_a_validation_reason_is_capped_at_300_characters():
    Long = type("Long", (BaseModel,), {"__annotations__": {f"field_{'x' * 120}_{i}": int for i in range(3)}})
    try:
        Long.model_validate({})
    except ValidationError as exc:
        reason = short_validation_reason(exc, "Long")
    assert len(reason) == 300 and reason.startswith("answer does not match Long: field_")


def test_salvage_keeps_the_valid_list_entries_and_says_which_were_dropped():
    data = {"title": "t", "items": [{"name": "a", "size": 1}, {"name": "b", "size": "huge"}, {"name": "c", "size": 3}]}
    answer, dropped = salvage(Answer, data)
    assert isinstance(answer, Answer) and [i.name for i in answer.items] == ["a", "c"]
    assert len(dropped) == 1 and dropped[0].startswith("items[1].size:")


def test_salvage_gives_nothing_when_nothing_was_dropped():
    assert salvage(Answer, {"title": "t", "items": [{"name": "a", "size": 1}]}) == (None, [])


def test_salvage_gives_nothing_when_the_answer_is_invalid_outside_its_lists():
    assert salvage(Answer, {"items": [{"name": "b", "size": "huge"}]}) == (None, [])  # no title: still invalid


@pytest.mark.parametrize("data", [None, "text", [1, 2], 3])
def test_salvage_of_something_that_is_not_an_object_gives_nothing(data):
    assert salvage(Answer, data) == (None, [])


def test_salvage_does_not_change_the_answer_it_was_given():
    data = {"title": "t", "items": [{"name": "b", "size": "huge"}]}
    salvage(Answer, data)
    assert data["items"] == [{"name": "b", "size": "huge"}]
