"""The local corpus backend: passages, titles, dates, JSON values, zero-score hits, refresh and input checks."""

from __future__ import annotations

import json
import os

import pytest

from infra.corpus import CorpusSearch, find_date, tokenize


async def test_example_corpus_ranks_the_matching_file_first(example_corpus):
    corpus = CorpusSearch(example_corpus)
    assert corpus.name == "corpus"
    hits = await corpus.search("Lantern Fair 2026")
    assert hits[0].source == "lantern-fair.md"
    assert hits[0].title == "Lantern Fair 2026"
    assert "Lisbon" in hits[0].text and not hits[0].text.startswith("#")
    assert hits[0].date == "2026" and hits[0].backend == "corpus"
    # The orbit kettle and Velo pages name 2026 too; BM25 keeps them, ranked below both fair pages (the Searcher
    # filters them).
    assert {h.source for h in hits[:2]} == {"lantern-fair.md", "lantern-fair-2022.md"}
    assert {h.source for h in hits[2:]} <= {"orbit-kettle.md", "velo-e2.md"}
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    kettle = await corpus.search("Orbit kettle")
    assert {h.source: h.date for h in kettle} == {"orbit-kettle.md": "2026-09", "orbit-kettle-1.md": "2021"}


async def test_unrelated_queries_return_nothing_rather_than_zero_scores(example_corpus):
    corpus = CorpusSearch(example_corpus)
    assert await corpus.search("submarine volcano") == []
    assert all(h.score > 0 for h in await corpus.search("cherry trees in spring", limit=10))


async def test_long_documents_are_split_into_focused_passages(tmp_path):
    filler = " ".join(f"Sentence {i} talks about ordinary harbour boats." for i in range(40))
    (tmp_path / "guide.md").write_text(
        f"# City guide\n\n## Harbour\n{filler}\n\n## Market\nThe night market sells saffron buns.\n"
    )
    corpus = CorpusSearch(tmp_path, max_passage_chars=300)
    assert len(corpus.passages) > 3 and all(len(p.text) <= 300 for p in corpus.passages)
    [hit, *_] = await corpus.search("saffron buns", limit=3)
    assert hit.text == "The night market sells saffron buns." and hit.title == "Market"
    assert len(await corpus.search("harbour boats", limit=2)) == 2


async def test_json_and_txt_files_are_indexed(tmp_path):
    (tmp_path / "events.json").write_text(
        json.dumps({"events": [{"name": "Kite Day", "summary": "Kite Day fills the beach with dragon kites."},
                               {"name": "Tide Run", "year": 2025, "summary": "Runners race the tide."}]})
    )
    (tmp_path / "notes.txt").write_text("Ferries leave at dawn.\n\nThe lighthouse is striped red.")
    (tmp_path / "ignored.csv").write_text("dragon,kites")
    (tmp_path / "broken.json").write_text("{not json")
    corpus = CorpusSearch(tmp_path)
    [hit] = await corpus.search("dragon kites", limit=5)
    assert (hit.source, hit.title) == ("events.json", "Kite Day")
    [hit] = await corpus.search("lighthouse")
    assert (hit.source, hit.title, hit.text) == ("notes.txt", "notes", "The lighthouse is striped red.")
    assert [s.split(":")[0] for s in corpus.skipped] == ["broken.json"]


async def test_refresh_picks_up_changed_files(tmp_path):
    doc = tmp_path / "a.md"
    doc.write_text("# A\nThe statue is bronze.")
    corpus = CorpusSearch(tmp_path, watch=True)
    assert await corpus.search("marble statue")
    doc.write_text("# A\nThe fountain is marble.")
    os.utime(doc, ns=(1, 1))  # mtime granularity must not hide the change
    assert (await corpus.search("marble"))[0].text == "The fountain is marble."
    assert corpus.refresh() is False


async def test_empty_folder_and_bad_inputs(tmp_path):
    corpus = CorpusSearch(tmp_path)
    assert await corpus.search("anything") == []
    with pytest.raises(ValueError):
        await corpus.search("  ")
    with pytest.raises(ValueError):
        await corpus.search("kites", limit=0)
    with pytest.raises(ValueError):
        CorpusSearch(tmp_path / "missing")


def test_tokenize_and_dates():
    assert tokenize("The Lanterns of the Cities, 2026!") == ["lantern", "city", "2026"]
    assert find_date("released September 2026, replacing the 2021 model") == "2026-09"
    assert find_date("no year here") is None
