"""Follow-up merging (agents/conversation.py): a follow-up changes only what it names; long threads stay bounded."""

from __future__ import annotations

import pytest

from agents.conversation import MAX_MERGED_WORDS, merge


@pytest.mark.parametrize("parent, followup, has, lacks", [
    ("a fox in a snowy forest in summer", "now in winter", ["fox", "forest", "winter"], ["summer"]),
    ("a fox under a blue sky", "make the sky darker", ["fox", "blue sky", "darker sky"], []),
    ("a fox under a blue sky, darker sky", "make the sky lighter", ["lighter sky"], ["darker sky"]),
    ("my dog Max at the beach", "add a second dog", ["Max", "beach", "with a second dog"], []),
    ("a fox, with a red hat", "remove the hat", ["fox", "without hat"], ["red hat"]),
    ("a fox at sunset", "now at night", ["fox", "night"], ["sunset"]),
])
def test_a_follow_up_changes_only_what_it_names(parent, followup, has, lacks):
    merged = merge(parent, followup)
    assert all(w in merged for w in has), merged
    assert not any(w in merged for w in lacks), merged


def test_a_long_conversation_stays_bounded_and_keeps_the_original_request():
    prompt = "a fox under a blue sky"
    for i in range(50):
        prompt = merge(prompt, f"add a lantern number {i}")
    assert len(prompt.split()) <= MAX_MERGED_WORDS and prompt.startswith("a fox under a blue sky")
    assert "lantern number 49" in prompt and "lantern number 0," not in prompt
