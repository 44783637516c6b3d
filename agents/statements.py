"""Statements people make about their own world, in the forms they write them, as `MemoryItem`s.

Recognised (a statement is one clause; a sentence may hold several):

- "my cat Pixel is a grey sphynx", "our logo is a blue fox", "our team mascot is an orange owl" (owner + head + is);
- "my son Theo has freckles", "my daughter Mira loves astronauts" (owner + head + has / loves / wears …);
- "my sister's name is Ana" (a name given to a relation);
- "Theo is my son", "Max is a corgi", "Theo has curly black hair" (a bare name first: only in text the user gives as
  memory, since in a request "Pixel is sleeping" describes the picture, not the cat);
- "I like watercolor", "I now prefer gouache", "I always want square images", "I'm vegetarian".

The schema keeps only `subject` and `value`; the rest (owner, noun, name, relation) is re-read from the item's text
by `parse_fact`, so stored items need no new fields.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

from agents.text import find_styles, item_id, normalize
from schemas.records import MemoryItem, utc_now

RELATIONS = ("has", "have", "loves", "love", "likes", "like", "wears", "wear", "owns", "own", "plays", "drives",
             "rides", "collects", "carries", "enjoys")
_REL = "|".join(RELATIONS)
# "my cat Pixel is a grey sphynx", "my son Theo has freckles"
_FACT = re.compile(
    r"\b(?P<owner>my|our)\s+(?P<head>[A-Za-z][\w' -]{0,60}?)\s+(?P<verb>is|are|was|" + _REL + r")\s+"
    r"(?P<value>[^.,;!?\n]+)", re.I)
# "my sister's name is Ana"
_NAMED = re.compile(r"\b(?P<owner>my|our)\s+(?P<noun>[a-z][\w -]{0,40}?)'s\s+name\s+is\s+(?P<name>[A-Z][\w'-]*"
                    r"(?:\s+[A-Z][\w'-]*)?)")
# "Theo is my son", "Max is a corgi", "Theo has curly black hair": a capitalised name opening the clause.
_BARE = re.compile(r"^(?P<name>(?!I\b|We\b|It\b|This\b|That\b|The\b|A\b|An\b|My\b|Our\b|He\b|She\b|They\b)"
                   r"[A-Z][\w'-]*(?:\s+[A-Z][\w'-]*)?)\s+(?P<verb>is|was|" + _REL + r")\s+(?P<value>[^.,;!?\n]+)")
# "I like watercolor", "I now prefer gouache", "we love pixel art", "I always want square images"
_PREFERENCE = re.compile(
    r"\b(?:i|we)\s+(?:(?:now|really|also|still|usually|mostly|generally|much|do|always|only)\s+)*"
    r"(?:like|love|prefer|enjoy|adore|favou?r|want|need)\s+(?P<value>[^.,;!?\n]+)",
    re.I,
)
# "I'm vegetarian", "I am left-handed", "we are vegan"
_SELF = re.compile(r"\b(?:i'm|i’m|i\s+am|we're|we\s+are)\s+(?:a\s+|an\s+)?(?P<value>[a-z][\w -]{1,40})", re.I)
_STYLE_HEADS = re.compile(r"^(?:usual|favou?rite|preferred|default|normal|own|signature|go-to)?\s*(?:art\s+)?style$")
_FORMAT_WORDS = re.compile(r"\b(?:square|portrait|landscape|wide|widescreen|vertical|horizontal|panoramic)\s+"
                           r"(?:images?|pictures?|formats?|aspect|ratio|orientation|crops?|shots?|photos?)\b"
                           r"|\b\d{1,2}:\d{1,2}\b", re.I)
_DIETS = re.compile(r"^(?:vegetarian|vegan|pescatarian|halal|kosher|gluten[- ]free|lactose[- ]intolerant)$", re.I)
_LEADING_ARTICLE = re.compile(r"^(?:a|an|the|some)\s+", re.I)
_SENTENCE = re.compile(r"[.;!?\n]+")
# Where a sentence starts its next statement: ", my cat Pixel is grey", " and I like watercolor".
_NEXT_STATEMENT = re.compile(r"(?:,\s*(?:and\s+)?|\s+and\s+)(?=(?:my|our|i|i'm|i am)\b)", re.I)


@dataclass(frozen=True)
class Statement:
    """A parsed fact: what `MemoryItem.subject` cannot hold on its own."""

    owner: str  # "my" / "our" / ""
    noun: str  # "cat", "team mascot", "" for a bare name
    name: str  # "Pixel", "" when the thing has no proper name
    relation: str = "is"  # "is" (what it is), or the verb: "has", "loves", …


def _clean_value(value: str) -> str:
    value = re.sub(r"\s+", " ", value).strip(" ,:-\"'")
    return _LEADING_ARTICLE.sub("", value)


def _relation(verb: str) -> str:
    verb = verb.lower()
    if verb in ("is", "are", "was"):
        return "is"
    return {"have": "has", "love": "loves", "like": "likes", "wear": "wears", "own": "owns"}.get(verb, verb)


def _parse_head(head: str) -> Optional[tuple[str, str]]:
    """(noun, name) of "cat Pixel" / "team mascot" / "son Theo"; None for something too long to be a head."""
    parts = head.split()
    if not parts or len(parts) > 5:
        return None
    name = [p for p in parts if p[:1].isupper()]
    noun = [p for p in parts if not p[:1].isupper()]
    return " ".join(noun).lower(), " ".join(name)


def _preference(sentence: str, value: str, now: str) -> MemoryItem:
    value = _clean_value(value)
    if find_styles(value):
        subject = "style"
    elif _FORMAT_WORDS.search(value):
        subject = "format"  # "I always want square images": a composition preference, not a style
    else:
        subject = "general"
    return MemoryItem(id=item_id(sentence), kind="preference", text=sentence, subject=subject, value=value,
                      created_at=now)


def _fact(sentence: str, subject: str, value: str, now: str) -> MemoryItem:
    return MemoryItem(id=item_id(sentence), kind="fact", text=sentence, subject=subject.lower(), value=value,
                      created_at=now)


def _clause_items(sentence: str, now: str, bare_names: bool) -> list[MemoryItem]:
    named = _NAMED.search(sentence)
    if named:
        text = named.group(0).strip()
        return [_fact(text, named.group("name"), named.group("noun").lower(), now)]
    fact = _FACT.search(sentence)
    if fact:
        # The clause, not the whole sentence: "draw him, my dog Max is a corgi" remembers only the statement.
        text = fact.group(0).strip()
        head, value = fact.group("head").strip(), _clean_value(fact.group("value"))
        if _STYLE_HEADS.match(head.lower()) and _relation(fact.group("verb")) == "is":
            return [_preference(text, value, now).model_copy(update={"subject": "style"})]
        parsed = _parse_head(head)
        if parsed and value:
            noun, name = parsed
            return [_fact(text, name or noun, value, now)]
    bare = _BARE.match(sentence) if bare_names else None
    if bare:
        value = _clean_value(bare.group("value"))
        if value:
            return [_fact(bare.group(0).strip(), bare.group("name"), value, now)]
    preference = _PREFERENCE.search(sentence)
    if preference and _clean_value(preference.group("value")):
        return [_preference(preference.group(0).strip(), preference.group("value"), now)]
    itself = _SELF.search(sentence)
    if itself:
        value = _clean_value(itself.group("value"))
        if _DIETS.match(value):
            return [MemoryItem(id=item_id(itself.group(0)), kind="preference", text=itself.group(0).strip(),
                               subject="diet", value=value.lower(), created_at=now)]
        return [_fact(itself.group(0).strip(), "me", value, now)]
    return []


def statements_in(text: str, now: Optional[str] = None, *, bare_names: bool = False) -> list[MemoryItem]:
    """Statements a user made about their own world: facts and preferences. `bare_names` also reads "Max is a
    corgi"; it is on for text given as memory and off for requests, where it would read a scene as a fact."""
    if not isinstance(text, str):
        raise ValueError(f"text must be a string, got {type(text).__name__}")
    now = now or utc_now()
    items: dict[str, MemoryItem] = {}
    for raw in _SENTENCE.split(text):
        for clause in _NEXT_STATEMENT.split(re.sub(r"\s+", " ", raw)):
            clause = clause.strip(" ,")
            for item in _clause_items(clause, now, bare_names) if clause else []:
                items.setdefault(item.id, item)
    return list(items.values())


def items_from_user_text(text: str, now: Optional[str] = None) -> list[MemoryItem]:
    """What `memory add` stores: the recognised statements, or the whole text as a plain note so nothing is lost."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError("memory text is empty")
    found = statements_in(text, now, bare_names=True)
    if found:
        return found
    note = re.sub(r"\s+", " ", text).strip()
    return [MemoryItem(id=item_id(note), kind="fact", text=note, subject="", value=note, created_at=now or utc_now())]


def parse_fact(item: MemoryItem) -> Statement:
    """Owner, noun, proper name and relation of a fact, re-read from its text (the schema keeps only the subject)."""
    text = item.text
    named = _NAMED.search(text)
    if named:
        return Statement(owner=named.group("owner").lower(), noun=named.group("noun").lower(),
                         name=named.group("name"), relation="name")
    match = _FACT.search(text)
    if match:
        parsed = _parse_head(match.group("head").strip())
        if parsed:
            return Statement(owner=match.group("owner").lower(), noun=parsed[0], name=parsed[1],
                             relation=_relation(match.group("verb")))
    bare = _BARE.match(text.strip())
    if bare:
        relation = _relation(bare.group("verb"))
        noun = ""
        owned = re.match(r"^(my|our)\s+([a-z][\w -]*)$", bare.group("value").strip(), re.I)
        if relation == "is" and owned:  # "Theo is my son": the value is the relation to the user
            return Statement(owner=owned.group(1).lower(), noun=owned.group(2).lower(), name=bare.group("name"),
                             relation="identity")
        return Statement(owner="", noun=noun, name=bare.group("name"), relation=relation)
    return Statement(owner="", noun="", name="")


__all__ = ["Statement", "statements_in", "items_from_user_text", "parse_fact", "normalize", "RELATIONS"]
