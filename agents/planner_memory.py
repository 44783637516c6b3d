"""The planner's memory gaps: what in a request only the user's memory can know, and what memory says about it.

References: "my usual style", "like last time", possessives ("my dog Max", "our logo"; a chain such as "our cafe
with our mascot" is two references), and remembered names on their own ("Theo reading"). Each is resolved by words
first (names, "my dog", the noun, the noun's head word) and, for what words miss, by meaning (`agents/semantic.py`).
What memory cannot fill stays unfilled with the reason: it is never filled with an invented phrase.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Optional

from agents.learning import last_time, repeats_last_time
from agents.memory import STOPWORDS, MemoryView, describe_all
from agents.planner_rules import _ADJECTIVES, _STYLE_REF
from agents.semantic import SemanticMemory
from schemas.records import MemoryItem

_OWNER = re.compile(r"\b(my|our)\s+", re.I)
_WORD = re.compile(r"[A-Za-z][\w'-]*")
_STOP_AT = STOPWORDS | {"is", "are", "at", "with", "in", "on"}


@dataclass
class Reference:
    """One possessive reference: "my dog Max" → owner "my", words ["dog", "Max"], noun "dog", names ["Max"]."""

    owner: str
    words: list[str]
    start: int
    item: Optional[MemoryItem] = None
    similarity: Optional[float] = None

    @property
    def names(self) -> list[str]:
        return [w for w in self.words if w[:1].isupper()]

    @property
    def nouns(self) -> list[str]:
        return [w.lower() for w in self.words if not w[:1].isupper() and w.lower() not in _ADJECTIVES]

    @property
    def noun(self) -> str:
        return " ".join(self.nouns) or (self.words[0].lower() if self.words else "")

    @property
    def candidates(self) -> list[str]:
        """What the reference may name: "pup" or "pup asleep", "company" or "company logo" (the words after the head
        noun can be its modifier or the next clause; both are tried, the best match wins)."""
        nouns = [n for n in self.nouns if not n.endswith(("ing", "ly"))] or self.nouns
        return list(dict.fromkeys(c for c in (nouns[0] if nouns else "", " ".join(nouns[:2])) if c))

    @property
    def phrase(self) -> str:
        return f"{self.owner} {' '.join(self.words)}"


def references(prompt: str) -> list[Reference]:
    """Every "my …" / "our …" of the prompt (outside a style reference), up to three words each, stopping at a
    stopword, so "our cafe with our mascot" gives "our cafe" and "our mascot"."""
    style = _STYLE_REF.search(prompt)
    found = []
    for match in _OWNER.finditer(prompt):
        if style and style.start() <= match.start() < style.end():
            continue
        words = []
        for word in _WORD.findall(prompt[match.end():])[:3]:
            if word.lower() in _STOP_AT:
                break
            words.append(word)
        if words:
            found.append(Reference(owner=match.group(1).lower(), words=words, start=match.start()))
    return found


def reference_names(prompt: str) -> set[str]:
    """Lower-cased names inside possessives ("Max" in "my dog Max"): the user's world, never a web search."""
    return {n.lower() for ref in references(prompt) for n in ref.names}


@dataclass
class MemoryGaps:
    """Builds the memory gaps of one request; `add_gap` and `fill_from` are the planner's."""

    prompt: str
    view: MemoryView
    add_gap: object
    fill_from: object
    referenced: set[str] = field(default_factory=set)

    def style_and_history(self) -> bool:
        """The "my usual style" and "like last time" gaps; True when the prompt refers to a style."""
        prompt, view = self.prompt, self.view
        style_ref = _STYLE_REF.search(prompt)
        style_item = view.style()
        previous = last_time(view, prompt)  # "draw Max like last time": the last accepted result showing Max
        if style_ref:
            phrase = style_ref.group(0).strip()
            fields = dict(kind="memory", strategy="memory", subject="style",
                          description=f"the user's style, referred to as '{phrase}'")
            if previous is not None and previous.style:
                self.add_gap(**fields, **self.fill_from(previous, previous.style))
            elif style_item:
                self.add_gap(**fields, **self.fill_from(style_item, style_item.value))
            else:
                self.add_gap(**fields, status="unfilled", reason="no style preference in the user's memory")
        if previous is not None and repeats_last_time(prompt, {i.subject for i in view.names_in(prompt)}):
            self.add_gap(kind="memory", strategy="memory", subject="last time",
                         description="what the last accepted image showed",
                         **self.fill_from(previous, _STYLE_REF.sub("", previous.text).strip(" ,.") or previous.text))
        return bool(style_ref)

    def resolve_by_words(self, refs: list[Reference]) -> None:
        for ref in refs:
            for word in ref.words:
                facts = self.view.facts_about(f"{ref.owner} {word}") or self.view.facts_about(word)
                if facts:
                    ref.item = facts[0]
                    break

    async def resolve_by_meaning(self, refs: list[Reference], semantic: Optional[SemanticMemory], store: object,
                                 user_id: str) -> None:
        """Fill in what words missed, comparing each reference's noun with each fact's key by meaning."""
        open_refs = [r for r in refs if r.item is None and r.candidates]
        if semantic is None or not open_refs:
            return
        asked = [(ref, text) for ref in open_refs for text in ref.candidates]
        matches = await semantic.match(store, user_id, self.view.items, [text for _, text in asked])
        for (ref, _), found in zip(asked, matches):
            if found is not None and (ref.similarity is None or found.similarity > ref.similarity):
                ref.item, ref.similarity = found.item, found.similarity

    def possessive_gaps(self, refs: list[Reference]) -> None:
        for ref in refs:
            item = ref.item
            subject = item.subject if item else ref.noun
            if not subject or subject in self.referenced:
                continue
            self.referenced.add(subject)
            fields = dict(kind="memory", strategy="memory", subject=subject,
                          description=f"what '{ref.phrase}' is, known only to the user")
            if item:
                extra = {"reasoning": f"matched by meaning: '{ref.noun}' ~ '{item.text}' ({ref.similarity:.2f})"} \
                    if ref.similarity is not None else {}
                about = self.view.about(item.subject) or [item]
                self.add_gap(**fields, **extra, **self.fill_from(item, describe_all(about), *about))
            else:
                self.add_gap(**fields, status="unfilled", reason=f"nothing about '{ref.phrase}' in the user's memory")

    def name_gaps(self) -> None:
        """A remembered name on its own ("Theo reading") resolves to everything remembered about it."""
        for item in self.view.names_in(self.prompt):
            if item.subject in self.referenced:
                continue
            self.referenced.add(item.subject)
            self.add_gap(kind="memory", strategy="memory", subject=item.subject,
                         description=f"who or what '{item.subject}' is, from the user's memory",
                         **self.fill_from(item, describe_all(self.view.about(item.subject)),
                                          *self.view.about(item.subject)))
