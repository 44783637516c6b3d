"""The ground stage for knowledge gaps: run each search gap's query on every backend, keep what is relevant and
fresh, and fill the gap with one short, sanitised fact that names its source and date.

- All queries of one request run at once (distinct queries × backends), so a request takes about as long as its
  slowest search; identical queries of one request are made once. At most `budget_per_request` distinct queries
  are made; the gaps beyond it stay unfilled with the reason "search budget exhausted".
- Hits of every backend are merged; each keeps its backend label, and each `Search` in the trace says whether it
  was served from cache (backends with `search_with_meta`, see `infra/search_cache.py`).
- Facts come from the most relevant sentences (default) or an injected `FactExtractor` (e.g. a language model);
  for time-sensitive gaps fresher sources win. When no snippet holds the fact, an optional `PageReader` reads the
  top result pages (at most `read_pages` per request).
- A backend that fails (after its own retries) degrades the request, never fails it: the gap stays unfilled with
  the reason, and `degraded` names the backend.

Hit text is untrusted: it is sanitised and capped (`agents/search_text.py`) before anything else reads it.
"""

from __future__ import annotations

import asyncio
import re
import time
from datetime import date, datetime, timezone
from typing import Callable, Optional, Sequence

from agents.memory import content_words
from agents.visual import telling_terms
from agents.ports import FactExtraction, FactExtractor, PageReader, SearchBackend, SearchError
from agents.search_text import (  # noqa: F401 - re-exported: the searcher's public helpers
    MAX_FACT_CHARS,
    MAX_HIT_CHARS,
    MAX_TITLE_CHARS,
    MIN_COVERAGE,
    YEAR,
    best_passage,
    best_sentence,
    coverage,
    freshness,
    sanitize,
    sanitize_source,
    visual_fact,
)
from agents.text import normalize_query
from schemas.records import (
    ChecklistItem,
    Degraded,
    Fact,
    Gap,
    GapsRecord,
    Hit,
    LLMCall,
    Search,
    SearchResultsRecord,
)

FACTS_PER_GAP = 2
# A hit that shares too few words with the query still counts when it means the same (cosine, all-MiniLM-L6-v2).
MIN_SIMILARITY = 0.5
BUDGET_EXHAUSTED = "search budget exhausted"


def _utc_today() -> date:
    return datetime.now(timezone.utc).date()


def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


class Searcher:
    """`SearchResultsRecord` from a `GapsRecord`: every search gap on every backend, concurrently."""

    def __init__(
        self,
        backends: Sequence[SearchBackend],
        hits_per_query: int = 5,
        today: Optional[Callable[[], date]] = None,
        *,
        timeout_s: float = 15.0,
        budget_per_request: Optional[int] = None,
        page_reader: Optional[PageReader] = None,
        read_pages: int = 2,
        extract_facts: Optional[FactExtractor] = None,
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
        if budget_per_request is not None and budget_per_request < 0:
            raise ValueError(f"budget_per_request must be >= 0 (0 or None: no limit), got {budget_per_request}")
        if read_pages < 0:
            raise ValueError(f"read_pages must be >= 0, got {read_pages}")
        if page_reader is not None and not callable(getattr(page_reader, "read", None)):
            raise ValueError(f"{page_reader!r} is not a PageReader (needs async .read(url))")
        if extract_facts is not None and not callable(getattr(extract_facts, "extract", None)):
            raise ValueError(f"{extract_facts!r} is not a FactExtractor (needs async .extract(gap, hits))")
        self.backends = list(backends)
        self.hits_per_query = hits_per_query
        self.today = today or _utc_today
        self.timeout_s = timeout_s
        self.budget_per_request = budget_per_request or None
        self.page_reader = page_reader
        self.read_pages = read_pages if page_reader is not None else 0
        self.extract_facts = extract_facts

    # -- searching -------------------------------------------------------------------------------------------------

    async def _run(self, query: str, backend: SearchBackend) -> Search:
        started = time.perf_counter()
        cached, error, hits = False, None, []
        try:
            with_meta = getattr(backend, "search_with_meta", None)
            if callable(with_meta):
                outcome = await asyncio.wait_for(with_meta(query, self.hits_per_query), self.timeout_s)
                hits, cached = list(outcome.hits or []), bool(outcome.cached)
            else:
                hits = list(await asyncio.wait_for(backend.search(query, self.hits_per_query), self.timeout_s) or [])
        except Exception as exc:  # noqa: BLE001 - any backend failure degrades this search, never the request
            error = _error_text(exc)
        clean = []
        for hit in hits[: self.hits_per_query]:
            text = sanitize(hit.text, MAX_HIT_CHARS)
            if text:
                clean.append(hit.model_copy(update={
                    "text": text, "title": sanitize(hit.title, MAX_TITLE_CHARS), "source": sanitize_source(hit.source),
                    "backend": hit.backend or backend.name, "date": sanitize(hit.date, 40) if hit.date else None}))
        return Search(gap_id="", query=query, backend=backend.name, hits=clean,
                      seconds=round(time.perf_counter() - started, 6), error=error, cached=cached)

    async def __call__(self, record: GapsRecord) -> SearchResultsRecord:
        if not isinstance(record, GapsRecord):
            raise ValueError(f"expected a GapsRecord, got {type(record).__name__}")
        today = self.today()
        # A search gap without a query searches its subject; the gaps this stage settles replace theirs at the end.
        gaps = [g.model_copy(update={"query": g.subject}) if _searchable(g) and not (g.query or "").strip() else g
                for g in record.gaps]
        pending = [g for g in gaps if _searchable(g)]
        settled: dict[str, Gap] = {}
        degraded = list(record.degraded)
        checklist = list(record.checklist)
        llm_calls = list(record.llm_calls)
        searches: list[Search] = []
        facts: list[Fact] = []

        if pending and not self.backends:
            for gap in pending:
                settled[gap.id] = gap.model_copy(update={"status": "unfilled", "reason": "no search backend configured"})
            degraded.append(Degraded(stage="searcher", kind="no_search_backend",
                                     detail="search: no search backend configured"))
        elif pending:
            searched = self._apply_budget(pending, degraded, settled)
            # One search per distinct query and backend, all at once; gaps with the same query share it.
            distinct = list(dict.fromkeys(normalize_query(g.query or "") for g in searched))
            first_query = {normalize_query(g.query or ""): g.query or "" for g in reversed(searched)}
            jobs = [(key, backend) for key in distinct for backend in self.backends]
            results = await asyncio.gather(*(self._run(first_query[key], backend) for key, backend in jobs))
            by_key: dict[str, list[Search]] = {}
            for (key, _), search in zip(jobs, results):
                by_key.setdefault(key, []).append(search)
            mine: dict[str, list[Search]] = {}
            for gap in searched:
                mine[gap.id] = [s.model_copy(update={"gap_id": gap.id, "query": gap.query or ""})
                                for s in by_key[normalize_query(gap.query or "")]]
                searches += mine[gap.id]
                for search in mine[gap.id]:
                    if search.error:
                        degraded.append(Degraded(
                            stage="searcher", kind="search_failed",
                            detail=f"search backend {search.backend} failed for {gap.id}: {search.error}"))

            found = await asyncio.gather(*(self._gap_facts(g, self._hits(mine[g.id]), today) for g in searched))
            gap_facts = {g.id: f for g, (f, _) in zip(searched, found)}
            for _, calls in found:
                llm_calls += calls
            if self.read_pages and self.page_reader is not None:
                page_searches = await self._read_pages(searched, gap_facts, mine, degraded)
                searches += page_searches
                redo = [g for g in searched if any(s.gap_id == g.id and s.hits for s in page_searches)]
                again = await asyncio.gather(*(
                    self._gap_facts(g, self._hits(mine[g.id]) + self._hits(
                        [s for s in page_searches if s.gap_id == g.id]), today) for g in redo))
                for gap, (more, calls) in zip(redo, again):
                    llm_calls += calls
                    if more:
                        gap_facts[gap.id] = more

            for gap in searched:
                found_facts = gap_facts[gap.id]
                facts += found_facts
                failed = [s for s in mine[gap.id] if s.error]
                if found_facts:
                    best = found_facts[0]
                    update = {"status": "filled", "value": best.text, "source": best.source,
                              "filled_by": f"search:{best.backend}" if best.backend else "search"}
                    checklist.append(_checklist_item(checklist, gap, best.text, record.request.prompt))
                elif failed and len(failed) == len(mine[gap.id]):
                    update = {"status": "unfilled",
                              "reason": "search failed: " + "; ".join(f"{s.backend}: {s.error}" for s in failed)}
                elif failed:
                    update = {"status": "unfilled",
                              "reason": "no search results (" + "; ".join(f"{s.backend} failed: {s.error}"
                                                                          for s in failed) + ")"}
                else:
                    update = {"status": "unfilled", "reason": "no search results"}
                settled[gap.id] = gap.model_copy(update=update)

        gaps = [settled.get(g.id, g) for g in gaps]
        return SearchResultsRecord.model_validate(
            {
                **record.model_dump(),
                "gaps": [g.model_dump() for g in gaps],
                "checklist": [c.model_dump() for c in checklist],
                "searches": [s.model_dump() for s in searches],
                "facts": [f.model_dump() for f in facts],
                "degraded": degraded,
                "llm_calls": [c.model_dump() for c in llm_calls],
            }
        )

    def _apply_budget(self, pending: list[Gap], degraded: list[Degraded], settled: dict[str, Gap]) -> list[Gap]:
        """The gaps whose queries fit the per-request budget (distinct queries, in gap order); the rest unfilled."""
        if self.budget_per_request is None:
            return pending
        allowed: dict[str, None] = {}
        searched, skipped = [], []
        for gap in pending:
            key = normalize_query(gap.query or "")
            if key in allowed or len(allowed) < self.budget_per_request:
                allowed.setdefault(key, None)
                searched.append(gap)
            else:
                settled[gap.id] = gap.model_copy(update={"status": "unfilled", "reason": BUDGET_EXHAUSTED})
                skipped.append(gap.id)
        if skipped:
            degraded.append(Degraded(stage="searcher", kind="search_budget",
                                     detail=f"search: {BUDGET_EXHAUSTED} ({self.budget_per_request} queries per "
                                            f"request); not searched: {', '.join(skipped)}"))
        return searched

    @staticmethod
    def _hits(searches: Sequence[Search]) -> list[Hit]:
        return [h for s in searches for h in s.hits]

    # -- facts -----------------------------------------------------------------------------------------------------

    def _ranked(self, gap: Gap, hits: list[Hit], today: date) -> list[Hit]:
        """Relevant hits (query-term coverage floor), best first; for time-sensitive gaps fresher first, and once
        something current is known, older editions are dropped (they would only contradict it in the prompt)."""
        query = gap.query or gap.subject
        # About the query by its words, or, where the backend measured it, by meaning.
        relevant = [h for h in hits if h.score >= 0 and (coverage(query, f"{h.title} {h.text}") >= MIN_COVERAGE
                                                         or (h.similarity or 0.0) >= MIN_SIMILARITY)]
        if not relevant:
            return []
        # Scores are only comparable within one backend: each is scaled by its own backend's best.
        top: dict[str, float] = {}
        for hit in relevant:
            top[hit.backend] = max(top.get(hit.backend, 0.0), hit.score)
        year = today.year

        def rank(hit: Hit) -> float:
            best = top.get(hit.backend, 0.0)
            relevance = coverage(query, f"{hit.title} {hit.text}") + (hit.score / best if best > 0 else 0.0) \
                + (hit.similarity or 0.0)
            return relevance + (freshness(hit, year, today) if gap.time_sensitive else 0.0)

        ranked = sorted(relevant, key=rank, reverse=True)
        if gap.time_sensitive and freshness(ranked[0], year, today) > 0:
            ranked = [h for h in ranked if freshness(h, year, today) > 0]
        return ranked

    async def _gap_facts(self, gap: Gap, hits: list[Hit], today: date) -> tuple[list[Fact], list[LLMCall]]:
        ranked = self._ranked(gap, hits, today)
        if not ranked:
            return [], []
        calls: list[LLMCall] = []
        if self.extract_facts is not None:
            try:
                extracted = await asyncio.wait_for(self.extract_facts.extract(gap, ranked), self.timeout_s)
                if isinstance(extracted, FactExtraction):
                    calls, extracted = list(extracted.llm_calls), extracted.facts
                facts = self._checked_facts(gap, list(extracted or []), ranked)
                if facts:
                    return facts, calls
            except Exception:  # noqa: BLE001 - the heuristic below is the fallback for any extractor failure
                pass
        return self._heuristic_facts(gap, ranked), calls

    def _heuristic_facts(self, gap: Gap, ranked: list[Hit]) -> list[Fact]:
        query = gap.query or gap.subject
        facts: list[Fact] = []
        seen_text: set[str] = set()
        for hit in ranked:
            sentence = visual_fact(query, hit)
            if not sentence or sentence.lower() in seen_text:
                continue
            seen_text.add(sentence.lower())
            facts.append(Fact(id=f"{gap.id}-f{len(facts) + 1}", gap_id=gap.id, text=sentence, source=hit.source,
                              backend=hit.backend, date=hit.date))
            if len(facts) >= FACTS_PER_GAP:
                break
        return facts

    def _checked_facts(self, gap: Gap, extracted: list[Fact], ranked: list[Hit]) -> list[Fact]:
        """An extractor's facts, kept only when they name a hit's source; text re-sanitised, date from the hit."""
        by_source = {h.source: h for h in ranked}
        facts: list[Fact] = []
        for fact in extracted:
            hit = by_source.get(getattr(fact, "source", None))
            text = sanitize(getattr(fact, "text", ""), MAX_FACT_CHARS)
            if hit is None or not text or any(f.text.lower() == text.lower() for f in facts):
                continue
            facts.append(Fact(id=f"{gap.id}-f{len(facts) + 1}", gap_id=gap.id, text=text, source=hit.source,
                              backend=hit.backend, date=hit.date))
            if len(facts) >= FACTS_PER_GAP:
                break
        return facts

    # -- reading result pages ----------------------------------------------------------------------------------------

    async def _read_pages(self, gaps: list[Gap], gap_facts: dict[str, list[Fact]], mine: dict[str, list[Search]],
                          degraded: list[Degraded]) -> list[Search]:
        """Read the top web results of the gaps whose snippets did not hold the fact (a fact sentence covering the
        query), at most `read_pages` pages for the whole request, each URL once."""
        plan: list[tuple[Gap, Hit]] = []
        urls: dict[str, None] = {}
        for gap in gaps:
            query = gap.query or gap.subject
            if any(coverage(query, f.text) >= MIN_COVERAGE for f in gap_facts[gap.id]):
                continue
            candidates = [h for h in self._hits(mine[gap.id]) if re.match(r"https?://", h.source)]
            candidates.sort(key=lambda h: (coverage(query, f"{h.title} {h.text}"), h.score), reverse=True)
            for hit in candidates:
                if hit.source not in urls and len(urls) >= self.read_pages:
                    break
                urls.setdefault(hit.source, None)
                plan.append((gap, hit))
                if sum(1 for g, _ in plan if g is gap) >= max(1, self.read_pages):
                    break
        if not urls:
            return []

        async def read(url: str) -> tuple[str, Optional[str], float]:
            started = time.perf_counter()
            try:
                text = await asyncio.wait_for(self.page_reader.read(url), self.timeout_s)  # type: ignore[union-attr]
                return text or "", None, time.perf_counter() - started
            except Exception as exc:  # noqa: BLE001 - a page that cannot be read only loses its facts
                return "", _error_text(exc), time.perf_counter() - started

        pages = dict(zip(urls, await asyncio.gather(*(read(u) for u in urls))))
        out: list[Search] = []
        for gap, hit in plan:
            text, error, seconds = pages[hit.source]
            passage = best_passage(gap.query or gap.subject, text) if text else ""
            hits = [hit.model_copy(update={"text": passage})] if passage else []
            if error:
                degraded.append(Degraded(stage="searcher", kind="page_read_failed",
                                         detail=f"search: reading a result page failed for {gap.id}: {error}"))
            out.append(Search(gap_id=gap.id, query=gap.query or "", backend="page", hits=hits,
                              seconds=round(seconds, 6), error=error))
        return out


def _searchable(gap: Gap) -> bool:
    return gap.strategy == "search" and gap.status == "open"


def _checklist_item(existing: list[ChecklistItem], gap: Gap, fact: str, prompt: str) -> ChecklistItem:
    """What the image must show from a searched fact: its telling words (names, numbers, colours, materials) that
    neither the query nor the prompt had; a fact's first content words are usually its least telling ones."""
    terms = telling_terms(fact, content_words(f"{gap.query} {gap.subject} {prompt}"), 3)
    terms = [t for t in terms if not YEAR.fullmatch(t)]
    used = {c.id for c in existing}
    n = len(existing) + 1
    while f"c{n}" in used:
        n += 1
    return ChecklistItem(id=f"c{n}", text=f"{gap.subject}: {fact}", terms=terms, gap_id=gap.id)


__all__ = ["Searcher", "sanitize", "coverage", "freshness", "normalize_query", "BUDGET_EXHAUSTED", "SearchError"]
