"""Text helpers of the search stage: sanitising untrusted hit text, relevance (query-term coverage), freshness and
picking the sentence of a hit that holds the fact.

Hit text comes from outside (web pages, snippets, files anyone can edit) and ends up in a prompt, so it is stripped
of markup, control characters, URLs and instruction-like sentences ("ignore previous instructions …") and capped
before anything else reads it.
"""

from __future__ import annotations

import html
import re
from datetime import date
from typing import Optional

from agents.memory import content_words
from agents.text import CONTROL_CHARS
from agents.visual import visual_score
from schemas.records import Hit

MAX_FACT_CHARS = 300
MAX_HIT_CHARS = 2000
MAX_TITLE_CHARS = 200
MAX_SOURCE_CHARS = 500
# Share of the query's content words (years and "latest"-type cues aside) a hit must contain to count as about it:
# BM25 scores are not comparable across backends or corpora, term coverage is.
MIN_COVERAGE = 0.5

_ANSI = re.compile(r"\x1b(?:\[[0-9;?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[@-Z\\-_])")
_CONTROL = CONTROL_CHARS
_SCRIPT = re.compile(r"<(script|style)\b[^>]*>.*?</\1\s*>", re.I | re.S)
_TAG = re.compile(r"<[^>]{0,500}>")
_MD_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
_MD_MARKS = re.compile(r"(^|\s)#{1,6}\s+|[*_`~|>]{1,3}|^\s*[-+]\s+", re.M)
_URL = re.compile(r"\b(?:https?|ftp|file|javascript|data):\S+", re.I)
SENTENCE_SPLIT = re.compile(r"(?<=[.!?])\s+|\s*\n\s*")
YEAR = re.compile(r"\b(?:19|20)\d\d\b")
_ISO_DATE = re.compile(r"^((?:19|20)\d\d)-(\d\d)(?:-(\d\d))?")
_FRESH_WORDS = re.compile(r"\b(?:newest|latest|current|this year|upcoming|new)\b", re.I)
_STALE_WORDS = re.compile(r"\b(?:archive|archived|discontinued|former|formerly|obsolete|retired|legacy)\b", re.I)
_QUERY_NOISE = {"latest", "newest", "current", "new", "recent", "upcoming", "this-year", "year"}
# Sentences written at a model rather than a reader: dropped whole from untrusted text before it can reach a prompt.
_INJECTION = re.compile(
    r"\b(?:ignore|disregard|forget|override)\b[^.!?\n]{0,40}\b(?:previous|prior|above|earlier|all|any|system|your)\b"
    r"[^.!?\n]{0,40}\b(?:instructions?|prompts?|rules|directions|context|messages?)\b"
    r"|\b(?:system|developer)\s*prompt\b|\byou\s+are\s+now\b|\bact\s+as\s+(?:an?\s+)?(?:ai|assistant|model|dan)\b"
    r"|\bnew\s+instructions?\s*:|\bjailbreak\b|<\|[a-z_]+\|>|\[/?(?:inst|system)\]",
    re.I,
)


def _drop_injections(text: str) -> str:
    if not _INJECTION.search(text):
        return text
    pieces = re.split(r"(?<=[.!?\n])\s*", text)
    return " ".join(p for p in pieces if p and not _INJECTION.search(p))


def sanitize(text: str, limit: int = MAX_FACT_CHARS) -> str:
    """Plain text safe to put in a prompt: no markup, no control characters, no URLs, no instruction-like sentences,
    at most `limit` chars (cut at a word boundary)."""
    text = _SCRIPT.sub(" ", text or "")
    text = html.unescape(_TAG.sub(" ", text))
    text = _TAG.sub(" ", text)  # markup that was entity-escaped ("&lt;img …&gt;")
    text = _MD_LINK.sub(r"\1", text)
    text = _URL.sub(" ", text)
    text = _ANSI.sub("", text)
    text = _CONTROL.sub(" ", text)
    text = _drop_injections(text)
    text = _MD_MARKS.sub(r"\1", text)
    text = re.sub(r"[{}<>\[\]\\]", " ", text)
    text = re.sub(r"\s+", " ", text).strip()
    if len(text) > limit:
        cut = text[:limit]
        text = cut[: cut.rfind(" ")] if " " in cut[limit // 2 :] else cut
    return text.strip(" ,;:-")


def sanitize_source(source: str) -> str:
    """A source label (URL or file) as it may appear in the trace: no whitespace or control characters, capped."""
    return re.sub(r"\s+", "", _CONTROL.sub("", source or ""))[:MAX_SOURCE_CHARS]


def query_terms(query: str) -> list[str]:
    return [w for w in content_words(query) if w not in _QUERY_NOISE and not YEAR.fullmatch(w)]


def _stem(word: str) -> str:
    return word[:-1] if len(word) > 3 and word.endswith("s") and not word.endswith("ss") else word


def coverage(query: str, text: str) -> float:
    """Share of the query's content words that appear in the text (plural-insensitive)."""
    terms = {_stem(t) for t in query_terms(query)}
    if not terms:
        return 0.0
    present = {_stem(w) for w in content_words(text)}
    return len(terms & present) / len(terms)


def parse_iso_date(value: Optional[str]) -> Optional[date]:
    """`2026-03-04` or `2026-03` (first of the month) as a date; anything else None."""
    match = _ISO_DATE.match(value or "")
    if not match:
        return None
    try:
        return date(int(match.group(1)), int(match.group(2)), int(match.group(3) or 1))
    except ValueError:
        return None


def freshness(hit: Hit, year: int, today: Optional[date] = None) -> float:
    """> 0 for a hit that is about now (names this year, says "newest", is dated recently), < 0 for an old or
    archived one. A full date adds up to 0.5 decaying over a year, so among current sources the newest wins."""
    text = f"{hit.title} {hit.text} {hit.date or ''}"
    years = [int(y) for y in YEAR.findall(text)]
    score = 0.0
    if years:
        score += 1.0 if max(years) >= year else -1.0 * min(1.0, (year - max(years)) / 2)
    if _FRESH_WORDS.search(text):
        score += 0.5
    if _STALE_WORDS.search(text):
        score -= 1.0
    dated = parse_iso_date(hit.date)
    if dated is not None and today is not None:
        age_days = max(0, (today - dated).days)
        score += 0.5 * max(0.0, 1.0 - age_days / 365)
    return score


def best_sentence(query: str, hit: Hit) -> str:
    """The sentence of the hit most about the query; the title counts for every sentence of its passage."""
    sentences = [s for s in (sanitize(p, MAX_FACT_CHARS) for p in SENTENCE_SPLIT.split(hit.text)) if len(s) > 12]
    if not sentences:
        return ""
    known = {_stem(w) for w in content_words(hit.title) + query_terms(query)}
    scored = []
    for index, sentence in enumerate(sentences):
        informative = len({_stem(w) for w in content_words(sentence)} - known)
        scored.append((coverage(query, f"{hit.title} {sentence}"), min(informative, 8), -index, sentence))
    return max(scored)[3]


def visual_fact(query: str, hit: Hit) -> str:
    """The fact to keep from a hit: its sentence most about the query, or, when another sentence about the same
    subject says more that can be drawn (colours, materials, places: `agents/visual.py`), that one; joined to the
    first when it does not name the subject itself ("It has a matte olive frame")."""
    best = best_sentence(query, hit)
    if not best:
        return ""
    sentences = [s for s in (sanitize(p, MAX_FACT_CHARS) for p in SENTENCE_SPLIT.split(hit.text)) if len(s) > 12]
    about = [s for s in sentences if coverage(query, f"{hit.title} {s}") >= MIN_COVERAGE]
    if not about:
        return best
    drawn = max(about, key=lambda s: (visual_score(s), coverage(query, f"{hit.title} {s}"), -about.index(s)))
    if drawn == best or visual_score(drawn) <= visual_score(best):
        return best
    if coverage(query, drawn) >= MIN_COVERAGE:
        return drawn
    joined = f"{best} {drawn}" if sentences.index(best) < sentences.index(drawn) else f"{drawn} {best}"
    return joined if len(joined) <= MAX_FACT_CHARS else drawn


def best_passage(query: str, text: str, limit: int = MAX_HIT_CHARS, sentences: int = 6) -> str:
    """The sentences of a long text (a whole page) most about the query, in page order, at most `limit` chars."""
    parts = [s for s in (sanitize(p, MAX_FACT_CHARS) for p in SENTENCE_SPLIT.split(text)) if len(s) > 12]
    ranked = sorted(range(len(parts)), key=lambda i: (-coverage(query, parts[i]), i))
    keep = sorted(i for i in ranked[:sentences] if coverage(query, parts[i]) > 0)
    out = " ".join(parts[i] for i in keep)
    return out[:limit]
