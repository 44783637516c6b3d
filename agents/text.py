"""Word helpers every heuristic stage shares: stopwords, art styles and media, words, phrases and item ids.

Kept apart from memory policy so that statement parsing (`agents/statements.py`) and the memory view can both use
them without importing each other.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

STOPWORDS = frozenset(
    """a an the and or but of in on at to for from by with without into onto over under above below near
    is are was were be been being am it its this that these those there here as so than then very
    i me my mine we us our ours you your he him his she her they them their what which who whom
    has have had do does did will would can could should may might must not no yes
    some any all each every more most other such only own same also just about after before during
    while where when how why up down out off again further once s t""".split()
)

# Longest first, so "oil painting" is found before "painting" and "pixel art" before "art".
STYLE_TERMS: tuple[str, ...] = tuple(
    sorted(
        """watercolor|watercolour|oil painting|acrylic painting|gouache|charcoal|pencil sketch|pencil drawing|
        ink drawing|ink wash|line art|pastel|crayon|pixel art|anime|manga|cartoon|comic book|photorealistic|
        photorealism|hyperrealistic|3d render|cgi|low poly|isometric|vector art|flat illustration|
        digital painting|digital art|concept art|impressionist|impressionism|expressionist|cubist|cubism|
        surrealist|surrealism|art nouveau|art deco|ukiyo-e|woodblock print|linocut|etching|engraving|
        lithograph|screen print|risograph|stained glass|mosaic|claymation|papercut|paper cut|origami|
        studio ghibli|ghibli|cyberpunk|steampunk|vaporwave|synthwave|minimalist|baroque|renaissance|
        pop art|graffiti|street art|sumi-e|chalk drawing|sketch|sketches|painting|illustration|
        photograph|photo|polaroid|film photography|black and white photo|noir|vintage poster""".replace(
            "\n", ""
        ).split("|"),
        key=len,
        reverse=True,
    )
)
_STYLE_RE = re.compile(r"\b(?:" + "|".join(re.escape(t.strip()) for t in STYLE_TERMS if t.strip()) + r")\b", re.I)

_WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9'-]*")


def words(text: str) -> list[str]:
    """Lower-cased words; a trailing possessive "'s" is dropped so "year's" matches "year"."""
    return [re.sub(r"'s$", "", w.lower()).strip("'-") for w in _WORD.findall(text)]


def content_words(text: str) -> list[str]:
    """Words that carry meaning (no stopwords, no single letters), in order, without repeats."""
    seen: dict[str, None] = {}
    for w in words(text):
        if len(w) > 1 and w not in STOPWORDS:
            seen.setdefault(w, None)
    return list(seen)


def find_styles(text: str) -> list[str]:
    """Art styles and media named in the text, lower-cased, in order of appearance."""
    found: dict[str, None] = {}
    for match in _STYLE_RE.finditer(text):
        found.setdefault(match.group(0).lower(), None)
    return list(found)


def contains_phrase(text: str, phrase: str) -> bool:
    """Whole-word, case-insensitive containment; whitespace inside the phrase matches any whitespace."""
    if not phrase.strip():
        return False
    pattern = r"(?<![\w])" + r"\s+".join(re.escape(p) for p in phrase.split()) + r"(?![\w])"
    return re.search(pattern, text, re.I) is not None


def normalize(text: str) -> str:
    return re.sub(r"\s+", " ", text.strip().lower()).rstrip(".!?;, ")


def item_id(text: str) -> str:
    """Deterministic id, so adding the same statement twice is a no-op in the store."""
    return "m-" + hashlib.sha256(normalize(text).encode("utf-8")).hexdigest()[:16]


# Invisible formatting characters (zero-width, joiners, bidi controls, soft hyphen, byte-order mark): never part of
# a query's identity, and a way to smuggle text; inside a word they are dropped, not turned into a space.
INVISIBLE_CHARS = re.compile(r"[\u00ad\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]")
# Control characters and the invisible ones: whatever must not reach a prompt or a cache key as it is.
CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u00ad\u200b-\u200f\u202a-\u202e\u2060-\u2064"
                           r"\u2066-\u2069\ufeff]")


def normalize_query(query: str) -> str:
    """The identity of a query for caching and coalescing: NFKC, case-folded, whitespace collapsed, word order kept.
    Shared by the searcher and the search cache adapter, so both agree on what "the same query" is."""
    text = INVISIBLE_CHARS.sub("", unicodedata.normalize("NFKC", query or "")).casefold()
    text = CONTROL_CHARS.sub(" ", text)
    return re.sub(r"\s+", " ", text).strip(" \t\n?!.,;:")
