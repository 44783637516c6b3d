"""The SerpAPI adapter, driven through the real `serpapi` client against a local fake SerpAPI server."""

from __future__ import annotations

import logging
import socket
from datetime import date

import pytest
import serpapi

from agents.ports import SearchError
from agents.searcher import Searcher
from streams.backends import build_page_reader, build_search_backends, searcher_options
from infra.serpapi_search import SerpApiSearch, normalize_date, normalize_results
from infra.settings import Settings
from schemas.records import Gap, GapsRecord, ImageRequest
from benchmarks.fake_serpapi import FakeSerpApi, SerpReply

KEY = "sk-serp-SECRET-1234567890"
TODAY = date(2026, 11, 26)

LANTERN = SerpReply.results(
    answer_box={"type": "organic_result", "title": "Lantern Fair 2026", "link": "https://fair.example/2026",
                "snippet": "The Lantern Fair 2026 takes place in Lisbon along the river.", "date": "Oct 3, 2026"},
    knowledge_graph={"title": "Lantern Fair", "type": "Festival", "description": "A yearly lantern festival.",
                     "founded": "1998", "kgmid": "/m/xyz", "source": {"name": "Wikipedia",
                                                                       "link": "https://wiki.example/Lantern_Fair"}},
    top_stories=[{"title": "Lantern Fair 2026 opens with emerald lanterns", "link": "https://news.example/a",
                  "source": "City News", "date": "2 days ago"}],
    organic=[{"title": "Lantern Fair — history", "link": "https://history.example/fair",
              "snippet": "The Lantern Fair was held in Porto in 2022.", "date": "Jun 1, 2022"},
             {"title": "No link result", "snippet": "dropped"}],
)


def backend(fake: FakeSerpApi, **kw) -> SerpApiSearch:
    kw.setdefault("backoff_s", 0.01)
    kw.setdefault("timeout_s", 3.0)
    return SerpApiSearch(KEY, base_url=fake.base_url, today=lambda: TODAY, **kw)


@pytest.fixture
async def fake():
    async with FakeSerpApi(api_key=KEY) as server:
        yield server


async def test_requests_reach_the_configured_host_and_results_are_normalised(fake):
    fake.script("Lantern Fair 2026", LANTERN)
    web = backend(fake)
    hits = await web.search("Lantern Fair 2026", limit=10)
    # The fake saw the call: the client went to GAPSTREAM_SERPAPI_URL's host, not serpapi.com …
    assert [(c.path, c.query, c.params["engine"]) for c in fake.calls] == [("/search", "Lantern Fair 2026", "google")]
    # … and no other client was redirected: the class attribute is untouched.
    assert serpapi.HTTPClient.BASE_DOMAIN == "https://serpapi.com" and serpapi.Client().BASE_DOMAIN == \
        "https://serpapi.com"
    # Answer box, knowledge graph, then organic results and top stories by rank.
    assert [h.source for h in hits] == ["https://fair.example/2026", "https://wiki.example/Lantern_Fair",
                                        "https://history.example/fair", "https://news.example/a"]
    assert all(h.backend == "serpapi" for h in hits)
    assert [h.date for h in hits] == ["2026-10-03", None, "2022-06-01", "2026-11-24"]
    assert "Lisbon" in hits[0].text and hits[0].title == "Lantern Fair 2026"
    assert hits[1].title == "Lantern Fair (Festival)" and "Founded: 1998" in hits[1].text and "/m/xyz" not in \
        hits[1].text
    assert hits[3].title == "Lantern Fair 2026 opens with emerald lanterns (City News)"
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert len(await web.search("Lantern Fair 2026", limit=2)) == 2


async def test_searcher_fills_the_gap_with_source_url_and_date(fake):
    fake.script("Lantern Fair 2026", LANTERN)
    gap = Gap(id="g1", kind="knowledge", description="d", strategy="search", subject="Lantern Fair",
              query="Lantern Fair 2026", time_sensitive=True)
    request = ImageRequest(request_id="r-1", user_id="alice", prompt="a poster for this year's Lantern Fair")
    out = await Searcher([backend(fake)], today=lambda: TODAY)(
        GapsRecord(request_id="r-1", user_id="alice", request=request, gaps=[gap]))
    [filled] = out.gaps
    assert filled.status == "filled" and filled.filled_by == "search:serpapi"
    assert filled.source in ("https://fair.example/2026", "https://news.example/a")
    assert all("Porto" not in f.text for f in out.facts)  # the 2022 page lost to the current ones
    assert {(f.source, f.date) for f in out.facts} <= {("https://fair.example/2026", "2026-10-03"),
                                                       ("https://news.example/a", "2026-11-24")}
    assert out.searches[0].backend == "serpapi" and not out.searches[0].cached


async def test_unauthorized_is_not_retried_and_the_key_never_leaks(fake, caplog):
    caplog.set_level(logging.DEBUG)
    wrong = SerpApiSearch("sk-wrong-KEY-999", base_url=fake.base_url, backoff_s=0.01)
    with pytest.raises(SearchError) as caught:
        await wrong.search("anything")
    error = caught.value
    assert (error.kind, error.retriable, len(fake.calls)) == ("unauthorized", False, 1)
    assert "Invalid API key" in str(error)
    assert "sk-wrong-KEY-999" not in str(error) and "sk-wrong-KEY-999" not in repr(error)
    assert error.__context__ is None and error.__cause__ is None
    # A 500 answer's message (requests names the URL, query string and all) is scrubbed too; and so are logs.
    fake.script("boom", SerpReply.server_error())
    with pytest.raises(SearchError) as caught:
        await backend(fake, retries=0).search("boom")
    assert KEY not in str(caught.value) and "HTTP 500" in str(caught.value)
    assert "api_key=***" in caplog.text  # urllib3 logged the request line …
    assert KEY not in caplog.text and "sk-wrong-KEY-999" not in caplog.text  # … without the key
    assert KEY not in repr(backend(fake))


async def test_retriable_failures_are_retried_then_given_up(fake):
    fake.script("flaky", SerpReply.rate_limited(), SerpReply.server_error(503),
                SerpReply.results(organic=[{"title": "Flaky", "link": "https://f.example", "snippet": "It works."}]))
    web = backend(fake, retries=2)
    hits = await web.search("flaky")
    assert [h.source for h in hits] == ["https://f.example"] and fake.calls_for("flaky") == 3
    fake.script("down", SerpReply.server_error())
    with pytest.raises(SearchError) as caught:
        await web.search("down")
    assert caught.value.retriable and caught.value.kind == "server_error" and caught.value.attempts == 3
    assert "after 3 attempts" in str(caught.value) and fake.calls_for("down") == 3


async def test_malformed_json_and_error_bodies_are_not_retried(fake):
    fake.script("cut", SerpReply.malformed())
    web = backend(fake, retries=3)
    with pytest.raises(SearchError) as caught:
        await web.search("cut")
    assert (caught.value.kind, caught.value.retriable, fake.calls_for("cut")) == ("invalid_response", False, 1)
    fake.script("bad", SerpReply.error(400, "Missing query `q` parameter."))
    with pytest.raises(SearchError) as caught:
        await web.search("bad")
    assert caught.value.kind == "bad_request" and fake.calls_for("bad") == 1
    fake.script("nothing", SerpReply.no_results())
    assert await web.search("nothing") == []


async def test_timeouts_and_unreachable_hosts_are_retriable(fake):
    fake.script("slow", SerpReply.slow(2.0))
    with pytest.raises(SearchError) as caught:
        await backend(fake, timeout_s=0.3).search("slow")
    assert caught.value.kind == "timeout" and caught.value.retriable
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(SearchError) as caught:
        await SerpApiSearch(KEY, base_url=f"http://127.0.0.1:{port}", retries=1, backoff_s=0.01).search("x")
    assert caught.value.kind == "unreachable" and caught.value.retriable and caught.value.attempts == 2
    assert KEY not in str(caught.value)


async def test_settings_wire_serpapi_and_corpus_together(fake, tmp_path, example_corpus):
    fake.script("Lantern Fair 2026", LANTERN)
    settings = Settings.from_env({"GAPSTREAM_HOME": str(tmp_path), "SERPAPI_API_KEY": KEY,
                                  "GAPSTREAM_SERPAPI_URL": fake.base_url, "GAPSTREAM_CORPUS_DIR": str(example_corpus),
                                  "GAPSTREAM_SEARCH_BUDGET_PER_REQUEST": "3"})
    assert KEY not in repr(settings)
    backends = build_search_backends(settings, None)
    assert [b.name for b in backends] == ["corpus", "serpapi"]
    assert build_page_reader(settings) is None
    assert build_page_reader(settings.with_overrides(search_read_pages=2)) is not None
    gap = Gap(id="g1", kind="knowledge", description="d", strategy="search", subject="Lantern Fair",
              query="Lantern Fair 2026", time_sensitive=True)
    request = ImageRequest(request_id="r-1", user_id="alice", prompt="a poster for this year's Lantern Fair")
    options = searcher_options(settings)
    assert options["budget_per_request"] == 3 and options["page_reader"] is None
    out = await Searcher(backends, today=lambda: TODAY, **options)(
        GapsRecord(request_id="r-1", user_id="alice", request=request, gaps=[gap]))
    assert fake.calls_for("Lantern Fair 2026") == 1
    assert sorted(s.backend for s in out.searches) == ["corpus", "serpapi"]
    assert {h.backend for s in out.searches for h in s.hits} == {"corpus", "serpapi"}
    assert {f.backend for f in out.facts} <= {"corpus", "serpapi"} and out.gaps[0].status == "filled"


def test_result_normalisation_and_dates():
    assert normalize_date("3 days ago", TODAY) == "2026-11-23"
    assert normalize_date("an hour ago", TODAY) == "2026-11-26"
    assert normalize_date("yesterday", TODAY) == "2026-11-25"
    assert normalize_date("Mar 4, 2026", TODAY) == "2026-03-04"
    assert normalize_date("4 March 2026", TODAY) == "2026-03-04"
    assert normalize_date("September 2026", TODAY) == "2026-09"
    assert normalize_date("2026-02-01T10:00:00Z", TODAY) == "2026-02-01"
    assert normalize_date("sometime", TODAY) == "sometime" and normalize_date(None, TODAY) is None
    hits = normalize_results({"answer_box": {"answer": "42", "title": "The answer"},
                              "top_stories": {"Top": [{"title": "Story", "link": "https://s.example", "date": "1 week "
                                                                                                              "ago"}]},
                              "organic_results": "not a list"}, TODAY)
    assert [(h.source, h.text, h.date) for h in hits] == [("serpapi:answer_box", "42", None),
                                                          ("https://s.example", "Story", "2026-11-19")]


def test_constructor_checks():
    with pytest.raises(ValueError):
        SerpApiSearch("")
    with pytest.raises(ValueError):
        SerpApiSearch(KEY, base_url="ftp://x")
