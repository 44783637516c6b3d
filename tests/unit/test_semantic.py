"""Matching by meaning (agents/semantic.py): reference nouns against fact keys, stored vectors, the threshold."""

from __future__ import annotations

import asyncio
import math

import numpy as np
import pytest

from agents.semantic import MIN_SIMILARITY, SemanticMemory, decode, encode, key_text, matchable
from agents.statements import items_from_user_text
from tests.unit.fakes import FakeEmbedder, FakeMemoryStore

NOW = "2026-01-01T00:00:00.000+00:00"


def item(text: str):
    [found] = items_from_user_text(text, NOW)
    return found


DOG, CAT = item("my dog Max is a corgi"), item("my cat Pixel is a grey sphynx")


def run(coro):
    return asyncio.run(coro)


def test_vectors_are_stored_as_float16_and_read_back_close_enough_for_cosine():
    vector = np.random.default_rng(0).standard_normal(64).astype(np.float32)
    raw = encode(vector)
    assert len(raw) == 64 * 2
    back = decode(raw, 64)
    assert back.dtype == np.float32 and np.allclose(back, vector, atol=1e-2)


def test_a_stored_vector_of_another_size_is_not_used():
    assert decode(encode(np.ones(32)), 64) is None


@pytest.mark.parametrize("text, key", [
    ("my dog Max is a corgi", "dog"),  # what a reference would name: the noun
    ("our team mascot is an orange owl", "team mascot"),
    ("Max is a corgi", "corgi"),  # a bare name: what it is
    ("Theo has curly hair", "theo"),  # neither: the subject
])
def test_the_key_of_a_fact_is_what_a_reference_to_it_would_name(text, key):
    assert key_text(item(text)) == key


def test_only_facts_with_a_subject_are_matched_by_meaning():
    assert matchable(DOG)
    assert not matchable(item("I like watercolor"))  # a preference
    assert not matchable(item("remember the blue door"))  # a note without a subject


@pytest.mark.parametrize("embedder", [None, object(), type("NoEmbed", (), {"embed": 3})()])
def test_something_that_cannot_embed_is_refused(embedder):
    with pytest.raises(ValueError):
        SemanticMemory(embedder)


def test_a_reference_finds_the_fact_it_means_and_an_unrelated_one_finds_nothing():
    embedder = FakeEmbedder({"pup": "dog", "kitty": "cat"})
    matches = run(SemanticMemory(embedder).match(FakeMemoryStore(), "alice", [DOG, CAT], ["pup", "kitty", "car"]))
    assert matches[0].item == DOG and matches[0].similarity == pytest.approx(1.0, abs=1e-3)
    assert matches[1].item == CAT and matches[2] is None


def test_item_vectors_are_computed_once_and_stored_beside_the_items():
    embedder, store = FakeEmbedder({"pup": "dog"}), FakeMemoryStore()
    semantic = SemanticMemory(embedder)
    run(semantic.match(store, "alice", [DOG, CAT], ["pup"]))
    assert sorted(embedder.embedded) == ["cat", "dog", "pup"]
    assert set(store.vecs["alice"][embedder.model]) == {DOG.id, CAT.id}
    embedder.embedded.clear()
    run(semantic.match(store, "alice", [DOG, CAT], ["pup"]))
    assert embedder.embedded == ["pup"]  # a later request embeds only its own references


def test_a_stored_vector_of_the_wrong_size_is_computed_again():
    embedder, store = FakeEmbedder(), FakeMemoryStore()
    store.vecs["alice"] = {embedder.model: {DOG.id: encode(np.ones(8))}}
    vectors = run(SemanticMemory(embedder).item_vectors(store, "alice", [DOG]))
    assert embedder.embedded == ["dog"] and vectors[DOG.id].shape == (embedder.dim,)


def test_a_store_that_keeps_no_vectors_still_matches():
    matches = run(SemanticMemory(FakeEmbedder({"pup": "dog"})).match(object(), "alice", [DOG], ["pup"]))
    assert matches[0].item == DOG


def test_a_store_that_cannot_write_vectors_costs_only_a_recomputation(caplog):
    class DownStore(FakeMemoryStore):
        async def put_vectors(self, user_id, model, vectors):
            raise ConnectionError("redis down")

    matches = run(SemanticMemory(FakeEmbedder({"pup": "dog"})).match(DownStore(), "alice", [DOG], ["pup"]))
    assert matches[0].item == DOG and "could not store 1 memory vector" in caplog.text


def test_no_references_or_nothing_matchable_means_no_embedding_call():
    embedder = FakeEmbedder()
    semantic = SemanticMemory(embedder)
    assert run(semantic.match(FakeMemoryStore(), "alice", [DOG], [])) == []
    assert run(semantic.match(FakeMemoryStore(), "alice", [item("I like watercolor")], ["pup", "kitty"])) == [
        None, None]
    assert embedder.embedded == []


class FixedEmbedder:
    """Two-dimensional vectors chosen so a reference's cosine to the key "dog" is exactly what the test says."""

    model, dim = "fixed", 2

    def __init__(self, cosines: dict[str, float]) -> None:
        self.cosines = cosines

    async def embed(self, texts):
        return [np.array([1.0, 0.0]) if t == "dog" else np.array([self.cosines[t], math.sqrt(1 - self.cosines[t] ** 2)])
                for t in texts]


def test_a_match_needs_a_similarity_at_or_above_the_threshold():
    embedder = FixedEmbedder({"at": 0.5, "above": 0.75, "below": 0.49})
    matches = run(SemanticMemory(embedder, min_similarity=0.5).match(None, "alice", [DOG], ["at", "above", "below"]))
    assert [m and m.similarity for m in matches] == [0.5, 0.75, None]


def test_the_default_threshold_sits_between_near_synonyms_and_related_words():
    # Measured with all-MiniLM-L6-v2 (see the module docstring): kid/son 0.65 must not match, boy/son 0.75 must.
    assert 0.65 < MIN_SIMILARITY <= 0.75
    embedder = FixedEmbedder({"kid": 0.65, "boy": 0.75})
    matches = run(SemanticMemory(embedder).match(None, "alice", [DOG], ["kid", "boy"]))
    assert matches[0] is None and matches[1].item == DOG
