"""The enrich stage: the user's prompt plus one phrase per filled gap, each traceable to its gap and source.

The prompt is comma-separated phrases with the user's words first and the most specific additions next (searched
facts, remembered things, the style), because CLIP reads only the first 77 tokens. A revised round moves what the
critic found missing up front, right after the user's words.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Optional, Sequence, Union

from agents.memory import contains_phrase, content_words
from agents.ports import GenerationDefaults
from agents.prompt_templates import looks_like_instruction
from agents.visual import visual_first
from schemas.records import (
    MAX_ROUNDS,
    ChecklistItem,
    Critique,
    CritiqueRecord,
    EnrichedPromptRecord,
    Gap,
    GenerationParams,
    PromptAddition,
    SearchResultsRecord,
)

DEFAULT_NEGATIVE = ("blurry", "low quality", "watermark", "jpeg artifacts", "deformed")
QUALITY_BOOST = "sharp focus, high contrast, rich detail"
# About 77 CLIP tokens; words beyond this are not seen, so default phrases past it are dropped, not sent.
MAX_PROMPT_WORDS = 60
_GAP_ORDER = {"knowledge": 0, "memory": 1, "ambiguity": 2, "constraint": 2, "preference": 3}
_SUGGESTION = re.compile(r"^\s*add:\s*([^\n]{1,200}?)\s*$", re.I)
_STYLE_NOUNS = re.compile(r"\b(?:style|art|painting|sketch(?:es)?|drawing|illustration|render|photo(?:graph)?)$", re.I)


def _phrase(gap: Gap) -> str:
    """The words a filled gap adds to the prompt; for a searched fact, its drawable clauses (`_rest` has the others)."""
    value = re.sub(r"\s+", " ", gap.value or "").strip()
    if gap.kind == "knowledge":
        value = re.sub(r"^(?:the|a|an)\s+", "", visual_first(value)[0], flags=re.I)
        value = value.replace(";", ",").rstrip(".!? ")
    elif gap.subject == "style" and not _STYLE_NOUNS.search(value):
        value = f"{value} style"
    return value.strip(" ,")


def _rest(gap: Gap) -> str:
    """The less visual clauses of a searched fact ("The Velo E2 is the newest Velo bike"): added after everything
    else, and only while the prompt has room."""
    if gap.kind != "knowledge":
        return ""
    rest = visual_first(re.sub(r"\s+", " ", gap.value or "").strip())[1]
    return re.sub(r"^(?:the|a|an)\s+", "", rest, flags=re.I).replace(";", ",").rstrip(".!? ").strip(" ,")


def _words(text: str) -> int:
    return len(text.split())


def derive_seed(base: int, round_: int, draft: int) -> int:
    """A 32-bit seed per (round, draft), stable across processes; round 0 draft 0 keeps the base seed itself."""
    if round_ == 0 and draft == 0:
        return base
    digest = hashlib.sha256(f"{base}:{round_}:{draft}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


def seeds_for(request_id: str, seed: Optional[int], round_: int, drafts: int) -> list[int]:
    base = seed if seed is not None else int.from_bytes(hashlib.sha256(request_id.encode()).digest()[:4], "big")
    out: list[int] = []
    for draft in range(drafts):
        value = derive_seed(base, round_, draft)
        while value in out:  # a collision would render the same draft twice
            value = (value + 1) % 2**32
        out.append(value)
    return out


@dataclass(frozen=True)
class RoundPlan:
    """What one round of enrichment starts from; shared with the model-backed enricher so both agree on rounds."""

    record: SearchResultsRecord
    round: int
    failed: list[ChecklistItem] = field(default_factory=list)
    quality_problems: bool = False
    carry: dict = field(default_factory=dict)  # critiques, prompt history and best-so-far of earlier rounds
    critique: Optional[Critique] = None


class Enricher:
    """`EnrichedPromptRecord` from search results (round 0) or from a `revise` critique (the next round). Async."""

    def __init__(self, defaults: GenerationDefaults) -> None:
        if not isinstance(defaults, GenerationDefaults):
            raise ValueError(f"defaults must be GenerationDefaults, got {type(defaults).__name__}")
        self.defaults = defaults

    async def __call__(self, record: Union[SearchResultsRecord, CritiqueRecord]) -> EnrichedPromptRecord:
        return self.enrich(record)

    def enrich(self, record: Union[SearchResultsRecord, CritiqueRecord]) -> EnrichedPromptRecord:
        plan = self.prepare(record)
        suggestions = plan.critique.suggestions if plan.critique else []
        prompt, additions = self._compose(plan.record, failed=plan.failed, quality_problems=plan.quality_problems,
                                          suggestions=suggestions, round_=plan.round)
        return self.build(plan, prompt, additions)

    def prepare(self, record: Union[SearchResultsRecord, CritiqueRecord]) -> RoundPlan:
        """Check the input and work out the round it starts; raises ValueError for anything not enrichable."""
        if isinstance(record, CritiqueRecord):
            return self._revise(record)
        if isinstance(record, EnrichedPromptRecord):
            raise ValueError("already enriched: only search results or a critique can be enriched")
        if not isinstance(record, SearchResultsRecord):
            raise ValueError(f"expected SearchResultsRecord or CritiqueRecord, got {type(record).__name__}")
        return RoundPlan(record=record, round=0)

    def build(self, plan: RoundPlan, prompt: str, additions: Sequence[PromptAddition],
              negative_prompt: Optional[str] = None) -> EnrichedPromptRecord:
        """The round's record: params, seeds and carried history as the heuristic path makes them."""
        return self._record(plan.record, plan.round, prompt, list(additions), plan.carry, negative_prompt)

    def _revise(self, record: CritiqueRecord) -> RoundPlan:
        if record.critique.verdict != "revise":
            raise ValueError(f"critique verdict is {record.critique.verdict!r}; only 'revise' starts a new round")
        round_ = record.round + 1
        if round_ >= record.request.max_rounds or round_ > MAX_ROUNDS:
            raise ValueError(f"round {round_} exceeds max_rounds={record.request.max_rounds}")
        failed_ids = {c.item_id for c in record.critique.checks if not c.passed}
        failed = [item for item in record.checklist if item.id in failed_ids]
        problems = any(d.problems for d in record.critique.drafts)
        carry = {
            "critiques": [c.model_dump() for c in [*record.critiques, record.critique]],
            "prompt_history": [*record.prompt_history, record.prompt],
            "best": record.best.model_dump() if record.best else None,
            "best_score": record.best_score,
            "best_prompt": record.best_prompt,
        }
        return RoundPlan(record=record, round=round_, failed=failed, quality_problems=problems, carry=carry,
                         critique=record.critique)

    def _compose(
        self, record: SearchResultsRecord, failed: list[ChecklistItem], quality_problems: bool,
        suggestions: Sequence[str] = (), round_: int = 0,
    ) -> tuple[str, list[PromptAddition]]:
        # A follow-up or an answered question plans from `base_prompt`; otherwise the user's own words come first.
        user = re.sub(r"\s+", " ", record.base_prompt or record.request.prompt).strip().rstrip(".,;: ")
        gaps = {g.id: g for g in record.gaps}
        filled = sorted(
            (g for g in record.gaps if g.status == "filled" and g.value and g.source),
            key=lambda g: (_GAP_ORDER.get(g.kind, 2), int(g.id[1:]) if g.id[1:].isdigit() else 0),
        )
        # What the critic found missing goes right after the user's words; the rest keeps its usual order.
        failed_gaps = {item.gap_id for item in failed if item.gap_id in gaps}

        additions: list[PromptAddition] = []
        parts = [user]

        def add(text: str, gap_id: str, source: str) -> None:
            text = text.strip(" ,")
            # A searched "fact" that talks to the model is an injection attempt, not something to draw.
            if looks_like_instruction(text):
                return
            if text and not contains_phrase(", ".join(parts), text):
                parts.append(text)
                additions.append(PromptAddition(text=text, gap_id=gap_id, source=source))

        def add_gap(gap: Gap) -> None:
            if gap.source == "default" and gap.id not in failed_gaps:
                if _words(", ".join([*parts, _phrase(gap)])) > MAX_PROMPT_WORDS:
                    return
            add(_phrase(gap), gap.id, gap.source or "")

        def spell_out(item: ChecklistItem) -> None:
            # Anything a failed item names that is still absent is spelled out, so the next check can pass.
            missing = [t for t in item.terms if not contains_phrase(", ".join(parts), t)]
            if missing:
                gap = gaps.get(item.gap_id or "")
                add(" ".join(missing), item.gap_id or "", gap.source if gap and gap.source else "request")

        for gap in (g for g in filled if g.id in failed_gaps):
            add_gap(gap)
        for item in failed:
            spell_out(item)
        # The critique's suggestions ("add: <words>") change this round's prompt; the source names the round that
        # suggested them, so the trace shows which critique changed what.
        applied = False
        for suggestion in suggestions:
            match = _SUGGESTION.match(suggestion or "")
            if match:
                add(match.group(1), "", f"critique:round{round_ - 1}")
                applied = True
        for gap in (g for g in filled if g.id not in failed_gaps):
            add_gap(gap)
        # What a searched fact says that cannot be drawn comes last, and only while CLIP would still read it.
        for gap in filled:
            rest = _rest(gap)
            # "During Diwali" after a Diwali request says nothing new.
            if set(content_words(rest)) <= set(content_words(", ".join(parts))):
                continue
            if rest and _words(", ".join([*parts, rest])) <= MAX_PROMPT_WORDS:
                add(rest, gap.id, gap.source or "")
        if quality_problems and not applied:
            add(QUALITY_BOOST, "", "critique:quality")
        return ", ".join(parts), additions

    def negative(self, record: SearchResultsRecord, extra: Sequence[str] = ()) -> str:
        """The request's negative terms first, then `extra`, then the defaults; each term once."""
        terms: list[str] = []
        for term in [*record.request.negative_prompt.split(","), *extra, *DEFAULT_NEGATIVE]:
            term = re.sub(r"\s+", " ", term).strip()
            if term and term.lower() not in {t.lower() for t in terms}:
                terms.append(term)
        return ", ".join(terms)

    def _params(self, record: SearchResultsRecord, round_: int) -> GenerationParams:
        request, defaults = record.request, self.defaults
        width = request.width or defaults.width
        height = request.height or defaults.height
        for name, side in (("width", width), ("height", height)):
            if side > defaults.max_side:
                raise ValueError(f"{name} {side} exceeds the maximum side {defaults.max_side}")
            if side < 8 or side % 8:
                raise ValueError(f"{name} must be a positive multiple of 8, got {side}")
        steps = request.steps or defaults.steps
        guidance = request.guidance if request.guidance is not None else defaults.guidance
        if steps < 1:
            raise ValueError(f"steps must be at least 1, got {steps}")
        seeds = seeds_for(request.request_id, request.seed, round_, request.drafts)
        return GenerationParams(width=width, height=height, steps=steps, guidance=guidance, seeds=seeds)

    def _record(self, record: SearchResultsRecord, round_: int, prompt: str, additions: list[PromptAddition],
                carry: dict, negative_prompt: Optional[str] = None) -> EnrichedPromptRecord:
        base = record.model_dump(include=set(SearchResultsRecord.model_fields))
        return EnrichedPromptRecord.model_validate(
            {
                **base,
                "round": round_,
                "prompt": prompt,
                "negative_prompt": self.negative(record) if negative_prompt is None else negative_prompt,
                "additions": [a.model_dump() for a in additions],
                "params": self._params(record, round_).model_dump(),
                **carry,
            }
        )
