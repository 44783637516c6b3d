"""Memory policy: which statements in a user's text are worth remembering, and how remembered items are looked up.

Pure functions over `MemoryItem`s; the store (Redis, or a fake in tests) only keeps them. Statement parsing lives in
`agents/statements.py` and the shared word helpers in `agents/text.py`; both are re-exported here, where the other
stages have always imported them from.
"""

from __future__ import annotations

import re
from typing import Iterable, Optional

from agents.statements import Statement, items_from_user_text, parse_fact, statements_in  # noqa: F401 - re-exported
from agents.text import (  # noqa: F401 - re-exported: the word helpers other stages import from here
    STOPWORDS,
    STYLE_TERMS,
    contains_phrase,
    content_words,
    find_styles,
    item_id,
    normalize,
    words,
)
from schemas.records import MemoryItem

def aliases(item: MemoryItem) -> list[str]:
    """Ways a prompt can refer to a fact's subject: its name, "my cat", "our logo", the bare noun, and the noun's
    head word ("our mascot" for "our team mascot")."""
    parsed = parse_fact(item)
    found = [item.subject] if item.subject else []
    if parsed.noun:
        head = parsed.noun.split()[-1]
        found += [f"{parsed.owner} {parsed.noun}".strip(), parsed.noun, f"{parsed.owner} {head}".strip(), head]
    return list(dict.fromkeys(a.lower() for a in found if a))


_PEOPLE = frozenset("""son daughter sister brother mother father mom mum dad wife husband partner friend grandma
    grandpa grandmother grandfather aunt uncle niece nephew cousin boy girl baby kid child boss colleague""".split())


def _article(text: str) -> str:
    return "an" if text[:1].lower() in "aeiou" else "a"


def describe(item: MemoryItem) -> str:
    """A diffusion-friendly phrase for a remembered fact: "Pixel, a grey sphynx cat", "a blue fox logo"."""
    return describe_all([item])


def describe_all(items: list[MemoryItem]) -> str:
    """One phrase for everything remembered about one subject, newest statement of each kind first:
    "Pixel, a grey sphynx cat", "Theo, a son with curly black hair", "Mira, a daughter who loves astronauts"."""
    if not items:
        return ""
    first = items[0]
    if first.kind == "preference" or not first.subject:
        return first.value or first.text
    name, noun, identity, having, doing = "", "", "", [], []
    for item in items:
        parsed = parse_fact(item)
        name = name or parsed.name
        noun = noun or parsed.noun
        value = re.sub(r"^(?:my|our)\s+", "", item.value.strip(), flags=re.I)
        if parsed.relation in ("identity", "name"):
            noun = noun or value
        elif parsed.relation == "is":
            identity = identity or value
        elif parsed.relation == "has":
            having.append(value)
        elif value:
            doing.append(f"{parsed.relation} {value}")
    head = noun.split()[-1] if noun else ""
    kind = identity
    if head and not contains_phrase(kind, head):
        kind = f"{kind} {head}".strip()  # "grey sphynx" + "cat"; "orange owl" + "mascot"
    phrase = f"{_article(kind)} {kind}" if kind else ""
    if having:
        phrase = f"{phrase} with {' and '.join(dict.fromkeys(having))}".strip()
    if doing:
        who = "who" if name or head in _PEOPLE else "that"
        phrase = f"{phrase} {who} {' and '.join(dict.fromkeys(doing))}".strip()
    if name:
        return f"{name}, {phrase}" if phrase else name
    return phrase or first.value or first.text


def is_learned(item: MemoryItem) -> bool:
    """Inferred from accepted results rather than stated by the user; a statement always wins over it."""
    return item.source.startswith("learned:")


class MemoryView:
    """One user's memory, oldest first, with the lookups the planner needs. Later items win over earlier ones."""

    def __init__(self, items: Iterable[MemoryItem]) -> None:
        self.items: list[MemoryItem] = []
        seen: set[str] = set()
        for item in items:
            if not isinstance(item, MemoryItem):
                raise ValueError(f"memory items must be MemoryItem, got {type(item).__name__}")
            if item.id not in seen:
                seen.add(item.id)
                self.items.append(item)

    def __len__(self) -> int:
        return len(self.items)

    def style(self) -> Optional[MemoryItem]:
        """The newest stated style preference ("I now prefer gouache" after "I like charcoal" gives gouache); a style
        only learned from requests (source "learned:…") counts when the user never stated one."""
        learned = None
        for item in reversed(self.items):
            if item.kind == "preference" and item.subject == "style":
                if not is_learned(item):
                    return item
                learned = learned or item
        return learned

    def history(self) -> list[MemoryItem]:
        """Accepted results, newest first."""
        return [i for i in reversed(self.items) if i.kind == "history"]

    def relevant(self, prompt: str) -> list[MemoryItem]:
        """Only the items this prompt can use, oldest first: facts it names (by name, "my dog", or noun), the
        current style and the other preferences, and the history that involves what it names."""
        mentioned = set(content_words(prompt))
        wanted: dict[str, MemoryItem] = {}
        for item in self.items:
            if item.kind == "fact" and any(contains_phrase(prompt, alias) for alias in aliases(item)):
                wanted[item.id] = item
        names = {i.subject for i in wanted.values()} | mentioned
        for item in self.history():
            if names & set(item.entities):
                wanted[item.id] = item
                break
        style = self.style()
        if style is not None:
            wanted[style.id] = style
        for item in self.preferences():
            if item.subject != "style":
                wanted.setdefault(item.id, item)
        return [i for i in self.items if i.id in wanted]

    def preferences(self, subject: Optional[str] = None) -> list[MemoryItem]:
        """Preferences, newest first, optionally of one subject."""
        return [i for i in reversed(self.items) if i.kind == "preference" and subject in (None, i.subject)]

    def facts_about(self, word: str) -> list[MemoryItem]:
        """Facts whose subject or alias is `word` (a name, "dog", "my dog"), newest first."""
        key = normalize(word)
        if not key:
            return []
        return [i for i in reversed(self.items) if i.kind == "fact" and key in aliases(i)]

    def about(self, subject: str) -> list[MemoryItem]:
        """Every fact about one subject, newest first: what `describe_all` turns into one phrase."""
        return [i for i in reversed(self.items) if i.kind == "fact" and i.subject == subject]

    def named(self) -> dict[str, list[MemoryItem]]:
        """Facts that have a proper name, by lower-cased name, newest first: what a bare "Pixel" refers to."""
        found: dict[str, list[MemoryItem]] = {}
        for item in reversed(self.items):
            if item.kind == "fact" and parse_fact(item).name:
                found.setdefault(item.subject, []).append(item)
        return found

    def names_in(self, prompt: str) -> list[MemoryItem]:
        """The newest fact for each remembered name that the prompt mentions, in prompt order."""
        hits = []
        for name, facts in self.named().items():
            match = re.search(r"(?<![\w])" + re.escape(name) + r"(?![\w])", prompt, re.I)
            if match:
                hits.append((match.start(), facts[0]))
        return [item for _, item in sorted(hits, key=lambda h: h[0])]

