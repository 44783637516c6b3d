"""Memory policy: which statements in a user's text are worth remembering, and how remembered items are looked up.

Pure functions over `MemoryItem`s; the store (Redis, or a fake in tests) only keeps them. The small word lists that
the other heuristic stages share (stopwords, art styles and media) live here too, because memory is where a style
first becomes something the system knows about a user.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Iterable, Optional

from schemas.records import MemoryItem, utc_now

STOPWORDS = frozenset(
    """a an the and or but of in on at to for from by with without into onto over under above below near
    is are was were be been being am it its this that these those there here as so than then very
    i me my mine we us our ours you your he him his she her they them their what which who whom
    has have had do does did will would can could should may might must not no yes
    some any all each every more most other such only own same also just about after before during
    while where when how why up down out off again further once s t""".split()
)

# Longest first, so "oil painting" is found before "painting" and "pixel art" before "art".
STYLE_TERMS: tuple[str, ...] = tuple(
    sorted(
        """watercolor|watercolour|oil painting|acrylic painting|gouache|charcoal|pencil sketch|pencil drawing|
        ink drawing|ink wash|line art|pastel|crayon|pixel art|anime|manga|cartoon|comic book|photorealistic|
        photorealism|hyperrealistic|3d render|cgi|low poly|isometric|vector art|flat illustration|
        digital painting|digital art|concept art|impressionist|impressionism|expressionist|cubist|cubism|
        surrealist|surrealism|art nouveau|art deco|ukiyo-e|woodblock print|linocut|etching|engraving|
        lithograph|screen print|risograph|stained glass|mosaic|claymation|papercut|paper cut|origami|
        studio ghibli|ghibli|cyberpunk|steampunk|vaporwave|synthwave|minimalist|baroque|renaissance|
        pop art|graffiti|street art|sumi-e|chalk drawing|sketch|sketches|painting|illustration|
        photograph|photo|polaroid|film photography|black and white photo|noir|vintage poster""".replace(
            "\n", ""
        ).split("|"),
        key=len,
        reverse=True,
    )
)
_STYLE_RE = re.compile(r"\b(?:" + "|".join(re.escape(t.strip()) for t in STYLE_TERMS if t.strip()) + r")\b", re.I)

_WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9'-]*")


def words(text: str) -> list[str]:
    """Lower-cased words; a trailing possessive "'s" is dropped so "year's" matches "year"."""
    return [re.sub(r"'s$", "", w.lower()).strip("'-") for w in _WORD.findall(text)]


def content_words(text: str) -> list[str]:
    """Words that carry meaning (no stopwords, no single letters), in order, without repeats."""
    seen: dict[str, None] = {}
    for w in words(text):
        if len(w) > 1 and w not in STOPWORDS:
            seen.setdefault(w, None)
    return list(seen)


def find_styles(text: str) -> list[str]:
    """Art styles and media named in the text, lower-cased, in order of appearance."""
    found: dict[str, None] = {}
    for match in _STYLE_RE.finditer(text):
        found.setdefault(match.group(0).lower(), None)
    return list(found)


def contains_phrase(text: str, phrase: str) -> bool:
    """Whole-word, case-insensitive containment; whitespace inside the phrase matches any whitespace."""
    if not phrase.strip():
        return False
    pattern = r"(?<![\w])" + r"\s+".join(re.escape(p) for p in phrase.split()) + r"(?![\w])"
    return re.search(pattern, text, re.I) is not None


def normalize(text: str) -> str:
    return re.sub(r"\s+", " ", text.strip().lower()).rstrip(".!?;, ")


def item_id(text: str) -> str:
    """Deterministic id, so adding the same statement twice is a no-op in the store."""
    return "m-" + hashlib.sha256(normalize(text).encode("utf-8")).hexdigest()[:16]


# "my cat Pixel is a grey sphynx", "our logo is a blue fox", "my dog's name is Max" is left to the fallback note.
_FACT = re.compile(
    r"\b(?P<owner>my|our)\s+(?P<head>[A-Za-z][\w' -]{0,60}?)\s+(?:is|are|was)\s+(?P<value>[^.,;!?\n]+)", re.I
)
# "I like watercolor", "I now prefer gouache", "we love pixel art"
_PREFERENCE = re.compile(
    r"\b(?:i|we)\s+(?:(?:now|really|also|still|usually|mostly|generally|much|do)\s+)*"
    r"(?:like|love|prefer|enjoy|adore|favou?r)\s+(?P<value>[^.,;!?\n]+)",
    re.I,
)
_STYLE_HEADS = re.compile(r"^(?:usual|favou?rite|preferred|default|normal|own|signature|go-to)?\s*(?:art\s+)?style$")
_LEADING_ARTICLE = re.compile(r"^(?:a|an|the|some)\s+", re.I)
_SENTENCE = re.compile(r"[.;!?\n]+")


@dataclass(frozen=True)
class Statement:
    """A parsed statement: what `MemoryItem.subject` cannot hold on its own (the owner word and the noun)."""

    owner: str  # "my" / "our" / ""
    noun: str  # "cat", "logo", "" for a bare name
    name: str  # "Pixel", "" when the thing has no proper name


def _clean_value(value: str) -> str:
    value = re.sub(r"\s+", " ", value).strip(" ,:-\"'")
    return _LEADING_ARTICLE.sub("", value)


def _parse_head(head: str) -> Statement | None:
    parts = head.split()
    if not parts or len(parts) > 5:
        return None
    name = [p for p in parts if p[:1].isupper()]
    noun = [p for p in parts if not p[:1].isupper()]
    return Statement(owner="", noun=" ".join(noun).lower(), name=" ".join(name))


def _preference(sentence: str, value: str, now: str) -> MemoryItem:
    value = _clean_value(value)
    subject = "style" if find_styles(value) else "general"
    return MemoryItem(id=item_id(sentence), kind="preference", text=sentence, subject=subject, value=value,
                      created_at=now)


def statements_in(text: str, now: Optional[str] = None) -> list[MemoryItem]:
    """Statements a user made about their own world: facts ("my dog Max is a corgi") and preferences ("I like X")."""
    if not isinstance(text, str):
        raise ValueError(f"text must be a string, got {type(text).__name__}")
    now = now or utc_now()
    items: dict[str, MemoryItem] = {}
    for raw in _SENTENCE.split(text):
        sentence = re.sub(r"\s+", " ", raw).strip(" ,")
        if not sentence:
            continue
        fact = _FACT.search(sentence)
        if fact:
            # The clause, not the whole sentence: "draw him, my dog Max is a corgi" remembers only the statement.
            sentence = fact.group(0).strip()
            head = fact.group("head").strip()
            value = _clean_value(fact.group("value"))
            if _STYLE_HEADS.match(head.lower()):
                item = _preference(sentence, value, now)
                item = item.model_copy(update={"subject": "style"})
                items.setdefault(item.id, item)
                continue
            parsed = _parse_head(head)
            if parsed and value:
                subject = (parsed.name or parsed.noun).lower()
                items.setdefault(
                    item_id(sentence),
                    MemoryItem(id=item_id(sentence), kind="fact", text=sentence, subject=subject, value=value,
                               created_at=now),
                )
                continue
        preference = _PREFERENCE.search(sentence)
        if preference and _clean_value(preference.group("value")):
            item = _preference(preference.group(0).strip(), preference.group("value"), now)
            items.setdefault(item.id, item)
    return list(items.values())


def items_from_user_text(text: str, now: Optional[str] = None) -> list[MemoryItem]:
    """What `memory add` stores: the recognised statements, or the whole text as a plain note so nothing is lost."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError("memory text is empty")
    found = statements_in(text, now)
    if found:
        return found
    note = re.sub(r"\s+", " ", text).strip()
    return [MemoryItem(id=item_id(note), kind="fact", text=note, subject="", value=note, created_at=now or utc_now())]


def parse_fact(item: MemoryItem) -> Statement:
    """Owner, noun and proper name of a fact, re-read from its text (the schema keeps only the subject)."""
    match = _FACT.search(item.text)
    if match:
        parsed = _parse_head(match.group("head").strip())
        if parsed:
            return Statement(owner=match.group("owner").lower(), noun=parsed.noun, name=parsed.name)
    return Statement(owner="", noun="", name="")


def aliases(item: MemoryItem) -> list[str]:
    """Ways a prompt can refer to a fact's subject: its name, "my cat", "our logo", and the bare noun."""
    parsed = parse_fact(item)
    found = [item.subject] if item.subject else []
    if parsed.noun:
        found += [f"{parsed.owner} {parsed.noun}".strip(), parsed.noun]
    return list(dict.fromkeys(a.lower() for a in found if a))


def describe(item: MemoryItem) -> str:
    """A diffusion-friendly phrase for a remembered fact: "Pixel, a grey sphynx cat", "a blue fox logo"."""
    if item.kind == "preference" or not item.subject:
        return item.value or item.text
    parsed = parse_fact(item)
    value = item.value
    noun_words = parsed.noun.split()
    noun = noun_words[-1] if noun_words else ""
    if noun and not contains_phrase(value, noun):
        value = f"{value} {noun}"
    article = "an" if value[:1].lower() in "aeiou" else "a"
    if parsed.name:
        return f"{parsed.name}, {article} {value}"
    return f"{article} {value}"


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

