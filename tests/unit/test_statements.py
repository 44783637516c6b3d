"""Memory statements (agents/statements.py): facts and preferences read in the forms people write them."""

from __future__ import annotations

import pytest

from agents.statements import Statement, items_from_user_text, parse_fact, statements_in
from agents.text import item_id

NOW = "2026-01-01T00:00:00.000+00:00"


def read(text: str, bare_names: bool = False) -> list[tuple[str, str, str]]:
    return [(i.kind, i.subject, i.value) for i in statements_in(text, NOW, bare_names=bare_names)]


@pytest.mark.parametrize("text, expected", [
    ("my cat Pixel is a grey sphynx", ("fact", "pixel", "grey sphynx")),  # the name is the subject
    ("our team mascot is an orange owl", ("fact", "team mascot", "orange owl")),  # no name: the noun is
    ("my son Theo has freckles", ("fact", "theo", "freckles")),
    ("my daughter Mira loves astronauts", ("fact", "mira", "astronauts")),
    ("my sister's name is Ana", ("fact", "ana", "sister")),
    ("I like watercolor", ("preference", "style", "watercolor")),
    ("I now prefer gouache", ("preference", "style", "gouache")),
    ("my usual style is gouache", ("preference", "style", "gouache")),
    ("I always want square images", ("preference", "format", "square images")),  # a format, not a style
    ("I'm vegetarian", ("preference", "diet", "vegetarian")),
    ("I am left-handed", ("fact", "me", "left-handed")),
])
def test_each_documented_form_is_read(text, expected):
    assert read(text) == [expected]


def test_a_statement_keeps_its_own_clause_as_its_text():
    [item] = statements_in("draw him, my dog Max is a corgi", NOW)
    assert item.text == "my dog Max is a corgi" and item.id == item_id("my dog Max is a corgi")
    assert item.created_at == NOW


def test_a_text_with_several_sentences_gives_one_item_each_in_order():
    assert read("my dog Max is a corgi. I like watercolor; my cat is grey") == [
        ("fact", "max", "corgi"), ("preference", "style", "watercolor"), ("fact", "cat", "grey")]


def test_the_same_statement_twice_is_one_item():
    assert len(statements_in("I like watercolor. i like watercolor!", NOW)) == 1


@pytest.mark.parametrize("text, expected", [
    ("Theo is my son", ("fact", "theo", "my son")),
    ("Max is a corgi", ("fact", "max", "corgi")),
    ("Theo has curly black hair", ("fact", "theo", "curly black hair")),
])
def test_a_bare_name_is_read_only_in_text_given_as_memory(text, expected):
    assert read(text) == []  # in a request, "Pixel is sleeping" describes the picture
    assert read(text, bare_names=True) == [expected]


@pytest.mark.parametrize("text", ["The sky is blue", "It is raining", "This is a test", "A fox is red"])
def test_a_sentence_opening_with_an_ordinary_capital_word_is_no_name(text):
    assert read(text, bare_names=True) == []


def test_a_scene_description_is_not_a_statement():
    assert read("a fox under a blue sky, in watercolor") == []


def test_text_that_is_not_a_string_is_refused():
    with pytest.raises(ValueError):
        statements_in(["my dog is Max"])  # type: ignore[arg-type]


def test_memory_text_with_no_statement_is_kept_whole_as_a_note():
    [note] = items_from_user_text("  remember   the blue door ", NOW)
    assert (note.kind, note.subject, note.text, note.value) == ("fact", "", "remember the blue door",
                                                                 "remember the blue door")


def test_memory_text_reads_bare_names():
    assert [(i.subject, i.value) for i in items_from_user_text("Max is a corgi", NOW)] == [("max", "corgi")]


@pytest.mark.parametrize("text", ["", "   ", None])
def test_empty_memory_text_is_refused(text):
    with pytest.raises(ValueError):
        items_from_user_text(text, NOW)


@pytest.mark.parametrize("text, statement", [
    ("my cat Pixel is a grey sphynx", Statement(owner="my", noun="cat", name="Pixel", relation="is")),
    ("our team mascot is an orange owl", Statement(owner="our", noun="team mascot", name="", relation="is")),
    ("my son Theo has freckles", Statement(owner="my", noun="son", name="Theo", relation="has")),
    ("My son Theo loves astronauts", Statement(owner="my", noun="son", name="Theo", relation="loves")),
    ("my sister's name is Ana", Statement(owner="my", noun="sister", name="Ana", relation="name")),
    ("Theo is my son", Statement(owner="my", noun="son", name="Theo", relation="identity")),
    ("Max is a corgi", Statement(owner="", noun="", name="Max", relation="is")),
    ("Theo has curly hair", Statement(owner="", noun="", name="Theo", relation="has")),
])
def test_parse_fact_rereads_owner_noun_name_and_relation_from_the_stored_text(text, statement):
    [item] = items_from_user_text(text, NOW)
    assert parse_fact(item) == statement


def test_parse_fact_of_a_plain_note_knows_nothing():
    [note] = items_from_user_text("remember the blue door", NOW)
    assert parse_fact(note) == Statement(owner="", noun="", name="")


@pytest.mark.parametrize("text, expected", [
    ("my dog Max is a corgi, my cat Pixel is grey", [("fact", "max", "corgi"), ("fact", "pixel", "grey")]),
    ("I like watercolor, my dog Max is a corgi", [("fact", "max", "corgi"), ("preference", "style", "watercolor")]),
])
def test_each_statement_of_a_sentence_is_read(text, expected):
    assert sorted(read(text)) == sorted(expected)


def test_a_statement_joined_by_and_does_not_swallow_the_next_one():
    assert ("fact", "max", "corgi") in read("my dog Max is a corgi and my cat Pixel is grey")
