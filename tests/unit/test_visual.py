"""What can be drawn (agents/visual.py): visual words, clauses, drawable clauses first, and telling checklist terms."""

from __future__ import annotations

import pytest

from agents.visual import clauses, telling_terms, visual_first, visual_score, visual_words

FACT = "The Velo E2 is the newest Velo bike, it has a matte olive frame and cream tyres, sold since 2024"


def test_visual_words_are_colours_finishes_shapes_counts_and_named_places_in_order():
    assert visual_words("A matte olive frame with cream tyres, two lamps, built in Lisbon") == [
        "matte", "olive", "cream", "two", "lamps", "lisbon"]


def test_a_capitalised_word_is_a_place_only_after_in_at_of_or_near():
    assert visual_words("Velo makes bikes") == [] and visual_words("a bike near Porto") == ["porto"]


def test_a_sentence_with_nothing_to_draw_scores_zero_and_more_drawable_scores_higher():
    assert visual_score("The Velo E2 is the newest Velo bike") == 0
    assert visual_score("a red glossy frame") > visual_score("a red frame") > 0


def test_visual_words_list_each_word_once_and_ignore_case_and_possessives():
    assert visual_words("Red, RED and red's frame") == ["red"]


def test_clauses_cut_at_pauses_and_drop_lead_ins_that_show_nothing():
    assert clauses("It has a matte olive frame, and with cream tyres; They are light. Made in Porto.") == [
        "matte olive frame", "cream tyres", "light", "Made in Porto"]
    assert clauses("") == [] and clauses(None) == []  # type: ignore[arg-type]


def test_visual_first_puts_the_drawable_clauses_before_the_rest_keeping_order():
    seen, rest = visual_first(FACT)
    assert seen == "matte olive frame and cream tyres"
    assert rest == "The Velo E2 is the newest Velo bike, sold since 2024"


def test_visual_first_of_a_fact_with_nothing_drawable_keeps_it_whole():
    assert visual_first("The newest bike of the year, sold since 2024") == (
        "The newest bike of the year, sold since 2024", "")


def test_telling_terms_put_names_first_then_visual_words_and_leave_out_what_is_known():
    assert telling_terms("The Velo bike uses a matte olive frame", known=["bike"]) == ["velo", "matte", "olive"]
    assert "bike" not in telling_terms("The Velo bike uses a matte olive frame", known=["bike"], limit=10)


def test_telling_terms_leave_out_linking_verbs_and_verb_forms_but_keep_visual_ones():
    terms = telling_terms("The festival features glowing lanterns and people dancing", known=["festival"], limit=10)
    assert "features" not in terms and "dancing" not in terms and "glowing" in terms


@pytest.mark.parametrize("limit", [0, 1, 2])
def test_telling_terms_respect_the_limit(limit):
    assert len(telling_terms(FACT, known=[], limit=limit)) == limit
