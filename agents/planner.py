"""The plan stage, offline: find what a prompt leaves out (its context gap) with rules instead of an LLM.

Five kinds of gap are found: things only a search can know (named events and products, anything asked for "this
year" or "latest", occasions, customs and processes: `agents/planner_rules.py`), things only the user's memory knows
("my dog", "our logo", "my usual style", a remembered name: `agents/planner_memory.py`), formats and platforms ("a
LinkedIn banner": a layout constraint, not a question for search), and a missing style, setting, composition or
lighting, filled from remembered preferences or a default that says it is one. A memory gap memory cannot fill stays
unfilled: nothing is invented for it. The checklist it writes is what the critic later holds the prompt to.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date
from typing import Callable, Mapping, Optional

from agents.memory import STOPWORDS, MemoryView, find_styles, statements_in
from agents.planner_memory import MemoryGaps, reference_names, references
from agents.planner_rules import (
    _ADJECTIVES,
    _COLOURS,
    _COMPOSITION,
    _COUNT,
    _LIGHTING,
    _MEDIUM_CUES,
    _QUOTED,
    _SETTING,
    _SIZES,
    _YEAR,
    _entities,
    _tokens,
    _utc_today,
    format_constraints,
    knowledge,
)
from agents.ports import Embedder, MemoryStore
from agents.semantic import SemanticMemory
from agents.visual import telling_terms
from schemas.records import ChecklistItem, Degraded, Gap, GapsRecord, ImageRequest, MemoryItem

DEFAULTS: Mapping[str, str] = {
    "style": "detailed digital illustration",
    "setting": "simple uncluttered background",
    "composition": "balanced composition",
    "lighting": "soft natural lighting",
}
# Errors a store raises when it cannot be reached; anything else is a bug and should surface.
MEMORY_ERRORS = (ConnectionError, OSError, TimeoutError)


def memory_unavailable(what: str) -> Degraded:
    return Degraded(stage="planner", kind="memory_unavailable", detail=f"memory unavailable: {what}")


async def read_memory(memory: MemoryStore, user_id: str,
                      degraded: list[Degraded]) -> tuple[list[MemoryItem], bool]:
    """The user's items, or none when the store is unreachable: planning goes on and `degraded` says why."""
    try:
        return list(await memory.items(user_id)), True
    except MEMORY_ERRORS as exc:
        degraded.append(memory_unavailable(f"{type(exc).__name__}: {exc}"))
        return [], False


@dataclass
class _Plan:
    """One request's plan as the steps build it: the prompt, what memory holds, the gaps found so far and the memory
    items that filled them. Gap ids are numbered in the order the steps add them, so the steps' order is the ids'."""

    prompt: str
    view: MemoryView
    tokens: list[str] = field(init=False)
    gaps: list[Gap] = field(default_factory=list)
    used: dict[str, MemoryItem] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.tokens = _tokens(self.prompt)

    def add_gap(self, **fields) -> Gap:
        gap = Gap(id=f"g{len(self.gaps) + 1}", **fields)
        self.gaps.append(gap)
        return gap

    def fill_from(self, item: MemoryItem, value: str, *more: MemoryItem) -> dict:
        """A gap's fields when memory fills it; every item it draws on is listed once in `memory_used`."""
        for one in (item, *more):
            self.used.setdefault(one.id, one)
        return {"status": "filled", "value": value, "source": f"memory:{item.id}", "filled_by": "memory"}


class HeuristicPlanner:
    """`GapsRecord` from an `ImageRequest`, with rules; reads and writes the requesting user's memory only.

    With an `embedder`, memory references that words miss are matched by meaning (`agents/semantic.py`)."""

    def __init__(
        self,
        memory: MemoryStore,
        today: Optional[Callable[[], date]] = None,
        *,
        defaults: Optional[Mapping[str, str]] = None,
        embedder: Optional[Embedder] = None,
    ) -> None:
        if memory is None:
            raise ValueError("memory store is required (use an empty store for no memory)")
        self.memory = memory
        self.today = today or _utc_today
        self.defaults = {**DEFAULTS, **(defaults or {})}
        self.semantic = SemanticMemory(embedder) if embedder is not None else None

    async def __call__(self, request: ImageRequest) -> GapsRecord:
        if not isinstance(request, ImageRequest):
            raise ValueError(f"expected an ImageRequest, got {type(request).__name__}")
        degraded: list[Degraded] = []
        stored, memory_ok = await read_memory(self.memory, request.user_id, degraded)
        statements, written = await self._take_statements(request, memory_ok, degraded)
        plan = _Plan(request.prompt, MemoryView([*stored, *statements]))
        self._knowledge_gaps(plan)
        style_referenced = await self._memory_gaps(plan, request.user_id, memory_ok, degraded)
        has_format = self._format_gaps(plan)
        self._preferences(plan, style_referenced, has_format)
        checklist = _checklist(plan.prompt, plan.gaps, plan.tokens)
        return GapsRecord(
            request_id=request.request_id,
            user_id=request.user_id,
            round=0,
            request=request,
            gaps=plan.gaps,
            checklist=checklist,
            memory_used=list(plan.used.values()),
            memory_written=written,
            degraded=degraded,
        )

    async def _take_statements(self, request: ImageRequest, memory_ok: bool,
                               degraded: list[Degraded]) -> tuple[list[MemoryItem], list[MemoryItem]]:
        """(statements, written): what the prompt tells about the user ("my dog Max is a corgi"). Planned with even
        when the store is down, so this very request uses them; stored only when it is up."""
        statements = statements_in(request.prompt, now=request.created_at)
        written: list[MemoryItem] = []
        if statements and memory_ok:
            try:
                await self.memory.add(request.user_id, statements)
                # Listed even when already stored: a redelivered request then produces the same record.
                written = statements
            except MEMORY_ERRORS as exc:
                degraded.append(memory_unavailable(f"could not store statements: {type(exc).__name__}: {exc}"))
        return statements, written

    def _knowledge_gaps(self, plan: _Plan) -> None:
        """What only a search can know (named events and products, "this year", occasions, customs, processes):
        the image model's training cannot. Names the user's world owns (remembered, or "Max" in "my dog Max") are
        never searched on the web."""
        excluded = set(plan.view.named()) | reference_names(plan.prompt)
        year = self.today().year
        for _, _, subject, ts, query in knowledge(plan.tokens, plan.prompt, excluded, year):
            plan.add_gap(kind="knowledge", strategy="search", subject=subject, query=query, time_sensitive=ts,
                         description=f"what {subject} {'is like now' if ts else 'looks like'}; the image model "
                                     f"cannot know")

    async def _memory_gaps(self, plan: _Plan, user_id: str, memory_ok: bool, degraded: list[Degraded]) -> bool:
        """What only the user's memory knows, filled from it: "my usual style" and "like last time", then each
        "my …" reference by words and, for what words miss, by meaning, then remembered names on their own. True
        when the prompt refers to the user's style (so no style default is added)."""
        memory_gaps = MemoryGaps(plan.prompt, plan.view, plan.add_gap, plan.fill_from)
        style_referenced = memory_gaps.style_and_history()
        refs = references(plan.prompt)
        memory_gaps.resolve_by_words(refs)
        if memory_ok:
            try:
                await memory_gaps.resolve_by_meaning(refs, self.semantic, self.memory, user_id)
            except MEMORY_ERRORS as exc:
                degraded.append(memory_unavailable(f"no semantic match: {type(exc).__name__}: {exc}"))
        memory_gaps.possessive_gaps(refs)
        memory_gaps.name_gaps()
        return style_referenced

    def _format_gaps(self, plan: _Plan) -> bool:
        """Formats and platforms ("a LinkedIn banner") as layout constraints filled by default: a format is not a
        question for search. True when the prompt names one (it then says the composition)."""
        formats = format_constraints(plan.prompt)
        for named, platform, layout in formats:
            plan.add_gap(kind="constraint", strategy="default", subject="format", status="filled", value=layout,
                         source="default", filled_by="default",
                         description=f"'{named}' is a format{' on ' + platform if platform else ''}, not a question "
                                     f"for search", reason="layout default for the format")
        return bool(formats)

    def _preferences(self, plan: _Plan, style_referenced: bool, has_format: bool) -> None:
        """Style, setting, composition and lighting the prompt leaves open: from memory, else a default that says it
        is one. These are the only gaps a default may fill; a default never stands in for a remembered thing."""
        prompt, view = plan.prompt, plan.view
        if not style_referenced and not find_styles(prompt) and not _MEDIUM_CUES.search(prompt):
            fields = dict(kind="preference", subject="style", description="no style or medium given")
            style = view.style()
            if style:
                plan.add_gap(**fields, strategy="memory", **plan.fill_from(style, style.value))
            else:
                plan.add_gap(**fields, **self._default("style"))
        # A searched event or custom brings its own setting; a default backdrop would contradict it. A format
        # ("a LinkedIn banner") already says the composition.
        has_knowledge = any(g.kind == "knowledge" for g in plan.gaps)
        checks = [("setting", _SETTING, not has_knowledge), ("composition", _COMPOSITION, not has_format),
                  ("lighting", _LIGHTING, True)]
        for subject, pattern, wanted in checks:
            if not wanted or pattern.search(prompt):
                continue
            fields = dict(kind="preference", subject=subject, description=f"no {subject} given")
            remembered = view.preferences("format") if subject == "composition" else []
            if remembered:  # "I always want square images"
                plan.add_gap(**fields, strategy="memory", **plan.fill_from(remembered[0], remembered[0].value))
            else:
                plan.add_gap(**fields, **self._default(subject))

    def _default(self, subject: str) -> dict:
        """A gap's fields when a default fills it, with the reason saying it is one (the trace must not pass a
        default off as the user's choice)."""
        return dict(strategy="default", status="filled", value=self.defaults[subject], source="default",
                    filled_by="default", reason=f"default {subject}: neither the request nor memory gives one")


class _Checklist:
    """Checklist items in the order found, each set of terms once (a colour both filled and named is one check)."""

    def __init__(self) -> None:
        self.items: list[ChecklistItem] = []
        self._seen: set[tuple[str, ...]] = set()

    def add(self, text: str, terms: list[str], gap_id: Optional[str] = None) -> None:
        key = tuple(t.lower() for t in terms)
        if not terms or key in self._seen:
            return
        self._seen.add(key)
        self.items.append(ChecklistItem(id=f"c{len(self.items) + 1}", text=text, terms=terms, gap_id=gap_id))


def _checklist(prompt: str, gaps: list[Gap], tokens: list[str]) -> list[ChecklistItem]:
    """What the critic holds the prompt to: the filled gaps first, then what the request itself asks for (counts,
    quoted text, colours, named subjects, styles)."""
    checklist = _Checklist()
    for gap in gaps:
        if gap.status == "filled" and gap.value:
            # The telling words (names, colours, materials, numbers) rather than the first ones.
            checklist.add(f"{gap.subject or gap.kind}: {gap.value}", telling_terms(gap.value, set(), 3), gap.id)
    for m in _COUNT.finditer(prompt):
        count, noun = m.group(1), m.group(2)
        rest = prompt[m.start(2):].split()
        # "two red apples": the count belongs to the noun, not to its colour or size.
        while len(rest) > 1 and (_COLOURS.fullmatch(rest[0].lower()) or rest[0].lower() in _ADJECTIVES | _SIZES):
            rest = rest[1:]
        noun = re.sub(r"[^\w'-]+$", "", rest[0]) if rest else noun
        if noun.lower() not in STOPWORDS and not _YEAR.match(count):
            checklist.add(f"{count} {noun}", [count.lower(), noun.lower()])
    for m in _QUOTED.finditer(prompt):
        quoted = (m.group(1) or m.group(2)).strip()
        checklist.add(f'the text "{quoted}"', [quoted])
    for colour in dict.fromkeys(c.lower() for c in _COLOURS.findall(prompt)):
        checklist.add(f"colour {colour}", [colour])
    for _, _, entity in _entities(tokens, set()):
        checklist.add(f"named subject {entity}", [entity])
    for style in find_styles(prompt):
        checklist.add(f"style {style}", [style])
    return checklist.items
