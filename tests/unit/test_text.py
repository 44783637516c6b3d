"""Word helpers (agents/text.py): words, content words, styles, phrases, item ids and a query's identity."""

from __future__ import annotations

import pytest

from agents.text import CONTROL_CHARS, content_words, contains_phrase, find_styles, item_id, normalize_query, words


def test_words_are_lower_cased_and_a_possessive_s_is_dropped():
    assert words("This Year's Lantern-Fair, 2026!") == ["this", "year", "lantern-fair", "2026"]


def test_content_words_drop_stopwords_single_letters_and_repeats_keeping_order():
    assert content_words("A fox and the Fox, x, under a blue sky") == ["fox", "blue", "sky"]
    assert content_words("it is what it is") == []


def test_find_styles_prefers_the_longest_name_and_lists_each_once_in_order():
    assert find_styles("Pixel Art of a cat, then an oil painting, then pixel art again") == ["pixel art",
                                                                                              "oil painting"]
    assert find_styles("a painting") == ["painting"]


def test_find_styles_matches_whole_words_only():
    assert find_styles("a photographer with a sketchbook") == []


@pytest.mark.parametrize("text, phrase, expected", [
    ("Draw My  Dog Max", "my dog", True),  # case and inner whitespace do not matter
    ("my dog\nMax", "dog max", True),
    ("my dogs", "my dog", False),  # whole words: "dogs" is not "dog"
    ("underdog", "dog", False),
    ("anything", "   ", False),  # an empty phrase is in nothing
    ("a (dog) here", "(dog)", True),  # regex characters in the phrase are literal
])
def test_contains_phrase_is_whole_word_and_case_insensitive(text, phrase, expected):
    assert contains_phrase(text, phrase) is expected


def test_item_id_is_the_same_for_the_same_statement_written_differently():
    a = item_id("My dog Max is a corgi.")
    assert a == item_id("  my   DOG max is a corgi!") and a.startswith("m-") and len(a) == 18
    assert a != item_id("my dog Max is a beagle")


def test_normalize_query_folds_case_width_and_whitespace_but_keeps_word_order():
    assert normalize_query("  Latest   ＯＲＢＩＴ Kettle?? ") == "latest orbit kettle"
    assert normalize_query("Straße") == normalize_query("STRASSE")
    assert normalize_query("kettle orbit") != normalize_query("orbit kettle")


def test_normalize_query_turns_invisible_characters_into_spaces_so_they_cannot_make_a_new_query():
    assert normalize_query("orbit\u200b kettle\u202e\x00") == "orbit kettle"
    assert normalize_query("\ufeffOrbit\tkettle\n") == "orbit kettle"


def test_normalize_query_of_nothing_is_empty():
    assert normalize_query("") == "" and normalize_query(None) == "" and normalize_query(" ?! ") == ""


@pytest.mark.parametrize("char", ["\x00", "\x07", "\x1b", "\x7f", "\x85", "\u200b", "\u200f", "\u202e", "\u2066",
                                  "\ufeff"])
def test_control_chars_catches_control_and_invisible_formatting_characters(char):
    assert CONTROL_CHARS.search(f"a{char}b")


@pytest.mark.parametrize("char", ["\t", "\n", " ", "é", "ß", "—", "😀"])
def test_control_chars_leaves_tabs_newlines_and_ordinary_text_alone(char):
    assert not CONTROL_CHARS.search(char)


@pytest.mark.parametrize("char", ["\u2060", "\u2063", "\u2064", "\u00ad"])
def test_control_chars_catches_the_other_invisible_formatting_characters(char):
    assert CONTROL_CHARS.search(f"a{char}b")


@pytest.mark.parametrize("char", ["\u200c", "\u200d", "\ufeff"])
def test_an_invisible_character_inside_a_word_does_not_change_the_query(char):
    assert normalize_query(f"Or{char}bit kettle") == normalize_query("Orbit kettle")
