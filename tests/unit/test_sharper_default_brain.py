"""Issue 15: each failure a new user hit on the offline path, as a test (planner → settle → search → enrich).

The embedder here is the tiny deterministic fake (tests/unit/fakes.py): what is tested is the policy, not the model.
tests/unit/test_embeddings_real.py runs the real all-MiniLM-L6-v2.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from agents.clarify import settle
from agents.enricher import Enricher
from agents.memory import MemoryView, describe_all, items_from_user_text, statements_in
from agents.planner import HeuristicPlanner
from agents.ports import GenerationDefaults
from agents.searcher import Searcher
from agents.semantic import SemanticMemory
from infra.corpus import CorpusSearch
from schemas.records import ImageRequest
from tests.unit.fakes import FakeEmbedder, FakeMemoryStore

TODAY = date(2026, 11, 26)
DEFAULTS = GenerationDefaults(width=64, height=64, steps=4, guidance=7.5, max_side=512)


async def run(prompt: str, memory: tuple[str, ...] = (), corpus: Path | None = None, embedder=None,
              store: FakeMemoryStore | None = None, user: str = "u1"):
    store = store or FakeMemoryStore()
    for line in memory:
        await store.add(user, items_from_user_text(line))
    planned = await HeuristicPlanner(store, today=lambda: TODAY, embedder=embedder)(
        ImageRequest(request_id="r-1", user_id=user, prompt=prompt))
    planned, _ = settle(planned, allow_question=False)
    backends = [CorpusSearch(corpus, embedder=embedder)] if corpus else []
    found = await Searcher(backends, today=lambda: TODAY)(planned)
    return Enricher(DEFAULTS).enrich(found)


def gap(record, subject):
    return next(g for g in record.gaps if g.subject == subject)


async def test_a_remembered_trait_reaches_the_prompt_and_no_default_stands_in_for_the_son():
    out = await run("a storybook picture of my son Theo flying a kite",
                    ("my son Theo has freckles and a gap-toothed smile",))
    assert "freckles" in out.prompt and "gap-toothed smile" in out.prompt
    assert "a simple" not in out.prompt
    theo = gap(out, "theo")
    assert (theo.status, theo.filled_by) == ("filled", "memory")


async def test_a_possessive_chain_is_two_references_and_the_unknown_one_is_not_invented():
    out = await run("a flyer for our cafe with our mascot", ("our team mascot is an orange owl",))
    assert "orange owl" in out.prompt and "a simple" not in out.prompt
    cafe, mascot = gap(out, "cafe"), gap(out, "team mascot")
    assert cafe.status == "unfilled" and cafe.value is None and "nothing invented" in cafe.reason
    assert mascot.status == "filled"
    # The flyer is a format, not something to look up.
    assert not [g for g in out.gaps if g.kind == "knowledge"]
    assert [g.subject for g in out.gaps if g.kind == "constraint"] == ["format"]


async def test_a_pet_name_with_no_memory_is_neither_searched_nor_filled(example_corpus):
    out = await run("a poster of my dog Max at the beach", corpus=example_corpus)
    assert not [g for g in out.gaps if g.strategy == "search"]
    assert out.searches == []
    dog = gap(out, "dog")
    assert dog.status == "unfilled" and dog.value is None and dog.source is None
    assert "a simple" not in out.prompt and "dog" in out.prompt


async def test_the_visual_sentence_of_a_passage_is_the_fact_and_comes_first_in_the_prompt(example_corpus):
    out = await run("a product photo of the latest Velo bike", corpus=example_corpus)
    bike = gap(out, "Velo bike")
    assert "olive" in bike.value and "cream" in bike.value and "glossy red" not in out.prompt
    # Colour and material before the sentence that only names the model.
    assert out.prompt.index("olive") < out.prompt.index("newest")
    [item] = [c for c in out.checklist if c.gap_id == bike.id]
    assert {"olive", "cream"} <= set(item.terms) or {"matte", "olive"} <= set(item.terms)
    assert "newest" not in item.terms


async def test_a_platform_format_is_a_constraint_not_a_search(example_corpus):
    out = await run("a LinkedIn banner for Harbor Tea", corpus=example_corpus)
    assert all("linkedin" not in s.query.lower() for s in out.searches)
    assert [s.query for s in out.searches] == ["Harbor Tea"]
    fmt = gap(out, "format")
    assert fmt.kind == "constraint" and "banner" in fmt.value
    assert "coral" in out.prompt and "navy" in out.prompt


async def test_an_implicit_process_is_a_knowledge_gap_searched_in_the_corpus(example_corpus):
    out = await run("copper sulfate crystals dissolving in water", corpus=example_corpus)
    [process] = [g for g in out.gaps if g.kind == "knowledge"]
    assert process.strategy == "search" and "dissolving" in process.query
    assert process.status == "filled" and "blue" in out.prompt


async def test_a_custom_asked_for_indirectly_is_a_knowledge_gap():
    out = await run("the flower people give on Mother's Day in a vase")
    subjects = [g.subject for g in out.gaps if g.kind == "knowledge"]
    assert subjects == ["the flower people give on mother's day"]


def test_a_checklist_item_from_a_fact_names_its_telling_terms():
    from agents.searcher import _checklist_item
    from schemas.records import Gap

    g = Gap(id="g1", kind="knowledge", strategy="search", subject="Orbit kettle", query="Orbit kettle 2026",
            description="x")
    item = _checklist_item([], g, "The Orbit Kettle 3 is the newest Orbit kettle, with a brushed copper body and a "
                                  "walnut handle.", "a studio shot of the latest Orbit kettle")
    assert "newest" not in item.terms and "copper" in item.terms and "walnut" in item.terms


@pytest.mark.parametrize("text, kind, subject, value", [
    ("my son Theo has freckles", "fact", "theo", "freckles"),
    ("Theo is my son", "fact", "theo", "my son"),
    ("Max is a corgi", "fact", "max", "corgi"),
    ("our logo is a blue fox", "fact", "logo", "blue fox"),
    ("my sister's name is Ana", "fact", "ana", "sister"),
    ("I'm vegetarian", "preference", "diet", "vegetarian"),
    ("I always want square images", "preference", "format", "square images"),
    ("my daughter Mira loves astronauts", "fact", "mira", "astronauts"),
])
def test_memory_statements_in_the_forms_people_write_them(text, kind, subject, value):
    [item] = items_from_user_text(text)
    assert (item.kind, item.subject, item.value) == (kind, subject, value)


def test_a_bare_name_statement_is_memory_only_not_read_from_a_request():
    assert statements_in("Pixel is sleeping on a bookshelf") == []
    assert [i.subject for i in items_from_user_text("Pixel is a grey sphynx")] == ["pixel"]


async def test_a_remembered_name_alone_brings_everything_remembered_about_it():
    out = await run("Theo reading under a tree", ("Theo is my son", "Theo has curly black hair"))
    assert "curly black hair" in out.prompt and "son" in out.prompt
    assert len(out.memory_used) == 2
    view = MemoryView([*items_from_user_text("Theo is my son"), *items_from_user_text("Theo has curly black hair")])
    assert describe_all(view.about("theo")) == "Theo, a son with curly black hair"


async def test_defaults_are_only_for_style_setting_composition_lighting_and_say_so():
    out = await run("a poster of my dog Max at the beach")
    defaults = [g for g in out.gaps if g.source == "default"]
    assert {g.subject for g in defaults} <= {"style", "setting", "composition", "lighting", "format"}
    assert all(g.reason and "default" in g.reason for g in defaults)


# -- by meaning ---------------------------------------------------------------------------------------------------

async def test_a_reference_words_miss_is_matched_by_meaning_and_the_vector_is_stored_once():
    embedder = FakeEmbedder(synonyms={"pup": "dog"})
    store = FakeMemoryStore()
    out = await run("my pup on a sofa", ("my dog Max is a corgi",), embedder=embedder, store=store)
    pup = next(g for g in out.gaps if g.kind == "memory")
    assert pup.status == "filled" and "corgi" in pup.value and "matched by meaning" in pup.reasoning
    assert "corgi" in out.prompt
    # The item's key once, the request's reference ("pup", or "pup on" cut at the stopword: just "pup") once.
    assert embedder.embedded == ["dog", "pup"]
    stored = store.vecs["u1"][embedder.model]
    assert len(stored) == 1
    # The next request reads the stored vector: only its own reference is embedded.
    embedder.embedded.clear()
    await run("my pup in the snow", embedder=embedder, store=store)
    assert embedder.embedded == ["pup"]
    # Forgetting the item drops its vector too.
    await store.forget("u1", next(iter(stored)))
    assert store.vecs["u1"][embedder.model] == {}


async def test_meaning_does_not_turn_one_pet_into_another():
    embedder = FakeEmbedder()  # dog and cat are different words and nothing says they match
    out = await run("my dog at the park", ("my cat Pixel is a grey sphynx",), embedder=embedder)
    dog = next(g for g in out.gaps if g.kind == "memory")
    assert dog.status == "unfilled" and "sphynx" not in out.prompt


async def test_without_an_embedder_words_still_work_and_nothing_is_embedded():
    out = await run("my dog on a sofa", ("my dog Max is a corgi",))
    assert "corgi" in out.prompt


async def test_semantic_memory_needs_an_embedder():
    with pytest.raises(ValueError):
        SemanticMemory(None)  # type: ignore[arg-type]


async def test_corpus_ranks_by_meaning_too_and_finds_a_passage_without_shared_words(tmp_path):
    (tmp_path / "mothers.md").write_text("# Gifts\nCarnations are given to mothers.")
    (tmp_path / "other.md").write_text("# Bikes\nThe Velo E2 has a matte olive frame.")
    embedder = FakeEmbedder(synonyms={"flower": "carnations", "mom": "mothers", "present": "given"})
    corpus = CorpusSearch(tmp_path, embedder=embedder)
    words_only = CorpusSearch(tmp_path)
    query = "flower mom present"
    assert await words_only.search(query) == []
    hits = await corpus.search(query)
    assert hits and hits[0].source == "mothers.md" and hits[0].similarity >= 0.45
    # Passages were embedded when the index was built; a search embeds its query only.
    embedder.embedded.clear()
    await corpus.search(query)
    assert embedder.embedded == [query]


def test_semantic_matching_without_the_model_is_one_line_naming_the_extra(monkeypatch):
    import importlib.util

    from infra import embeddings
    from streams.backends import build_embedder
    from infra.settings import Settings

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == embeddings.PACKAGE else real(name, *a))
    monkeypatch.setattr(embeddings, "_shared", None)
    settings = Settings.from_env({"GAPSTREAM_HOME": "/tmp/x"})
    assert settings.semantic_matching is True
    with pytest.raises(ValueError) as caught:
        build_embedder(settings)
    message = str(caught.value)
    assert "\n" not in message and "gapstream[embeddings]" in message and "GAPSTREAM_SEMANTIC_MATCHING=false" in message
    off = Settings.from_env({"GAPSTREAM_HOME": "/tmp/x", "GAPSTREAM_SEMANTIC_MATCHING": "false"})
    assert build_embedder(off) is None
