"""The enrich stage on a language model: the diffusion prompt and negative prompt, every used fact citing its gap.

One call per round. The model sees the request, the filled gaps with their sources (search facts and memory as data
blocks), what is still unknown, the checklist and, on a revision round, the critique. Its answer is then held to
what the sources say: each `used` phrase must cite a filled gap it was given, be in the prompt and share words with
that gap's evidence; names and numbers the prompt adds must come from some source; and no instruction-like text
from the data may reach the prompt. Params, seeds, rounds and best-so-far come from the heuristic `Enricher`, so
they are the same on both paths. A failed call or check falls back to the heuristic prompt (or, with
`on_error="dead-letter"`, fails the message), and the record says why.
"""

from __future__ import annotations

import re
from typing import Union

from agents.enricher import DEFAULT_NEGATIVE, QUALITY_BOOST, Enricher, RoundPlan
from agents.planner import DEFAULTS
from agents.text import STYLE_TERMS
from agents.visual import VISUAL
from agents.llm_outputs import EnricherOutput, enricher_output_for
from agents.llm_stage import ModelCall, Rejected, check_llm, check_on_error, partial, with_trace
from agents.memory import contains_phrase, content_words
from agents.ports import LLMError
from agents.prompt_templates import (
    clean,
    data_block,
    data_section,
    injected_sentences,
    leaked_words,
    load_template,
    looks_like_instruction,
)
from schemas.records import (
    MAX_PROMPT_CHARS,
    CritiqueRecord,
    EnrichedPromptRecord,
    PromptAddition,
    SearchResultsRecord,
)

MAX_NEGATIVE_CHARS = 1000
_PHRASE_START = re.compile(r"(?:^|[,;:.()!?]\s*)$")
_TOKEN = re.compile(r"[A-Za-z0-9][\w'’-]*")
# Numbers a diffusion prompt uses as style words ("8k", "35mm"), not as facts.
_STYLE_NUMBER = re.compile(r"^\d+(?:k|mm|px|fps|x|d)$", re.I)


def _evidence(record: SearchResultsRecord) -> dict[str, list[tuple[str, str, str]]]:
    """Per filled gap: (block id, text, source) of everything it rests on: its value, its facts, its memory item."""
    memory = {f"memory:{m.id}": m for m in record.memory_used}
    found: dict[str, list[tuple[str, str, str]]] = {}
    for gap in record.gaps:
        if not (gap.status == "filled" and gap.value and gap.source):
            continue
        rows = [(gap.id, gap.value, gap.source)]
        rows += [(f.id, f.text, f.source) for f in record.facts if f.gap_id == gap.id and f.text != gap.value]
        if gap.source in memory:
            rows.append((f"{gap.id}-memory", memory[gap.source].text, gap.source))
        found[gap.id] = rows
    return found


def unsourced(prompt: str, sources: str) -> list[str]:
    """Names and numbers in the prompt that no source text has: the facts a model is most likely to invent."""
    known = {w.lower() for w in _TOKEN.findall(sources)}
    found = []
    for match in _TOKEN.finditer(prompt):
        word = match.group(0)
        if len(word) < 2:
            continue
        named = word[:1].isupper() and not _PHRASE_START.search(prompt[: match.start()])
        numeric = any(c.isdigit() for c in word) and not _STYLE_NUMBER.match(word)
        if (named or numeric) and word.lower() not in known and word.lower().rstrip("'’s") not in known:
            found.append(word)
    return list(dict.fromkeys(found))


class LLMEnricher:
    """`EnrichedPromptRecord` from search results (round 0) or a `revise` critique, with one model call a round."""

    def __init__(self, llm, fallback: Enricher, *, on_error: str = "fallback") -> None:
        self.llm = check_llm(llm)
        if not isinstance(fallback, Enricher):
            raise ValueError(f"fallback must be an Enricher, got {type(fallback).__name__}")
        self.fallback = fallback
        self.on_error = check_on_error(on_error)
        self.template = load_template("enricher")

    async def __call__(self, record: Union[SearchResultsRecord, CritiqueRecord]) -> EnrichedPromptRecord:
        plan = self.fallback.prepare(record)  # a record that cannot be enriched is an error, not a fallback
        call = ModelCall(self.llm, self.template, stage="enricher", round=plan.round)
        try:
            # The schema the server decodes against lets `used` cite only the gaps that were filled.
            output = await call.run(self.user_message(plan), enricher_output_for(list(_evidence(plan.record))))
            prompt, negative, additions, notes = self.check(output, plan)
        except (LLMError, Rejected) as exc:
            note, trace = call.failed(exc, self.on_error)
            return with_trace(self.fallback.enrich(record), trace, [note])
        notes = [*(call.reply.dropped if call.reply else ()), *notes]
        kept = [partial("enricher", "; ".join(notes))] if notes else []
        return with_trace(self.fallback.build(plan, prompt, additions, negative), call.trace(), kept)

    def user_message(self, plan: RoundPlan) -> str:
        record, request = plan.record, plan.record.request
        evidence = _evidence(record)
        gaps = {g.id: g for g in record.gaps}
        filled = [data_block(gid, rows[0][1], kind=gaps[gid].kind, subject=gaps[gid].subject, source=rows[0][2])
                  for gid, rows in evidence.items()]
        more = [data_block(bid, text, gap=gid, source=source)
                for gid, rows in evidence.items() for bid, text, source in rows[1:]]
        unknown = [f"- {g.id} ({g.kind}): {clean(g.subject or g.description, 80)}: {clean(g.reason, 120) or 'unknown'}"
                   for g in record.gaps if g.id not in evidence]
        checklist = [data_block(c.id, c.text, gap=c.gap_id) for c in record.checklist]
        if plan.round == 0:
            head = "Round 0: write the first prompt for this request."
        else:
            head = f"Round {plan.round}: revise the prompt; the critic judged the images of the last one."
        sections = [
            head,
            data_section("The request (data):", [data_block("request", request.prompt, limit=MAX_PROMPT_CHARS)]),
        ]
        if request.negative_prompt.strip():
            sections.append(data_section("The user's negative prompt (data):",
                                         [data_block("negative", request.negative_prompt)]))
        sections += [
            data_section('Filled gaps (data; cite these ids in "used"):', filled),
            data_section("More evidence for those gaps (data; cite the gap id):", more) if more else "",
            "Unknown, do not invent:\n" + "\n".join(unknown) if unknown else "",
            data_section("The image must show (checklist, data):", checklist),
        ]
        if plan.critique is not None:
            critique = plan.critique
            failed = {c.item_id: c.reason for c in critique.checks if not c.passed}
            missing = [data_block(item.id, item.text, reason=failed.get(item.id)) for item in plan.failed]
            suggestions = [data_block(f"s{i + 1}", s, limit=300) for i, s in enumerate(critique.suggestions[:5])]
            problems = sorted({p for d in critique.drafts for p in d.problems})
            sections += [
                data_section("The last prompt (data):", [data_block("last-prompt", critique.prompt or "")]),
                f"The critic's score: {critique.score:.2f} (judge: {clean(critique.judge, 60)}).",
                data_section("Missing in the last images (data):", missing),
                data_section("The critic's suggestions (data):", suggestions) if suggestions else "",
                data_section("Image problems (data):", [data_block(f"p{i + 1}", p) for i, p in enumerate(problems)])
                if problems else "",
            ]
        sections.append('Answer with one JSON object: {"prompt": "...", "negative_prompt": "...", '
                        '"used": [{"text": "...", "gap_id": "g1"}]}.')
        return "\n\n".join(s for s in sections if s)

    def check(self, output: EnricherOutput, plan: RoundPlan) -> tuple[str, str, list[PromptAddition], list[str]]:
        """(prompt, negative prompt, additions, notes) from the model's answer, or `Rejected` with the reason.

        A citation that is wrong but whose phrase another filled gap does say is re-cited to that gap; one whose
        phrase is not in the prompt is dropped; `notes` says which. A phrase in the prompt that no filled gap says,
        an invented name or number, or copied injected text still rejects the whole answer."""
        record, request = plan.record, plan.record.request
        if len(output.prompt) > MAX_PROMPT_CHARS:
            raise Rejected(f"model wrote a prompt of {len(output.prompt)} characters (limit {MAX_PROMPT_CHARS})")
        prompt = clean(output.prompt, MAX_PROMPT_CHARS).strip(" ,")
        if not prompt:
            raise Rejected("model wrote an empty prompt")
        negative_terms = [t for t in (clean(t, 80) for t in output.negative_prompt.split(",")) if t]
        negative = ", ".join(negative_terms)[:MAX_NEGATIVE_CHARS]
        evidence = _evidence(record)
        untrusted = [text for rows in evidence.values() for _, text, _ in rows]
        untrusted += [f.text for f in record.facts] + [m.text for m in record.memory_used]
        if plan.critique is not None:
            untrusted += [*plan.critique.suggestions, *plan.critique.feedback]
        for where, text in (("prompt", prompt), ("negative prompt", negative)):
            if looks_like_instruction(text):
                raise Rejected(f"model copied an instruction from the data into the {where}")
            leaked = leaked_words(text, injected_sentences(untrusted), trusted=request.prompt)
            if leaked:
                raise Rejected(f"model copied injected text into the {where} ({', '.join(leaked[:3])})")

        notes: list[str] = []
        # A prompt that leaves out what the user asked for is no enrichment of it; the tiny model measured did that
        # on most requests. Its additions are kept, after the user's own words, and what it added is checked below.
        user_words = re.sub(r"\s+", " ", record.base_prompt or request.prompt).strip().rstrip(".,;: ")
        asked = set(content_words(user_words))
        gaps = {g.id: g for g in record.gaps}
        support = {gid: set(content_words(" ".join(t for _, t, _ in rows))) for gid, rows in evidence.items()}
        found = set().union(*(support[g] for g in evidence if gaps[g].source != "default"), set()) - asked
        # A rewrite that resolves the request with what the gaps found ("the plant given on Mother's Day" → "pink
        # carnations") may drop its words; one that drops them and uses nothing found gets them back in front.
        if asked and len(asked & set(content_words(prompt))) * 2 < len(asked) \
                and not set(content_words(prompt)) & found:
            prompt = f"{user_words}, {prompt}"
            if len(prompt) > MAX_PROMPT_CHARS:
                raise Rejected("model wrote a prompt that leaves out the request, and too long to put it back")
            notes.append("put the request's own words back in front of the model's prompt")
        additions: list[PromptAddition] = []
        seen: set[tuple[str, str]] = set()
        for used in output.used:
            gap_id = (used.gap_id or "").strip()
            text = clean(used.text, 300).strip(" ,")
            if not text:
                continue
            words = set(content_words(text))
            if not (contains_phrase(prompt, text) or (words and words <= set(content_words(prompt)))):
                notes.append(f"dropped the claim {text[:40]!r} ({clean(gap_id, 20)}): not in the prompt")
                continue
            if gap_id not in evidence or (words and not words & support[gap_id]):
                state = ("unknown gap" if gap_id not in gaps else f"{gaps[gap_id].status} gap") \
                    if gap_id not in evidence else "a gap that does not say it"
                better = max(evidence, key=lambda g: len(words & support[g]), default=None)
                if better is None or not words & support[better]:
                    raise Rejected(f"model cited {state} {clean(gap_id, 40)!r} for {text[:60]!r}, which no "
                                   f"filled gap says")
                notes.append(f"re-cited {text[:40]!r} from {clean(gap_id, 20)} ({state}) to {better}")
                gap_id = better
            if (text.lower(), gap_id) in seen:
                continue
            seen.add((text.lower(), gap_id))
            additions.append(PromptAddition(text=text, gap_id=gap_id, source=gaps[gap_id].source or ""))

        sources = " ".join([
            request.prompt, request.negative_prompt, *untrusted, *(g.subject for g in record.gaps),
            *(c.text for c in record.checklist), *(" ".join(c.terms) for c in record.checklist),
        ])
        invented = unsourced(prompt, sources)
        if invented:
            raise Rejected(f"model added {', '.join(repr(w) for w in invented[:3])}, which no source gave")
        # Mostly words that neither a source, the defaults nor the usual style vocabulary has: not an enrichment but
        # something else (the tiny model measured wrote "Use only fact-specific details … in the data block").
        vocabulary = set(content_words(" ".join([sources, *DEFAULTS.values(), " ".join(STYLE_TERMS), QUALITY_BOOST,
                                                 *DEFAULT_NEGATIVE]))) | VISUAL
        added = set(content_words(prompt)) - asked
        unsupported = added - vocabulary
        if unsupported and len(unsupported) > len(added) - len(unsupported):
            raise Rejected(f"model wrote mostly words no source gave ({', '.join(sorted(unsupported)[:3])})")
        # What the gaps found (searched facts, remembered things) is the point of enriching: a prompt that uses none
        # of it is no better than the request (measured: the tiny model often wrote back just the request).
        if found and not (added & found):
            raise Rejected("model wrote a prompt that uses nothing the filled gaps found")
        return prompt, self.fallback.negative(record, extra=negative_terms), additions, notes

