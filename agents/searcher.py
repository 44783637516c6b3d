"""The ground stage for knowledge gaps: run each search gap's query on every backend, keep what is relevant and
fresh, and fill the gap with one short, sanitised fact that names its source.

Hit text comes from outside (web pages, files anyone can edit) and ends up in a prompt, so it is stripped of
markup and control characters and capped before anything else reads it.
"""

from __future__ import annotations

import asyncio
import html
import re
import time
from datetime import date, datetime, timezone
from typing import Callable, Optional, Sequence

from agents.memory import STOPWORDS, content_words
from agents.ports import SearchBackend
from schemas.records import ChecklistItem, Fact, Gap, GapsRecord, Hit, Search, SearchResultsRecord

MAX_FACT_CHARS = 300
MAX_HIT_CHARS = 2000
# Share of the query's content words (years and "latest"-type cues aside) a hit must contain to count as about it:
# BM25 scores are not comparable across backends or corpora, term coverage is.
MIN_COVERAGE = 0.5
FACTS_PER_GAP = 2

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069]")
_SCRIPT = re.compile(r"<(script|style)\b[^>]*>.*?</\1\s*>", re.I | re.S)
_TAG = re.compile(r"<[^>]{0,500}>")
_MD_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
_MD_MARKS = re.compile(r"(^|\s)#{1,6}\s+|[*_`~|>]{1,3}|^\s*[-+]\s+", re.M)
_URL = re.compile(r"\bhttps?://\S+")
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\s*\n\s*")
_YEAR = re.compile(r"\b(?:19|20)\d\d\b")
_FRESH_WORDS = re.compile(r"\b(?:newest|latest|current|this year|upcoming|new)\b", re.I)
_STALE_WORDS = re.compile(r"\b(?:archive|archived|discontinued|former|formerly|obsolete|retired|legacy)\b", re.I)
_QUERY_NOISE = {"latest", "newest", "current", "new", "recent", "upcoming", "this-year", "year"}


def sanitize(text: str, limit: int = MAX_FACT_CHARS) -> str:
    """Plain text safe to put in a prompt: no markup, no control characters, no URLs, at most `limit` chars."""
    text = _SCRIPT.sub(" ", text or "")
    text = html.unescape(_TAG.sub(" ", text))
    text = _MD_LINK.sub(r"\1", text)
    text = _URL.sub(" ", text)
    text = _CONTROL.sub(" ", text)
    text = _MD_MARKS.sub(r"\1", text)
    text = re.sub(r"[{}<>\[\]\\]", " ", text)
    text = re.sub(r"\s+", " ", text).strip()
    if len(text) > limit:
        cut = text[:limit]
        text = cut[: cut.rfind(" ")] if " " in cut[limit // 2 :] else cut
    return text.strip(" ,;:-")


def _utc_today() -> date:
    return datetime.now(timezone.utc).date()


def _query_terms(query: str) -> list[str]:
    return [w for w in content_words(query) if w not in _QUERY_NOISE and not _YEAR.fullmatch(w)]


def _stem(word: str) -> str:
    return word[:-1] if len(word) > 3 and word.endswith("s") and not word.endswith("ss") else word


def coverage(query: str, text: str) -> float:
    """Share of the query's content words that appear in the text (plural-insensitive)."""
    terms = {_stem(t) for t in _query_terms(query)}
    if not terms:
        return 0.0
    present = {_stem(w) for w in content_words(text)}
    return len(terms & present) / len(terms)


def freshness(hit: Hit, year: int) -> float:
    """> 0 for a hit that is about now (names this year, says "newest"), < 0 for an old or archived one."""
    text = f"{hit.title} {hit.text} {hit.date or ''}"
    years = [int(y) for y in _YEAR.findall(text)]
    score = 0.0
    if years:
        score += 1.0 if max(years) >= year else -1.0 * min(1.0, (year - max(years)) / 2)
    if _FRESH_WORDS.search(text):
        score += 0.5
    if _STALE_WORDS.search(text):
        score -= 1.0
    return score


class Searcher:
    """`SearchResultsRecord` from a `GapsRecord`: every search gap on every backend, concurrently."""

    def __init__(
        self,
        backends: Sequence[SearchBackend],
        hits_per_query: int = 5,
        today: Optional[Callable[[], date]] = None,
        *,
        timeout_s: float = 15.0,
    ) -> None:
        if backends is None:
            raise ValueError("backends must be a sequence (empty for none)")
        for backend in backends:
            if not callable(getattr(backend, "search", None)) or not isinstance(getattr(backend, "name", None), str):
                raise ValueError(f"{backend!r} is not a SearchBackend (needs .name and async .search)")
        if not isinstance(hits_per_query, int) or hits_per_query < 1:
            raise ValueError(f"hits_per_query must be a positive integer, got {hits_per_query!r}")
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive, got {timeout_s}")
        self.backends = list(backends)
        self.hits_per_query = hits_per_query
        self.today = today or _utc_today
        self.timeout_s = timeout_s

    async def _run(self, gap: Gap, backend: SearchBackend) -> Search:
        started = time.perf_counter()
        try:
            hits = await asyncio.wait_for(backend.search(gap.query or "", self.hits_per_query), self.timeout_s)
            error = None
        except Exception as exc:  # noqa: BLE001 - any backend failure degrades this search, never the request
            hits, error = [], f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        clean = []
        for hit in list(hits or [])[: self.hits_per_query]:
            text = sanitize(hit.text, MAX_HIT_CHARS)
            if text:
                clean.append(hit.model_copy(update={"text": text, "title": sanitize(hit.title, 200),
                                                    "backend": hit.backend or backend.name}))
        return Search(gap_id=gap.id, query=gap.query or "", backend=backend.name, hits=clean,
                      seconds=round(time.perf_counter() - started, 6), error=error)

    async def __call__(self, record: GapsRecord) -> SearchResultsRecord:
        if not isinstance(record, GapsRecord):
            raise ValueError(f"expected a GapsRecord, got {type(record).__name__}")
        year = self.today().year
        gaps = [g.model_copy() for g in record.gaps]
        pending = [g for g in gaps if g.strategy == "search" and g.status == "open"]
        degraded = list(record.degraded)
        checklist = list(record.checklist)
        searches: list[Search] = []
        facts: list[Fact] = []

        for gap in pending:
            if not (gap.query or "").strip():
                gap.query = gap.subject
        if pending and not self.backends:
            for gap in pending:
                gap.status, gap.reason = "unfilled", "no search backend configured"
            degraded.append("search: no search backend configured")
        elif pending:
            jobs = [self._run(gap, backend) for gap in pending for backend in self.backends]
            searches = list(await asyncio.gather(*jobs))
            for search in searches:
                if search.error:
                    degraded.append(f"search backend {search.backend} failed for {search.gap_id}: {search.error}")
            for gap in pending:
                mine = [s for s in searches if s.gap_id == gap.id]
                gap_facts = self._facts(gap, [h for s in mine for h in s.hits], year)
                facts += gap_facts
                if gap_facts:
                    best = gap_facts[0]
                    gap.status, gap.value, gap.source = "filled", best.text, best.source
                    checklist.append(_checklist_item(checklist, gap, best.text, record.request.prompt))
                elif mine and all(s.error for s in mine):
                    gap.status = "unfilled"
                    gap.reason = "search failed: " + "; ".join(f"{s.backend}: {s.error}" for s in mine)
                else:
                    gap.status, gap.reason = "unfilled", "no search results"

        return SearchResultsRecord.model_validate(
            {
                **record.model_dump(),
                "gaps": [g.model_dump() for g in gaps],
                "checklist": [c.model_dump() for c in checklist],
                "searches": [s.model_dump() for s in searches],
                "facts": [f.model_dump() for f in facts],
                "degraded": degraded,
            }
        )

    def _facts(self, gap: Gap, hits: list[Hit], year: int) -> list[Fact]:
        query = gap.query or gap.subject
        relevant = [h for h in hits if h.score >= 0 and coverage(query, f"{h.title} {h.text}") >= MIN_COVERAGE]
        if not relevant:
            return []
        top = max(h.score for h in relevant) or 1.0

        def rank(hit: Hit) -> float:
            relevance = coverage(query, f"{hit.title} {hit.text}") + (hit.score / top if top > 0 else 0.0)
            return relevance + (freshness(hit, year) if gap.time_sensitive else 0.0)

        ranked = sorted(relevant, key=rank, reverse=True)
        if gap.time_sensitive and freshness(ranked[0], year) > 0:
            # Once something current is known, an older edition would only contradict it in the prompt.
            ranked = [h for h in ranked if freshness(h, year) > 0]
        facts: list[Fact] = []
        seen_text: set[str] = set()
        for hit in ranked:
            sentence = _best_sentence(query, hit)
            if not sentence or sentence.lower() in seen_text:
                continue
            seen_text.add(sentence.lower())
            facts.append(Fact(id=f"{gap.id}-f{len(facts) + 1}", gap_id=gap.id, text=sentence, source=hit.source,
                              backend=hit.backend, date=hit.date))
            if len(facts) >= FACTS_PER_GAP:
                break
        return facts


def _best_sentence(query: str, hit: Hit) -> str:
    """The sentence of the hit most about the query; the title counts for every sentence of its passage."""
    sentences = [s for s in (sanitize(p, MAX_FACT_CHARS) for p in _SENTENCE.split(hit.text)) if len(s) > 12]
    if not sentences:
        return ""
    title_words = set(content_words(hit.title))
    scored = []
    for index, sentence in enumerate(sentences):
        words = set(content_words(sentence))
        informative = len(words - set(_query_terms(query)) - title_words)
        scored.append((coverage(query, f"{hit.title} {sentence}"), min(informative, 8), -index, sentence))
    return max(scored)[3]


def _checklist_item(existing: list[ChecklistItem], gap: Gap, fact: str, prompt: str) -> ChecklistItem:
    """What the image must show from a searched fact: its words that neither the query nor the prompt had.

    Proper names come first (a place is what a reader checks), then other words; verb forms are left out.
    """
    known = set(content_words(f"{gap.query} {gap.subject} {prompt}")) | STOPWORDS
    proper = {w.lower() for i, w in enumerate(re.findall(r"[A-Za-z][\w'-]*", fact)) if i and w[:1].isupper()}
    candidates = [w for w in content_words(fact) if w not in known and not _YEAR.fullmatch(w) and len(w) > 2
                  and not w.endswith(("ed", "ing"))]
    terms = sorted(candidates, key=lambda w: (w not in proper, candidates.index(w)))[:3]
    used = {c.id for c in existing}
    n = len(existing) + 1
    while f"c{n}" in used:
        n += 1
    return ChecklistItem(id=f"c{n}", text=f"{gap.subject}: {fact}", terms=terms, gap_id=gap.id)
