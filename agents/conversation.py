"""Follow-up requests: start from the parent result's prompt and apply only what the follow-up asks to change.

"make the sky darker", "now in winter", "add a second dog", "without the hat": each is one edit of the parent's
merged prompt (itself the user's words of every earlier turn, merged). Whatever the follow-up does not touch is
kept. The merged prompt is trimmed to `MAX_MERGED_WORDS`, dropping the oldest edits first but never the original
request, so a long conversation does not grow the prompt without bound.
"""

from __future__ import annotations

import re

from agents.learning import Turn
from agents.memory import contains_phrase, content_words
from schemas.records import GapsRecord

MAX_MERGED_WORDS = 40
_LEAD = re.compile(r"^(?:(?:ok(?:ay)?|now|and|but|also|please|then|great|nice|thanks)[,!.]?\s+)+", re.I)
_MAKE = re.compile(r"^make\s+(?:the\s+|it\s+|them\s+|him\s+|her\s+)?(?P<what>.+)$", re.I)
_COMPARATIVE = re.compile(r"^(?P<thing>[\w' -]+?)\s+(?P<adj>(?:more|less)\s+\w+|\w+er)$", re.I)
_ADD = re.compile(r"^(?:add|include|put in)\s+(?P<what>.+)$", re.I)
_REMOVE = re.compile(r"^(?:remove|drop|delete|without|no(?:\s+more)?)\s+(?:the\s+)?(?P<what>.+)$", re.I)
# Words that replace each other: a follow-up naming one drops the other members of its group from the parent.
_GROUPS = (
    ("winter", "summer", "spring", "autumn", "fall"),
    ("day", "daytime", "night", "nighttime", "morning", "evening", "sunset", "sunrise", "dusk", "dawn", "noon"),
    ("sunny", "rainy", "snowy", "foggy", "cloudy", "stormy"),
)


def _phrases(prompt: str) -> list[str]:
    return [p.strip() for p in prompt.split(",") if p.strip()]


def _replace_in_group(phrases: list[str], word: str) -> tuple[list[str], bool]:
    """Swap a season, time of day or weather word of the parent for the follow-up's, in place."""
    for group in _GROUPS:
        if word.lower() not in group:
            continue
        others = [w for w in group if w != word.lower()]
        pattern = re.compile(r"\b(" + "|".join(others) + r")\b", re.I)
        changed = False
        out = []
        for phrase in phrases:
            new = pattern.sub(word.lower(), phrase)
            changed |= new != phrase
            out.append(new)
        return out, changed
    return phrases, False


def merge(parent_prompt: str, followup: str, max_words: int = MAX_MERGED_WORDS) -> str:
    """The parent's merged prompt with the follow-up applied."""
    phrases = _phrases(parent_prompt)
    edit = _LEAD.sub("", re.sub(r"\s+", " ", followup).strip().rstrip(".!")).strip()
    if not edit:
        return ", ".join(phrases)
    added: list[str] = []
    match_make = _MAKE.match(edit)
    match_add = _ADD.match(edit)
    match_remove = _REMOVE.match(edit)
    if match_remove:
        what = match_remove.group("what")
        phrases = [p for p in phrases[:1]] + [p for p in phrases[1:] if not contains_phrase(p, what)]
        added.append(f"without {what}")
    elif match_add:
        added.append(f"with {match_add.group('what')}")
    elif match_make and _COMPARATIVE.match(match_make.group("what")):
        cmp = _COMPARATIVE.match(match_make.group("what"))
        thing, adj = cmp.group("thing"), cmp.group("adj")
        # An earlier "darker sky" is superseded by "lighter sky": one edit per thing.
        phrases = phrases[:1] + [p for p in phrases[1:] if not (contains_phrase(p, thing) and len(p.split()) <= 4)]
        added.append(f"{adj} {thing}")
    else:
        replaced = False
        for word in content_words(edit):
            phrases, changed = _replace_in_group(phrases, word)
            replaced |= changed
        if not replaced:
            added.append(match_make.group("what") if match_make else edit)
    for phrase in added:
        if not contains_phrase(", ".join(phrases), phrase):
            phrases.append(phrase)
    while len(phrases) > 1 and sum(len(p.split()) for p in phrases) > max_words:
        phrases.pop(1)  # the oldest edit goes first; the original request stays
    return ", ".join(phrases)


def carry_parent(record: GapsRecord, turn: Turn) -> GapsRecord:
    """The record keeping what the parent found: knowledge gaps it filled are filled the same way (no second search,
    the same facts), and its checklist items whose words are still in the merged prompt are kept."""
    filled = {g.subject.lower(): g for g in turn.gaps if g.kind == "knowledge" and g.status == "filled"}
    gaps = []
    for gap in record.gaps:
        old = filled.get(gap.subject.lower())
        if gap.kind == "knowledge" and gap.status == "open" and old is not None:
            gap = gap.model_copy(update={"status": "filled", "value": old.value, "source": old.source,
                                         "filled_by": old.filled_by or "search",
                                         "reason": f"kept from {turn.request_id}"})
        gaps.append(gap)
    base = record.base_prompt or record.request.prompt
    checklist = list(record.checklist)
    have = {tuple(t.lower() for t in item.terms) for item in checklist}
    for item in turn.checklist:
        key = tuple(t.lower() for t in item.terms)
        if key in have or not item.terms or not all(contains_phrase(base, t) for t in item.terms):
            continue
        have.add(key)
        checklist.append(item.model_copy(update={"id": f"c{len(checklist) + 1}", "gap_id": None}))
    return record.model_copy(update={"gaps": gaps, "checklist": checklist})
