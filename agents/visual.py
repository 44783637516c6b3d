"""What can be drawn: the visual words of a found passage, and the telling terms of a fact.

A diffusion model gains nothing from "The Velo E2 is the newest Velo bike"; it gains "matte olive frame and cream
tyres". So the searcher picks, from a relevant passage, the sentences that describe what can be drawn (colours,
materials and finishes, shapes and patterns, places, counts, text to show), the enricher puts those clauses into the
prompt before the less visual rest, and a checklist item names the telling terms (names, numbers, colours) rather
than the first content words.
"""

from __future__ import annotations

import re
from typing import Iterable

from agents.text import STOPWORDS, content_words

COLOURS = frozenset("""red orange yellow green blue purple violet pink brown black white grey gray silver gold golden
    teal turquoise cyan magenta beige crimson scarlet emerald navy ivory copper bronze olive cream coral maroon
    burgundy lavender lilac indigo amber ochre mustard mint sage khaki tan rust charcoal peach salmon aqua azure
    cobalt ruby jade pastel neon cherry""".split())
MATERIALS = frozenset("""wood wooden walnut oak pine bamboo metal steel brass iron chrome aluminium aluminum glass
    crystal ceramic porcelain enamel marble stone granite concrete brick leather suede fabric cotton linen silk wool
    velvet denim paper cardboard plastic rubber clay terracotta wicker rattan""".split())
FINISHES = frozenset("""matte glossy shiny polished brushed satin metallic transparent translucent clear frosted
    textured rough smooth faded weathered rusty painted striped spotted checkered dotted floral patterned bright
    dark pale vivid glowing sparkling""".split())
SHAPES = frozenset("""round square rectangular oval circular triangular diamond-shaped heart-shaped star-shaped
    spiral curved angular tall short long wide narrow tiny huge giant pattern patterns stripes dots rangoli
    lanterns lantern lamps lamp candles diyas ribbon ribbons tails flags blossom blossoms
    blooming petals leaves""".split())
PLACES = frozenset("""beach harbour harbor seaside coast mountain mountains forest desert city town village street
    square park garden river lake sea ocean island depot station market plaza temple castle bridge""".split())
SEASONS = frozenset("spring summer autumn fall winter snow snowy rain rainy sunny".split())
VISUAL = COLOURS | MATERIALS | FINISHES | SHAPES | PLACES | SEASONS
_NUMBER_WORDS = frozenset("two three four five six seven eight nine ten eleven twelve dozen hundred".split())
_WORD = re.compile(r"[A-Za-z0-9][\w'-]*")
# Verbs that facts use to link a subject to its look; never a term to check an image for.
_LINK_VERBS = frozenset("""uses use has have turns turn called held made takes gives features comes looks loves likes
    wears owns shows becomes contains""".split())
_CLAUSE_SPLIT = re.compile(r"\s*[;,]\s*|(?<=[.!?])\s+")
# Lead-ins that carry no picture: "It has a …", "with a …", "They are …".
_LEAD_IN = re.compile(r"^(?:(?:it|they|this|these|which)\s+(?:has|have|is|are|was|were|comes?|features?)\s+|"
                      r"(?:and\s+)?with\s+|and\s+)(?:a|an|the)?\s*", re.I)


def _bare(word: str) -> str:
    return re.sub(r"'s$", "", word.lower()).strip("'-")


def visual_words(text: str) -> list[str]:
    """The drawable words of a text, in order: colours, materials, finishes, shapes, places, seasons, counts and the
    names of places it is in ("in Lisbon")."""
    tokens = _WORD.findall(text)
    found: dict[str, None] = {}
    for i, token in enumerate(tokens):
        word = _bare(token)
        if word in VISUAL or word in _NUMBER_WORDS:
            found.setdefault(word, None)
        elif token[:1].isupper() and i and tokens[i - 1].lower() in ("in", "at", "of", "near"):
            found.setdefault(word, None)  # "in Lisbon", "town of Brisa": a place that can be shown
    return list(found)


def visual_score(text: str) -> int:
    return len(visual_words(text))


def clauses(text: str) -> list[str]:
    """A fact cut where a reader would pause (sentences, commas, semicolons), lead-ins dropped."""
    out = []
    for piece in _CLAUSE_SPLIT.split(text or ""):
        piece = _LEAD_IN.sub("", piece.strip().rstrip(".!?")).strip(" ,")
        if piece:
            out.append(piece)
    return out


def visual_first(text: str) -> tuple[str, str]:
    """(the drawable clauses, the rest) of a fact, each comma-joined in the fact's order."""
    parts = clauses(text)
    seen = [p for p in parts if visual_score(p)]
    rest = [p for p in parts if not visual_score(p)]
    if not seen:
        return ", ".join(rest), ""
    return ", ".join(seen), ", ".join(rest)


def telling_terms(text: str, known: Iterable[str], limit: int = 3) -> list[str]:
    """Up to `limit` words a reader would check the image for: proper names and numbers first, then visual words,
    then other content words; words already `known` (the query, the prompt) and verb forms are left out."""
    known_set = {w.lower() for w in known} | STOPWORDS
    tokens = _WORD.findall(text)
    proper = {_bare(w) for w in tokens if w[:1].isupper() and w.lower() not in STOPWORDS}
    numbers = {_bare(w) for w in tokens if any(c.isdigit() for c in w) or w.lower() in _NUMBER_WORDS}
    visual = set(visual_words(text))
    candidates = [w for w in content_words(text) if w not in known_set and len(w) > 2 and w not in _LINK_VERBS
                  and not (w.endswith(("ed", "ing")) and w not in visual)]

    def rank(word: str) -> tuple[int, int]:
        tier = 0 if word in proper or word in numbers else 1 if word in visual else 2
        return tier, candidates.index(word)

    return sorted(candidates, key=rank)[:limit]
