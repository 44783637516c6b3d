"""The planner's rules (agents/planner_rules.py): what only a search can know, and what is a format, not a question."""

from __future__ import annotations

import pytest

from agents.planner_rules import (
    FORMATS,
    PLATFORMS,
    _tokens,
    customs,
    format_constraints,
    knowledge,
    platform_words,
    processes,
)

YEAR = 2026


def gaps(prompt: str, names: frozenset[str] = frozenset()) -> list[tuple[str, bool, str]]:
    """(subject, time_sensitive, query) of each knowledge gap of the prompt."""
    return [(subject, ts, query) for _, _, subject, ts, query in knowledge(_tokens(prompt), prompt, set(names), YEAR)]


@pytest.mark.parametrize("prompt, expected", [
    ("a fox at the Lantern Fair", [("Lantern Fair", False, "Lantern Fair")]),
    ("the Lantern Fair this year", [("Lantern Fair", True, "Lantern Fair 2026")]),
    ("the 2025 Lantern Fair", [("Lantern Fair", True, "Lantern Fair 2025")]),  # a named year wins over this one
    ("the new Orbit kettle on a table", [("Orbit kettle", True, "Orbit kettle 2026")]),  # brand and kind of thing
    ("the latest phone", [("phone", True, "phone 2026")]),  # a strong cue makes a common noun a question
    ("an altar for Day of the Dead", [("Day of the Dead", False, "Day of the Dead")]),
])
def test_named_things_and_temporal_cues_are_knowledge_gaps(prompt, expected):
    assert gaps(prompt) == expected


@pytest.mark.parametrize("prompt", [
    "a new puppy on the sofa",  # "new" alone, not before a name, asks nothing
    "Watercolor of a fox",  # a style, capitalised only because it opens the line
    "Friends on a bench",  # a capital that only starts the sentence
    "a fox on Monday in June",  # the calendar is no subject
    "a LinkedIn banner",  # a format: see format_constraints
    "a plain red apple",
])
def test_ordinary_words_capitals_and_formats_are_not_knowledge_gaps(prompt):
    assert gaps(prompt) == []


def test_a_name_from_the_users_world_is_never_searched():
    assert gaps("my dog Max at the beach", names=frozenset({"max"})) == []
    assert gaps("Max at the beach", names=frozenset()) == []  # opens the sentence: no evidence it is a name
    assert gaps("a photo of Max at the beach", names=frozenset({"max"})) == []


def test_a_year_after_a_comma_belongs_to_what_follows_it():
    assert gaps("Mother's Day, 2026 Lantern Fair") == [("Mother's Day", False, "Mother's Day"),
                                                       ("Lantern Fair", True, "Lantern Fair 2026")]


@pytest.mark.parametrize("prompt, subject", [
    ("friends celebrating hanami in a park", "hanami"),
    ("a family at diwali", "diwali"),
    ("kids celebrating songkran", "songkran"),
    ("people celebrating harvest moon", "harvest moon"),  # "celebrating X" names an occasion the list lacks
])
def test_occasions_are_knowledge_gaps_even_in_lower_case(prompt, subject):
    assert (subject, False, subject) in gaps(prompt)


def test_a_custom_asked_for_indirectly_replaces_the_occasion_it_names():
    assert gaps("the flower people give on Mother's Day") == [
        ("the flower people give on mother's day", False, "the flower people give on mother's day")]
    assert customs("the food they traditionally eat at Nowruz with friends") == ["the food they traditionally eat "
                                                                                 "at nowruz"]


def test_an_implicit_process_is_knowledge_with_the_thing_and_where():
    assert processes("a photo of copper sulfate crystals dissolving in water") == [
        "copper sulfate crystals dissolving in water"]
    assert ("copper sulfate crystals dissolving in water", False, "copper sulfate crystals dissolving in water") in \
        gaps("copper sulfate crystals dissolving in water")


def test_a_process_word_without_a_thing_is_no_process():
    assert processes("a glowing lamp") == [] and processes("a picture of rusting") == []


@pytest.mark.parametrize("prompt, named, platform, layout", [
    ("a LinkedIn banner for our bakery", "LinkedIn banner", "linkedin", "wide 4:1 banner layout with room for text"),
    ("a YouTube thumbnail about cats", "YouTube thumbnail", "youtube",
     "16:9 thumbnail, bold high-contrast, readable at small size"),
    ("an Instagram story of my dog", "Instagram story", "instagram", "vertical 9:16 story layout"),
    ("a flyer for the fair", "flyer", "", FORMATS["flyer"]),
    ("event posters for the fair", "event posters", "", FORMATS["poster"]),
])
def test_platforms_and_formats_are_layout_constraints(prompt, named, platform, layout):
    assert format_constraints(prompt) == [(named, platform, layout)]


@pytest.mark.parametrize("prompt", ["a story about a fox", "a cover of snow", "a card game", "a fox in a video"])
def test_words_that_are_formats_only_on_a_platform_are_left_alone_without_one(prompt):
    assert format_constraints(prompt) == []


def test_a_format_named_twice_is_one_constraint():
    assert len(format_constraints("a poster, then another poster")) == 1


def test_platform_names_are_found_in_any_case_and_are_never_subjects():
    assert platform_words("Post it on INSTAGRAM and TikTok, not on Myspace") == {"instagram", "tiktok"}
    assert {"linkedin", "youtube"} <= PLATFORMS
    assert gaps("a YouTube thumbnail of a fox") == []
