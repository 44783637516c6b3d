"""The plan stage on a language model: typed gaps with strategies, the checklist and the facts the user stated.

One call per request. The model sees the request, today's date and the user's memory (as data blocks with short
ids); its answer is held to the same contract as the heuristic planner's record, and checked where a schema cannot:
a strategy must suit its gap's kind, a memory gap must cite a memory item that exists, a search gap needs a query,
stated facts must be things the request says, and nothing from an instruction-like memory item may reach a value,
query or checklist. A model that is unreachable or fails a check hands the request to the heuristic planner (or,
with `on_error="dead-letter"`, fails it), and the record says so.
"""

from __future__ import annotations

from datetime import date, datetime, timezone
from typing import Callable, Optional, Union

from agents.llm_outputs import PlannedGap, PlannerOutput, planner_output_for
from agents.llm_stage import ModelCall, Rejected, check_llm, check_on_error, partial, with_trace
from agents.memory import MemoryView, content_words, describe, find_styles, item_id, normalize, statements_in
from agents.planner import DEFAULTS, MEMORY_ERRORS, HeuristicPlanner, memory_unavailable, read_memory
from agents.planner_rules import _STYLE_REF
from agents.ports import LLMError, MemoryStore
from agents.prompt_templates import (
    clean,
    data_block,
    data_section,
    injected_sentences,
    leaked_words,
    load_template,
    looks_like_instruction,
)
from schemas.records import ChecklistItem, Degraded, Gap, GapsRecord, ImageRequest, MemoryItem

MAX_GAPS = 12
MAX_CHECKS = 16
MAX_REMEMBER = 8
MAX_MEMORY_SHOWN = 40  # newest items; older ones are the least likely to matter and cost tokens
# Which strategies make sense for which kind. Searching the web for the user's dog, or reasoning out what the user
# owns, is a privacy leak or an invention; a model told by injected text to "ask everything" also breaks this.
ALLOWED: dict[str, frozenset[str]] = {
    "knowledge": frozenset({"search", "reason", "default"}),
    "memory": frozenset({"memory", "ask"}),
    "preference": frozenset({"memory", "default", "reason", "ask"}),
    "ambiguity": frozenset({"reason", "default", "ask"}),
    "constraint": frozenset({"reason", "default", "ask"}),
}


def _today_fn(today: Union[None, date, Callable[[], date]]) -> Callable[[], date]:
    if today is None:
        return lambda: datetime.now(timezone.utc).date()
    if isinstance(today, date):
        return lambda: today
    if callable(today):
        return today
    raise ValueError(f"today must be a date or a callable returning one, got {type(today).__name__}")


def mark_heuristic(record: GapsRecord) -> GapsRecord:
    """The heuristic planner's record with `filled_by` said for each gap it filled."""
    gaps = []
    for gap in record.gaps:
        if gap.status == "filled" and gap.filled_by is None:
            source = gap.source or ""
            by = "default" if source == "default" else "memory" if source.startswith("memory:") else "heuristic"
            gap = gap.model_copy(update={"filled_by": by})
        gaps.append(gap)
    return record.model_copy(update={"gaps": gaps})


class LLMPlanner:
    """`GapsRecord` from an `ImageRequest` with one model call; `fallback` plans when the model cannot."""

    def __init__(
        self,
        llm,
        memory: MemoryStore,
        fallback: HeuristicPlanner,
        *,
        today: Union[None, date, Callable[[], date]] = None,
        on_error: str = "fallback",
    ) -> None:
        self.llm = check_llm(llm)
        if memory is None or not callable(getattr(memory, "items", None)):
            raise ValueError("memory must be a MemoryStore (use an empty store for no memory)")
        if fallback is None or not callable(fallback):
            raise ValueError("fallback must be a HeuristicPlanner (or another async planner)")
        self.memory = memory
        self.fallback = fallback
        self.today = _today_fn(today if today is not None else getattr(fallback, "today", None))
        self.on_error = check_on_error(on_error)
        self.template = load_template("planner")

    async def __call__(self, request: ImageRequest) -> GapsRecord:
        if not isinstance(request, ImageRequest):
            raise ValueError(f"expected an ImageRequest, got {type(request).__name__}")
        degraded: list[Degraded] = []
        stored, memory_ok = await read_memory(self.memory, request.user_id, degraded)
        statements = statements_in(request.prompt, now=request.created_at)
        view = MemoryView([*stored, *statements])
        # Learned history and entities only where this prompt names what they show (issue 6): the capped history
        # would otherwise crowd the user's own statements out of the model's view.
        related = {i.id for i in view.relevant(request.prompt)}
        shown = [i for i in view.items if i.kind in ("fact", "preference") or i.id in related][-MAX_MEMORY_SHOWN:]
        aliases = {f"m{i + 1}": item for i, item in enumerate(shown)}

        call = ModelCall(self.llm, self.template, stage="planner", round=0)
        try:
            # The schema the server decodes against names the memory ids shown, so a model cannot cite others.
            output = await call.run(self.user_message(request, aliases), planner_output_for(list(aliases), ALLOWED))
            plan = _Plan(request, view, aliases, call.model, injected_sentences(i.text for i in shown))
            gaps, checklist, used, stated = plan.build(output)
            _check_memory_used(request, view, gaps, used, {i.id for i in [*statements, *stated]})
            dropped = [*(call.reply.dropped if call.reply else ()), *plan.dropped]
            if dropped:
                degraded.append(partial("planner", f"dropped: {'; '.join(dropped)}"))
        except (LLMError, Rejected) as exc:
            note, trace = call.failed(exc, self.on_error)
            return with_trace(mark_heuristic(await self.fallback(request)), trace, [note])

        known = {i.id for i in statements} | {(i.subject, normalize(i.value)) for i in statements}
        new = [s for s in stated if s.id not in known and (s.subject, normalize(s.value)) not in known]
        to_write = [*statements, *new]
        written: list[MemoryItem] = []
        if to_write and memory_ok:
            try:
                await self.memory.add(request.user_id, to_write)
                written = to_write  # listed even when already stored, so a redelivery gives the same record
            except MEMORY_ERRORS as exc:
                degraded.append(memory_unavailable(f"could not store statements: {type(exc).__name__}: {exc}"))
        record = GapsRecord(
            request_id=request.request_id,
            user_id=request.user_id,
            round=0,
            request=request,
            gaps=gaps,
            checklist=checklist,
            memory_used=used,
            memory_written=written,
            degraded=degraded,
        )
        return with_trace(record, call.trace())

    def user_message(self, request: ImageRequest, aliases: dict[str, MemoryItem]) -> str:
        today = self.today()
        ask = "allowed" if request.allow_clarification else "not allowed for this request (an 'ask' gap stays unfilled)"
        memory = [data_block(alias, item.text, kind=item.kind, subject=item.subject) for alias, item in aliases.items()]
        return "\n\n".join([
            f"Today's date: {today.isoformat()} (year {today.year}).\nClarifying questions to the user: {ask}.",
            data_section("The request (data):", [data_block("request", request.prompt, limit=4000)]),
            data_section("The user's memory (data; cite an item by its id):", memory),
            'Answer with one JSON object: {"gaps": [...], "checklist": [...], "remember": [...]}.',
        ])


def _check_memory_used(request: ImageRequest, view: MemoryView, gaps: list[Gap], used: list[MemoryItem],
                       stated: set[str]) -> None:
    """A plan that ignores what memory plainly says about the request ("Pixel" with "my cat Pixel is a grey
    sphynx" remembered, or "my usual style" with a style stated) is worse than the rules: the tiny model measured
    planned valid but memory-blind gaps on most requests. A plan that has a gap for it but cites badly keeps that
    gap unfilled instead (a partly valid answer); what the request itself states is not asked for."""
    cited = {i.id for i in used}
    subjects = " ".join(g.subject.lower() for g in gaps)
    for item in view.relevant(request.prompt):
        if item.kind != "fact" or not item.subject or item.id in cited or item.id in stated:
            continue
        if item.subject not in subjects and not any(u.subject == item.subject for u in used):
            raise Rejected(f"model's plan leaves out what memory says about {item.subject!r}")
    style = view.style()
    if style is not None and _STYLE_REF.search(request.prompt) and style.id not in cited and "style" not in subjects:
        raise Rejected("model's plan leaves out the user's remembered style")


class _Invalid(Exception):
    """One gap of the answer breaks a rule; the gap is dropped, the rest of the answer kept."""


class _Plan:
    """Turns one `PlannerOutput` into gaps, checklist, memory used and statements, or raises `Rejected`."""

    def __init__(self, request: ImageRequest, view: MemoryView, aliases: dict[str, MemoryItem], model: str,
                 injected: list[str]) -> None:
        self.request = request
        self.by_id = {**{i.id: i for i in view.items}, **aliases}
        self.model = model
        self.injected = injected
        self.used: dict[str, MemoryItem] = {}
        self.dropped: list[str] = []

    def _guard(self, where: str, *texts: Optional[str]) -> None:
        for text in texts:
            if not text:
                continue
            if looks_like_instruction(text):
                raise Rejected(f"model put an instruction into {where}")
            leaked = leaked_words(text, self.injected, trusted=self.request.prompt)
            if leaked:
                raise Rejected(f"model copied injected memory text into {where} ({', '.join(leaked[:3])})")

    def build(self, output: PlannerOutput):
        """Gaps, checklist, memory used, statements. A gap that breaks a rule a schema cannot state (a strategy its
        kind may not use, a search without a query) is dropped and the rest kept; an answer with nothing valid
        left, or one that carries injected text anywhere, is `Rejected` whole."""
        ids: dict[str, str] = {}
        gaps = []
        for index, planned in enumerate(output.gaps[:MAX_GAPS]):
            gap_id = f"g{len(gaps) + 1}"
            try:
                gap = self._gap(gap_id, planned)
            except _Invalid as exc:
                # Named by its place in the answer, which is what the model (and a reader of the log) knows it by.
                self.dropped.append(str(exc).replace(f" gap {gap_id} ", f" gap g{index + 1} "))
                continue
            ids.setdefault(planned.id.strip() or gap_id, gap_id)
            gaps.append(gap)
        # A minority of bad gaps is a weak model's slip; as many bad as good is an answer not to trust at all (a
        # model obeying injected text turns every gap into a question or a search).
        if self.dropped and len(self.dropped) >= len(gaps):
            raise Rejected("; ".join(self.dropped[:2]))
        return gaps, self._checklist(output, gaps, ids), list(self.used.values()), self._stated(output)

    def _gap(self, gap_id: str, planned: PlannedGap) -> Gap:
        if planned.strategy not in ALLOWED[planned.kind]:
            raise _Invalid(f"model gave {planned.kind} gap {gap_id} the strategy {planned.strategy!r}")
        subject = clean(planned.subject, 80)
        fields = dict(
            id=gap_id, kind=planned.kind, strategy=planned.strategy, subject=subject,
            description=clean(planned.description, 300) or f"{planned.kind}: {subject or 'unspecified'}",
            time_sensitive=planned.time_sensitive, reasoning=clean(planned.reasoning, 300) or None,
        )
        llm = f"llm:{self.model}"
        if planned.strategy == "search":
            query = clean(planned.query or subject, 200)
            if not query:
                raise _Invalid(f"model gave search gap {gap_id} no query")
            self._guard(f"the query of {gap_id}", query)
            return Gap(**fields, query=query, status="open")
        if planned.strategy == "memory":
            cited = (planned.memory_id or "").strip()
            item = self.by_id.get(cited)
            if item is None:
                reason = f"model cited unknown memory item {cited!r}" if cited else "nothing in the user's memory"
                return Gap(**fields, status="unfilled", reason=reason)
            if looks_like_instruction(item.text):
                return Gap(**fields, status="unfilled", reason="the cited memory item reads as an instruction")
            self.used.setdefault(item.id, item)
            return Gap(**fields, status="filled", value=describe(item), source=f"memory:{item.id}",
                       filled_by="memory")
        value = clean(planned.value, 300)
        self._guard(f"the value of {gap_id}", value)
        if planned.strategy == "reason":
            if not value:
                return Gap(**fields, status="unfilled", reason="model gave no value")
            return Gap(**fields, status="filled", value=value, source=llm, filled_by=llm)
        if planned.strategy == "default":
            if value:
                return Gap(**fields, status="filled", value=value, source="default", filled_by=llm)
            if subject in DEFAULTS:
                return Gap(**fields, status="filled", value=DEFAULTS[subject], source="default", filled_by="default")
            return Gap(**fields, status="unfilled", reason="model gave no default value")
        if self.request.allow_clarification:
            return Gap(**fields, status="open")
        if value:  # no one to ask: the model's best guess, said as such
            return Gap(**fields, status="filled", value=value, source=llm, filled_by=llm,
                       reason="clarification not allowed: the model's best guess")
        return Gap(**fields, status="unfilled", reason="needs the user's answer; clarification not allowed")

    def _checklist(self, output: PlannerOutput, gaps: list[Gap], ids: dict[str, str]) -> list[ChecklistItem]:
        items: list[ChecklistItem] = []
        seen: set[tuple[str, ...]] = set()
        by_id = {g.id: g for g in gaps}
        prompt_words = set(content_words(self.request.prompt))

        def add(text: str, terms: list[str], gap_id: Optional[str]) -> None:
            key = tuple(t.lower() for t in terms)
            if text and terms and key not in seen and len(items) < MAX_CHECKS:
                seen.add(key)
                items.append(ChecklistItem(id=f"c{len(items) + 1}", text=text, terms=terms, gap_id=gap_id))

        for planned in output.checklist:
            text = clean(planned.text, 200)
            terms = [t for t in (clean(t, 40) for t in planned.terms) if t][:3] or content_words(text)[:3]
            self._guard("the checklist", text, *terms)
            gap = by_id.get(ids.get((planned.gap_id or "").strip(), ""))
            if gap is not None and gap.status != "filled":
                # Its value is not known yet (the searcher adds its own item when it fills the gap); an item that
                # only repeats the request's own words is still a requirement.
                if not all(set(content_words(t)) <= prompt_words for t in terms):
                    continue
            add(text, terms, gap.id if gap else None)
        covered = {i.gap_id for i in items}
        for gap in gaps:
            if gap.status == "filled" and gap.value and gap.id not in covered:
                add(f"{gap.subject or gap.kind}: {gap.value}", content_words(gap.value)[:3], gap.id)
        return items

    def _stated(self, output: PlannerOutput) -> list[MemoryItem]:
        prompt_words = set(content_words(self.request.prompt))
        found: dict[str, MemoryItem] = {}
        for stated in output.remember[:MAX_REMEMBER]:
            text, value = clean(stated.text, 300), clean(stated.value, 200)
            subject = clean(stated.subject, 60).lower()
            words = set(content_words(f"{text} {value} {subject}"))
            # Only what the request itself says: never a memory item restated, never a guess about the user.
            if not text or not words or not words <= prompt_words:
                continue
            if stated.kind == "preference" and (subject in ("", "style") and find_styles(value or text)):
                subject = "style"
            item = MemoryItem(id=item_id(text), kind=stated.kind, text=text, subject=subject,
                              value=value or normalize(text), created_at=self.request.created_at)
            found.setdefault(item.id, item)
        return list(found.values())
