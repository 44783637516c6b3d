"""The offline critic: image quality from real PNGs, checklist coverage of the prompt, ranking, best and verdict."""

from __future__ import annotations

import pytest

from agents.critic import CHECKLIST_WEIGHT, QUALITY_WEIGHT, QualityCritic, check, measure
from schemas.records import ChecklistItem, GenerationParams, ImageRef, ImageRequest, ImagesRecord
from tests.unit.fakes import FakeImageStore, flat_png, gradient_png, low_contrast_png, noise_png


def images_record(store, pngs, prompt="a fox, gouache style, emerald lanterns", round_=0, max_rounds=3,
                  accept_score=None, checklist=None, best=None, best_score=None, size=64):
    request = ImageRequest(request_id="r-5", user_id="alice", prompt="a fox", max_rounds=max_rounds,
                           accept_score=accept_score)
    refs = [ImageRef(uri=store.put(data, f"r{round_}-d{i}.png"), sha256="0" * 64, width=size, height=size, seed=i)
            for i, data in enumerate(pngs)]
    checklist = checklist if checklist is not None else [
        ChecklistItem(id="c1", text="style gouache", terms=["gouache"], gap_id="g1"),
        ChecklistItem(id="c2", text="emerald lanterns", terms=["emerald", "lanterns"], gap_id="g2"),
    ]
    return ImagesRecord(request_id="r-5", user_id="alice", round=round_, request=request, prompt=prompt,
                        checklist=checklist, images=refs, best=best, best_score=best_score,
                        params=GenerationParams(width=64, height=64, steps=4, guidance=7.5,
                                                seeds=list(range(len(pngs)))))


def test_quality_measures_flat_noise_low_contrast_and_size():
    _, problems, quality = measure(flat_png(), (64, 64))
    assert quality == 0.0 and any("flat" in p for p in problems)
    noise_metrics, problems, noise_q = measure(noise_png(), (64, 64))
    assert problems == [] and 0.2 < noise_q < 0.75  # contrasty, but no structure: clearly below 1
    _, problems, smooth_q = measure(gradient_png(), (64, 64))
    assert problems == [] and smooth_q > noise_q
    _, problems, low_q = measure(low_contrast_png(), (64, 64))
    assert any("contrast" in p for p in problems) and low_q < noise_q
    _, problems, small_q = measure(gradient_png(32, 32), (64, 64))
    assert any("expected 64x64" in p for p in problems) and small_q == pytest.approx(smooth_q * 0.5, abs=0.05)


def test_checks_are_whole_word_and_case_insensitive():
    item = ChecklistItem(id="c1", text="t", terms=["Lisbon", "red"])
    assert check(item, "a fair in LISBON, red lanterns").passed
    failed = check(item, "a fair in Lisbon, redwood trees")
    assert not failed.passed and "'red'" in failed.reason
    assert check(ChecklistItem(id="c2", text="t", terms=["pixel art"]), "in pixel   art style").passed


async def test_drafts_are_ranked_and_scored_by_checklist_and_quality():
    store = FakeImageStore()
    record = images_record(store, [flat_png(), gradient_png(), noise_png()])
    out = await QualityCritic(store)(record)
    critique = out.critique
    assert [d.uri for d in critique.drafts] == ["mem://r0-d1.png", "mem://r0-d2.png", "mem://r0-d0.png"]
    assert all(c.passed for c in critique.checks)
    best = critique.drafts[0]
    assert best.score == pytest.approx(CHECKLIST_WEIGHT + QUALITY_WEIGHT * best.quality["quality"], abs=1e-3)
    assert critique.score == best.score and critique.verdict == "accept"
    assert (out.best.uri, out.best_score, out.best_prompt) == ("mem://r0-d1.png", critique.score, record.prompt)
    assert any("flat" in f for f in critique.feedback)


async def test_failed_items_and_a_high_bar_ask_for_revision_then_exhaust():
    store = FakeImageStore()
    record = images_record(store, [noise_png()], prompt="a fox, gouache style", accept_score=1.0)
    out = await QualityCritic(store)(record)
    assert out.critique.verdict == "revise"
    [failed] = [c for c in out.critique.checks if not c.passed]
    assert failed.item_id == "c2" and any("emerald lanterns" in f for f in out.critique.feedback)
    last = await QualityCritic(store)(images_record(store, [noise_png()], round_=2, accept_score=1.0))
    assert last.critique.verdict == "exhausted"


async def test_best_is_kept_when_a_later_round_is_worse():
    store = FakeImageStore()
    earlier = ImageRef(uri="mem://old.png", sha256="1" * 64, width=64, height=64, seed=7)
    out = await QualityCritic(store, accept_score=0.99)(
        images_record(store, [flat_png()], round_=1, best=earlier, best_score=0.95))
    assert (out.best, out.best_score) == (earlier, 0.95)
    # A round that does not beat the best so far ends the loop (issue 6: no improvement is a stop rule).
    assert out.critique.score < 0.95 and out.critique.verdict == "exhausted"
    assert out.critique.stop_reason.startswith("no improvement")


async def test_request_threshold_overrides_the_constructor_and_unreadable_drafts_score_zero():
    store = FakeImageStore()
    record = images_record(store, [gradient_png()], accept_score=0.1)
    assert (await QualityCritic(store, accept_score=1.0)(record)).critique.verdict == "accept"
    missing = ImageRef(uri="mem://missing.png", sha256="2" * 64, width=64, height=64, seed=9)
    record = record.model_copy(update={"images": [*record.images, missing]})
    out = await QualityCritic(store)(record)
    assert out.critique.drafts[-1].uri == "mem://missing.png" and out.critique.drafts[-1].score == pytest.approx(
        CHECKLIST_WEIGHT)
    assert any("could not read" in p for p in out.critique.drafts[-1].problems)


def test_constructor_checks():
    with pytest.raises(ValueError):
        QualityCritic(FakeImageStore(), accept_score=1.5)
    with pytest.raises(ValueError):
        QualityCritic(None)
