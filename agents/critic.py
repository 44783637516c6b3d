"""The critique stage, offline: judge each draft by image quality and by whether the prompt carried the checklist.

Without a vision model the critic cannot see whether the image shows "emerald lanterns"; what it can check is
whether those words reached the prompt the image was drawn from (a dropped fact is the most common failure), and
whether the image itself is broken: wrong size, blank, flat, washed out.

Score of a draft = CHECKLIST_WEIGHT * checklist pass rate + QUALITY_WEIGHT * quality, with quality in [0, 1] made
of contrast (percentile spread), tonal range (std-dev) and structure (neighbouring pixels agree, as they do in
pictures and do not in noise). A blank image scores quality 0; a wrong size halves quality.
"""

from __future__ import annotations

import asyncio
import io
import math
from typing import Optional

import numpy as np

from agents import loop
from agents.memory import contains_phrase
from agents.ports import ImageStore
from schemas.records import (
    ChecklistItem,
    CheckResult,
    Critique,
    CritiqueRecord,
    DraftScore,
    ImageRef,
    ImagesRecord,
)

CHECKLIST_WEIGHT = 0.6
QUALITY_WEIGHT = 0.4
FLAT_STD = 4.0  # grey levels; below this a draft is one colour with compression noise
LOW_CONTRAST = 0.15  # 2nd-98th percentile spread as a share of the full range
# Quality parts: contrast and range saturate at values ordinary photos reach; structure never reaches 1 for noise.
CONTRAST_FULL = 0.7
STD_FULL = 60.0


def measure(data: bytes, expected: tuple[int, int]) -> tuple[dict[str, float], list[str], float]:
    """(metrics, problems, quality) for one PNG. Blocking (Pillow decode), so callers run it in a thread."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        image.load()
        size = image.size
        gray = np.asarray(image.convert("L"), dtype=np.float64)
    problems: list[str] = []
    std = float(gray.std())
    low, high = np.percentile(gray, [2, 98]) if gray.size else (0.0, 0.0)
    contrast = float(high - low) / 255.0
    structure = 0.0
    if gray.shape[0] > 1 and gray.shape[1] > 1 and std > 0:
        # Correlation of each pixel with its right and lower neighbour: ~1 for smooth pictures, ~0 for white noise.
        right = np.corrcoef(gray[:, :-1].ravel(), gray[:, 1:].ravel())[0, 1]
        down = np.corrcoef(gray[:-1, :].ravel(), gray[1:, :].ravel())[0, 1]
        structure = float(np.nan_to_num((right + down) / 2))
    metrics = {
        "width": float(size[0]),
        "height": float(size[1]),
        "std": round(std, 4),
        "contrast": round(contrast, 4),
        "structure": round(structure, 4),
    }
    if std < FLAT_STD:
        problems.append(f"blank or flat image (pixel std-dev {std:.1f})")
        quality = 0.0
    else:
        if contrast < LOW_CONTRAST:
            problems.append(f"very low contrast ({contrast:.2f} of the range)")
        quality = (
            0.4 * min(1.0, contrast / CONTRAST_FULL)
            + 0.2 * min(1.0, std / STD_FULL)
            + 0.4 * max(0.0, min(1.0, structure))
        )
    if size != expected:
        problems.append(f"size {size[0]}x{size[1]}, expected {expected[0]}x{expected[1]}")
        quality *= 0.5
    metrics["quality"] = round(quality, 4)
    return metrics, problems, quality


def check(item: ChecklistItem, prompt: str) -> CheckResult:
    """Passes when every term of the item is in the prompt as whole words (case-insensitive)."""
    if not item.terms:
        return CheckResult(item_id=item.id, passed=True, reason="nothing to check")
    missing = [t for t in item.terms if not contains_phrase(prompt, t)]
    if missing:
        return CheckResult(item_id=item.id, passed=False, reason=f"prompt lacks {', '.join(repr(t) for t in missing)}")
    return CheckResult(item_id=item.id, passed=True)


def decision_for(record: ImagesRecord, score: float, accept_score: float, *, acceptable: bool = True) -> loop.Decision:
    """The loop's next step (`agents.loop.decide`), the one stop rule of every critic: the request's threshold (or
    `accept_score`), its max_rounds, and the best score of the earlier rounds for the no-improvement rule."""
    threshold = record.request.accept_score if record.request.accept_score is not None else accept_score
    previous = record.best_score if record.round > 0 else None
    return loop.decide(record.round, record.request.max_rounds, threshold, score, previous, acceptable=acceptable)


def best_so_far(record: ImagesRecord, ref: ImageRef, score: float) -> tuple[Optional[ImageRef], Optional[float],
                                                                            Optional[str]]:
    """(best image, its score, its prompt) over all rounds; an earlier draft keeps its place on a tie."""
    best, best_score = loop.best_so_far(record.best, record.best_score, ref, score)
    return best, best_score, (record.prompt if best is ref else record.best_prompt)


def suggestions_for(items: list[ChecklistItem], checks: list[CheckResult], problems: bool) -> list[str]:
    """Prompt changes for the next round, as "add: <words>": what failed checks miss, and detail for poor drafts.
    The enricher applies them, so the critique visibly changes the next prompt."""
    by_id = {item.id: item for item in items}
    out: list[str] = []
    for result in checks:
        item = by_id.get(result.item_id)
        if not result.passed and item is not None and item.terms:
            out.append("add: " + " ".join(item.terms))
    if problems:
        out.append("add: sharp focus, high contrast, rich detail")
    return out[:5]


class QualityCritic:
    """`CritiqueRecord` from an `ImagesRecord`: checks, draft scores, the best image so far and a verdict. Async."""

    def __init__(self, store: ImageStore, accept_score: float = 0.75) -> None:
        if store is None or not callable(getattr(store, "get", None)):
            raise ValueError("store must be an ImageStore with get(uri)")
        if not 0.0 <= accept_score <= 1.0:
            raise ValueError(f"accept_score must be within [0, 1], got {accept_score}")
        self.store = store
        self.accept_score = accept_score

    def _load_and_measure(self, uri: str, expected: tuple[int, int]):
        return measure(self.store.get(uri), expected)

    async def _draft(self, ref: ImageRef, expected: tuple[int, int], pass_rate: float) -> DraftScore:
        try:
            metrics, problems, quality = await asyncio.to_thread(self._load_and_measure, ref.uri, expected)
        except Exception as exc:  # noqa: BLE001 - an unreadable draft scores zero; the other drafts still count
            metrics, problems, quality = {"quality": 0.0}, [f"could not read image: {type(exc).__name__}: {exc}"], 0.0
        score = CHECKLIST_WEIGHT * pass_rate + QUALITY_WEIGHT * quality
        # Rounded down: a near-perfect draft must not round up to a threshold of 1.0 it did not reach.
        return DraftScore(uri=ref.uri, score=math.floor(score * 10_000) / 10_000, quality=metrics, problems=problems)

    async def __call__(self, record: ImagesRecord) -> CritiqueRecord:
        if not isinstance(record, ImagesRecord):
            raise ValueError(f"expected an ImagesRecord, got {type(record).__name__}")
        if not record.images:
            raise ValueError("images record holds no images")
        checks = [check(item, record.prompt) for item in record.checklist]
        pass_rate = sum(c.passed for c in checks) / len(checks) if checks else 1.0
        expected = (record.params.width, record.params.height)
        drafts = await asyncio.gather(*(self._draft(ref, expected, pass_rate) for ref in record.images))
        ranked = sorted(zip(drafts, record.images), key=lambda pair: pair[0].score, reverse=True)
        best_draft, best_ref = ranked[0]
        score = best_draft.score

        best, best_score, best_prompt = best_so_far(record, best_ref, score)
        decision = decision_for(record, score, self.accept_score)

        items = {item.id: item for item in record.checklist}
        feedback = [f"missing: {items[c.item_id].text} ({c.reason})" for c in checks if not c.passed]
        for draft, _ in ranked:
            feedback += [f"draft {draft.uri}: {problem}" for problem in draft.problems]
        critique = Critique(
            round=record.round,
            verdict=decision.verdict,
            score=score,
            checks=checks,
            drafts=[d for d, _ in ranked],
            feedback=feedback,
            suggestions=suggestions_for(record.checklist, checks, any(d.problems for d, _ in ranked)),
            prompt=record.prompt,
            stop_reason=decision.stop_reason,
        )
        return CritiqueRecord.model_validate(
            {
                **record.model_dump(),
                "critique": critique.model_dump(),
                "best": best.model_dump() if best else None,
                "best_score": best_score,
                "best_prompt": best_prompt,
            }
        )
