"""Memory policy: which statements become memory items, their ids, and how a user's memory is looked up."""

from __future__ import annotations

import pytest

from agents.memory import MemoryView, aliases, describe, items_from_user_text, statements_in

NOW = "2026-11-26T10:00:00.000+00:00"


def one(text: str):
    items = statements_in(text, NOW)
    assert len(items) == 1, items
    return items[0]


def test_fact_about_a_named_pet_keeps_name_kind_and_value():
    item = one("my dog Max is a corgi")
    assert (item.kind, item.subject, item.value) == ("fact", "max", "corgi")
    assert {"max", "dog", "my dog"} <= set(aliases(item))
    assert describe(item) == "Max, a corgi dog"


def test_fact_without_a_name_uses_the_noun_as_subject():
    item = one("Our logo is a blue fox.")
    assert (item.kind, item.subject, item.value) == ("fact", "logo", "blue fox")
    assert "our logo" in aliases(item)
    assert "blue fox" in describe(item)


@pytest.mark.parametrize(
    "text, subject, value",
    [
        ("I like watercolor", "style", "watercolor"),
        ("I love charcoal sketches", "style", "charcoal sketches"),
        ("I now prefer gouache", "style", "gouache"),
        ("i prefer pixel art these days", "style", "pixel art these days"),
        ("my usual style is 3D render", "style", "3D render"),
        ("I prefer wide open skies", "general", "wide open skies"),
    ],
)
def test_preferences_are_style_only_when_they_name_a_style(text, subject, value):
    item = one(text)
    assert (item.kind, item.subject, item.value) == ("preference", subject, value)


def test_several_statements_in_one_text_and_none_in_plain_prose():
    items = statements_in("My cat Pixel is a grey sphynx. I love oil painting!", NOW)
    assert [(i.kind, i.subject) for i in items] == [("fact", "pixel"), ("preference", "style")]
    assert statements_in("a bowl of lemons on a marble counter", NOW) == []


def test_ids_are_deterministic_and_ignore_case_and_spacing():
    a = one("my dog Max is a corgi")
    b = one("My  dog Max is a corgi.")
    assert a.id == b.id and a.id.startswith("m-")
    assert a.id != one("my dog Max is a beagle").id


def test_user_text_without_a_statement_is_kept_as_a_note():
    [note] = items_from_user_text("remember the lighthouse trip", NOW)
    assert (note.kind, note.subject, note.text) == ("fact", "", "remember the lighthouse trip")
    assert items_from_user_text("remember the lighthouse trip", NOW)[0].id == note.id
    [fact] = items_from_user_text("my dog Max is a corgi", NOW)
    assert fact.subject == "max"


@pytest.mark.parametrize("bad", ["", "   ", None])
def test_empty_user_text_is_rejected(bad):
    with pytest.raises(ValueError):
        items_from_user_text(bad)


def test_newest_style_wins_and_facts_are_found_by_name_or_alias():
    items = [
        *statements_in("I like charcoal sketches", NOW),
        *statements_in("my dog Max is a corgi", NOW),
        *statements_in("I now prefer gouache", NOW),
        *statements_in("my dog Max is a beagle", NOW),
    ]
    view = MemoryView(items)
    assert view.style().value == "gouache"
    assert [i.value for i in view.facts_about("Max")] == ["beagle", "corgi"]
    assert view.facts_about("my dog")[0].value == "beagle"
    assert view.facts_about("cat") == []
    assert [i.subject for i in view.names_in("max and a ball")] == ["max"]
    assert view.names_in("maximum speed") == []


def test_view_without_style_and_view_rejects_foreign_objects():
    assert MemoryView(statements_in("my dog Max is a corgi", NOW)).style() is None
    with pytest.raises(ValueError):
        MemoryView(["my dog Max is a corgi"])
