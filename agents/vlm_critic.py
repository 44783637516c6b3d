"""The critique stage on a vision-language model: every draft of a round in one call, judged against the checklist.

The pixels are still measured first (`agents.critic.measure`): a blank, flat, unreadable or wrongly sized draft is
broken whatever a model says about it. The model sees the readable drafts (PNG bytes; the adapter sends them as
data URLs) with the request, the filled gaps, the prompt and the planner's checklist, and answers with a pass/fail
and reason per item (for the draft it ranks best), a score per draft, an overall score and suggested prompt changes.

Score of a draft = the model's score for it, times its measured quality when the measurement found a problem; so a
blank draft scores 0 and is never accepted. The verdict is computed as the heuristic critic computes it (accept at
the threshold, exhausted on the last round or without improvement, revise otherwise: `agents.loop.decide`, which
also names the rule that ended the loop in `stop_reason`); the model's own verdict is advisory. Checklist items
the model did not judge count as failed ("not judged"); ids it made up are ignored.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass, field
from typing import Optional

from agents.critic import QualityCritic, best_so_far, decision_for, measure
from agents.llm_outputs import CriticOutput
from agents.llm_stage import ModelCall, Rejected, check_llm, check_on_error, with_trace
from agents.ports import ImageStore, LLMError
from agents.prompt_templates import clean, data_block, data_section, load_template, looks_like_instruction
from schemas.records import MAX_PROMPT_CHARS, CheckResult, Critique, CritiqueRecord, Degraded, DraftScore, ImagesRecord

MAX_SUGGESTIONS = 5


@dataclass
class _Draft:
    index: int
    data: Optional[bytes]
    metrics: dict[str, float] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    quality: float = 0.0


class VLMCritic:
    """`CritiqueRecord` from an `ImagesRecord` with one vision-model call a round; `fallback` judges otherwise."""

    def __init__(self, vlm, store: ImageStore, fallback: QualityCritic, *, accept_score: float = 0.75,
                 on_error: str = "fallback") -> None:
        self.vlm = check_llm(vlm, "vlm")
        if store is None or not callable(getattr(store, "get", None)):
            raise ValueError("store must be an ImageStore with get(uri)")
        if not isinstance(fallback, QualityCritic):
            raise ValueError(f"fallback must be a QualityCritic, got {type(fallback).__name__}")
        if not isinstance(accept_score, (int, float)) or not 0.0 <= accept_score <= 1.0:
            raise ValueError(f"accept_score must be within [0, 1], got {accept_score}")
        self.store = store
        self.fallback = fallback
        self.accept_score = float(accept_score)
        self.on_error = check_on_error(on_error)
        self.template = load_template("critic")

    async def _load(self, index: int, uri: str, expected: tuple[int, int]) -> _Draft:
        try:
            data = await asyncio.to_thread(self.store.get, uri)
            metrics, problems, quality = await asyncio.to_thread(measure, data, expected)
        except Exception as exc:  # noqa: BLE001 - an unreadable draft scores zero; the others are still judged
            return _Draft(index, None, {"quality": 0.0}, [f"could not read image: {type(exc).__name__}: {exc}"])
        return _Draft(index, bytes(data), metrics, problems, quality)

    async def __call__(self, record: ImagesRecord) -> CritiqueRecord:
        if not isinstance(record, ImagesRecord):
            raise ValueError(f"expected an ImagesRecord, got {type(record).__name__}")
        if not record.images:
            raise ValueError("images record holds no images")
        expected = (record.params.width, record.params.height)
        drafts = list(await asyncio.gather(*(self._load(i, ref.uri, expected) for i, ref in enumerate(record.images))))
        shown = [d for d in drafts if d.data is not None]
        if not shown:
            out = await self.fallback(record)
            blind = Degraded(stage="critic", kind="no_readable_draft",
                             detail="critic: no readable draft to show the model")
            return out.model_copy(update={"degraded": [*out.degraded, blind]})
        call = ModelCall(self.vlm, self.template, stage="critic", round=record.round)
        try:
            output = await call.run(self.user_message(record, len(shown)), CriticOutput,
                                    images=[d.data for d in shown])
            out = self.judge(record, output, drafts, shown, call.model)
        except (LLMError, Rejected) as exc:
            note, trace = call.failed(exc, self.on_error)
            return with_trace(await self.fallback(record), trace, [note])
        return with_trace(out, call.trace())

    def user_message(self, record: ImagesRecord, count: int) -> str:
        gaps = [data_block(g.id, g.value, kind=g.kind, subject=g.subject, source=g.source)
                for g in record.gaps if g.status == "filled" and g.value]
        checklist = [data_block(c.id, c.text) for c in record.checklist]
        return "\n\n".join([
            f"Round {record.round + 1} of at most {record.request.max_rounds}. "
            f"{count} draft image(s) attached, numbered 1 to {count} in order.",
            data_section("The request (data):", [data_block("request", record.request.prompt, limit=MAX_PROMPT_CHARS)]),
            data_section("The prompt the drafts were drawn from (data):",
                         [data_block("prompt", record.prompt, limit=MAX_PROMPT_CHARS)]),
            data_section("Context that was filled in (data):", gaps),
            data_section("Checklist (data; judge every item id):", checklist),
            'Answer with one JSON object: {"checks": [{"item_id": "c1", "passed": true, "reason": "..."}], '
            '"best_draft": 1, "draft_scores": [0.0], "score": 0.0, "verdict": "revise", "suggestions": ["..."]}.',
        ])

    def judge(self, record: ImagesRecord, output: CriticOutput, drafts: list[_Draft], shown: list[_Draft],
              model: str) -> CritiqueRecord:
        numbers = [output.score, *output.draft_scores]
        if not all(isinstance(x, (int, float)) and math.isfinite(x) for x in numbers):
            raise Rejected("model gave a score that is not a number")
        clamp = lambda x: min(1.0, max(0.0, float(x)))  # noqa: E731
        overall = clamp(output.score)
        best_shown = output.best_draft - 1 if 1 <= output.best_draft <= len(shown) else 0
        per_shown = [clamp(s) for s in output.draft_scores] if len(output.draft_scores) == len(shown) else \
            [overall] * len(shown)
        per_shown[best_shown] = overall
        model_score = {d.index: per_shown[n] for n, d in enumerate(shown)}
        preferred = shown[best_shown].index

        scored: list[tuple[DraftScore, int]] = []
        for draft in drafts:
            score = model_score.get(draft.index, 0.0)
            if draft.problems:
                score *= draft.quality
            # Rounded down: a near-perfect draft must not round up to a threshold of 1.0 it did not reach.
            scored.append((DraftScore(uri=record.images[draft.index].uri, score=math.floor(score * 10_000) / 10_000,
                                      quality=draft.metrics, problems=draft.problems), draft.index))
        ranked = sorted(scored, key=lambda pair: (-pair[0].score, pair[1] != preferred, pair[1]))
        top, top_index = ranked[0]
        score = top.score

        judged: dict[str, CheckResult] = {}
        items = {item.id: item for item in record.checklist}
        for check in output.checks:
            item_id = check.item_id.strip()
            if item_id in items and item_id not in judged:
                judged[item_id] = CheckResult(item_id=item_id, passed=bool(check.passed), reason=clean(check.reason, 200))
        checks = [judged.get(i, CheckResult(item_id=i, passed=False, reason="not judged")) for i in items]

        # A broken draft (blank, flat, unreadable) is never accepted, whatever the model scored it.
        decision = decision_for(record, score, self.accept_score, acceptable=drafts[top_index].quality > 0.0)
        suggestions = [s for s in (clean(s, 200) for s in output.suggestions[:MAX_SUGGESTIONS])
                       if s and not looks_like_instruction(s)]
        feedback = [f"missing: {items[c.item_id].text} ({c.reason})" for c in checks if not c.passed]
        for draft, _ in ranked:
            feedback += [f"draft {draft.uri}: {problem}" for problem in draft.problems]
        best, best_score, best_prompt = best_so_far(record, record.images[top_index], score)
        critique = Critique(round=record.round, verdict=decision.verdict, score=score, checks=checks,
                            drafts=[d for d, _ in ranked], feedback=feedback, suggestions=suggestions,
                            judge=f"vlm:{model}", prompt=record.prompt, stop_reason=decision.stop_reason)
        return CritiqueRecord.model_validate({
            **record.model_dump(),
            "critique": critique.model_dump(),
            "best": best.model_dump() if best else None,
            "best_score": best_score,
            "best_prompt": best_prompt,
        })
