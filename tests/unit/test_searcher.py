"""The searcher: concurrency, failing backends, freshness, the relevance floor and sanitising hit text."""

from __future__ import annotations

import time
from datetime import date

import pytest

from agents.searcher import Searcher, coverage, sanitize
from infra.corpus import CorpusSearch
from schemas.records import Gap, GapsRecord, Hit, ImageRequest
from tests.unit.fakes import FakeBackend

TODAY = date(2026, 11, 26)


def gaps_record(*gaps: Gap, prompt: str = "a poster for this year's Lantern Fair") -> GapsRecord:
    request = ImageRequest(request_id="r-9", user_id="alice", prompt=prompt)
    return GapsRecord(request_id="r-9", user_id="alice", request=request, gaps=list(gaps))


def search_gap(gap_id="g1", query="Lantern Fair 2026", subject="Lantern Fair", ts=True) -> Gap:
    return Gap(id=gap_id, kind="knowledge", description="d", strategy="search", subject=subject, query=query,
               time_sensitive=ts)


def searcher(*backends, **kw) -> Searcher:
    return Searcher(list(backends), today=lambda: TODAY, **kw)


async def test_time_sensitive_gap_takes_the_current_edition(example_corpus):
    out = await searcher(CorpusSearch(example_corpus))(gaps_record(search_gap()))
    [gap] = out.gaps
    assert (gap.status, gap.source) == ("filled", "lantern-fair.md")
    assert "Lisbon" in gap.value and "emerald" in gap.value
    assert all("Porto" not in f.text for f in out.facts)
    assert [s.backend for s in out.searches] == ["corpus"] and out.searches[0].hits
    item = out.checklist[-1]
    assert item.gap_id == "g1" and "lisbon" in item.terms


async def test_without_time_sensitivity_relevance_decides(example_corpus):
    out = await searcher(CorpusSearch(example_corpus))(
        gaps_record(search_gap(query="Orbit kettle white enamel", subject="Orbit kettle", ts=False)))
    assert "white enamel" in out.gaps[0].value


async def test_newest_wins_for_latest_products(example_corpus):
    out = await searcher(CorpusSearch(example_corpus))(
        gaps_record(search_gap(query="Orbit kettle 2026", subject="Orbit kettle")))
    assert "copper" in out.gaps[0].value and out.gaps[0].source == "orbit-kettle.md"
    assert [f.date for f in out.facts] == ["2026-09"]


async def test_relevance_floor_drops_hits_that_only_share_the_year(example_corpus):
    out = await searcher(CorpusSearch(example_corpus))(
        gaps_record(search_gap(query="smartphone design 2026", subject="smartphone design")))
    assert out.searches[0].hits  # BM25 found "2026" somewhere…
    assert out.gaps[0].status == "unfilled" and out.gaps[0].reason == "no search results"  # …but that is not it
    assert out.facts == []


async def test_backends_run_concurrently_and_a_failing_one_only_degrades():
    hit = Hit(source="web:1", title="Lantern Fair 2026", text="The Lantern Fair 2026 is in Lisbon.", score=3.0)
    slow_a = FakeBackend("a", [hit], delay=0.2)
    slow_b = FakeBackend("b", error=RuntimeError("quota exceeded"), delay=0.2)
    second = search_gap("g2", query="Lantern Fair parade", ts=False)
    started = time.perf_counter()
    out = await searcher(slow_a, slow_b)(gaps_record(search_gap(), second))
    assert time.perf_counter() - started < 0.35  # four 0.2 s searches overlapped
    assert sorted((s.gap_id, s.backend) for s in out.searches) == [("g1", "a"), ("g1", "b"), ("g2", "a"), ("g2", "b")]
    assert {s.error for s in out.searches if s.backend == "b"} == {"RuntimeError: quota exceeded"}
    assert out.gaps[0].status == "filled" and out.gaps[0].source == "web:1"
    assert sum("search backend b failed" in d for d in out.degraded) == 2


async def test_all_backends_failing_leaves_the_gap_unfilled_with_the_reason():
    out = await searcher(FakeBackend("a", error=ConnectionError("down")))(gaps_record(search_gap()))
    assert out.gaps[0].status == "unfilled" and "down" in out.gaps[0].reason
    assert out.degraded


async def test_slow_backend_times_out():
    out = await searcher(FakeBackend("slow", delay=1.0), timeout_s=0.05)(gaps_record(search_gap()))
    assert out.searches[0].error.startswith("TimeoutError") and out.gaps[0].status == "unfilled"


async def test_no_backends_and_non_search_gaps():
    memory_gap = Gap(id="g2", kind="memory", description="d", strategy="memory", status="filled", value="x",
                     source="memory:m-1")
    out = await searcher()(gaps_record(search_gap(), memory_gap))
    assert out.gaps[0].status == "unfilled" and out.gaps[0].reason == "no search backend configured"
    assert out.gaps[1] == memory_gap and out.searches == []
    untouched = await searcher(FakeBackend("a"))(gaps_record(memory_gap))
    assert untouched.searches == [] and untouched.gaps == [memory_gap]


async def test_hit_text_is_sanitised_before_it_can_reach_a_prompt():
    nasty = Hit(source="web:x", title="<b>Lantern Fair</b>",
                text="<script>alert(1)</script>The **Lantern Fair** 2026\x07 is lit by [blue lamps](http://x.y/z) "
                     "at https://evil.example/?q=1 " + "and more lanterns " * 40 + ".", score=1.0)
    out = await searcher(FakeBackend("a", [nasty]))(gaps_record(search_gap()))
    value = out.gaps[0].value
    assert out.gaps[0].status == "filled"
    for bad in ("<", ">", "*", "\x07", "http", "[", "("):
        assert bad not in value
    assert "blue lamps" in value and len(value) <= 300


def test_sanitize_and_coverage_helpers():
    assert sanitize("# Title\n\n- item `code`") == "Title item code"
    assert len(sanitize("word " * 200)) <= 300
    assert coverage("Lantern Fair 2026", "the lantern fair") == 1.0
    assert coverage("Lantern Fair 2026", "a 2026 kettle") == 0.0


def test_constructor_checks():
    with pytest.raises(ValueError):
        Searcher([object()])
    with pytest.raises(ValueError):
        Searcher([], hits_per_query=0)
