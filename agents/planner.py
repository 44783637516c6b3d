"""The plan stage, offline: find what a prompt leaves out (its context gap) with rules instead of an LLM.

Four kinds of gap are found: things only a search can know (named events and products, anything asked for "this
year" or "latest", occasions and customs), things only the user's memory knows ("my dog", "our logo", "my usual
style", a remembered name), and a missing style, setting, composition or lighting, filled from remembered
preferences or defaults. The checklist it writes is what the critic later holds the prompt to.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timezone
from typing import Callable, Mapping, Optional

from agents.memory import (
    STOPWORDS,
    MemoryView,
    content_words,
    describe,
    find_styles,
    statements_in,
)
from agents.learning import last_time, repeats_last_time
from agents.ports import MemoryStore
from schemas.records import ChecklistItem, Gap, GapsRecord, ImageRequest, MemoryItem

DEFAULTS: Mapping[str, str] = {
    "style": "detailed digital illustration",
    "setting": "simple uncluttered background",
    "composition": "balanced composition",
    "lighting": "soft natural lighting",
}
# Errors a store raises when it cannot be reached; anything else is a bug and should surface.
MEMORY_ERRORS = (ConnectionError, OSError, TimeoutError)

_TOKEN = re.compile(r"[A-Za-z0-9][\w'’-]*|[.!?;,:\n\"“”]")
_YEAR = re.compile(r"^(?:19|20)\d\d$")
_STRONG_CUES = {"latest", "newest", "upcoming", "current", "recent", "this-year"}
_CONNECTORS = {"of", "de", "del", "la", "the", "and", "los"}
_WEAK_CUES = {"new"}  # "a new puppy" is not a question for search; "the new Orbit kettle" is
_CALENDAR = set(
    "january february march april may june july august september october november december monday tuesday "
    "wednesday thursday friday saturday sunday".split()
)
_OCCASIONS = re.compile(
    r"\b(hanami|diwali|holi|christmas(?: eve)?|easter|halloween|thanksgiving|hanukkah|ramadan|eid(?: al-fitr| al-adha)?"
    r"|lunar new year|chinese new year|new year's eve|songkran|nowruz|oktoberfest|carnival|mardi gras|day of the dead"
    r"|d[ií]a de (?:los )?muertos|obon|t[eế]t|chuseok|passover|vesak|loy krathong|mid-autumn festival|midsummer"
    r"|st\.? patrick's day|valentine's day|mother's day|father's day|kwanzaa|bonfire night|guy fawkes night)\b",
    re.I,
)
_CELEBRATING = re.compile(r"\b(?:celebrating|celebrate|celebration of|festival of)\s+([a-z][\w'-]*(?:\s+[a-z][\w'-]*)?)",
                          re.I)
_STYLE_REF = re.compile(
    r"\b(?:in\s+)?(?:my|our)\s+(?:usual|favou?rite|preferred|normal|signature|own|go-to|default|typical)\s+"
    r"(?:art\s+)?style\b|\b(?:in\s+)?(?:my|our)\s+style\b|\b(?:just\s+)?like last time\b|\bas (?:usual|last time|before)\b"
    r"|\bthe usual\b|\bsame (?:style )?as (?:last time|before)\b",
    re.I,
)
_POSSESSIVE = re.compile(r"\b(my|our)\s+((?:[A-Za-z][\w'-]*\s*){1,3})", re.I)
_MEDIUM_CUES = re.compile(r"\b(?:shot|snapshot|selfie|photography|render|rendering|drawing|doodle|artwork)\b", re.I)
_SETTING = re.compile(
    r"\b(?:on|in|at|under|inside|beside|near|by|over|above|against|across|through|among|along|beneath|behind|"
    r"atop|around|in front of)\s+(?:a|an|the|my|our|his|her|their|some)?\s*(?!my\b|our\b|style\b)[a-z][\w-]*"
    r"|\b(?:background|backdrop|landscape|scene|indoors|outdoors|underwater|skyline|street|interior|room|studio)\b",
    re.I,
)
_COMPOSITION = re.compile(
    r"\b(?:close-?up|portrait|wide(?:-angle| angle| shot)?|full[- ]body|full-length|cent(?:er|re)d|overhead|"
    r"top-down|aerial|bird's-eye|from (?:above|below)|side view|front view|profile|macro|panoram(?:a|ic)|poster|"
    r"shot|view|angle|framed|composition|symmetrical|rule of thirds|still life|flat lay)\b",
    re.I,
)
_LIGHTING = re.compile(
    r"\b(?:light|lighting|lit|daylight|sunlight|sunlit|sunset|sunrise|dawn|dusk|twilight|night|golden hour|"
    r"blue hour|neon|candlelight|moonlight|moonlit|shadows?|backlit|studio|noon|morning|evening|overcast|foggy|"
    r"misty|glow(?:ing)?)\b",
    re.I,
)
_COLOURS = re.compile(
    r"\b(red|orange|yellow|green|blue|purple|violet|pink|brown|black|white|grey|gray|silver|gold|golden|teal|"
    r"turquoise|cyan|magenta|beige|crimson|emerald|navy|ivory|copper|bronze)\b",
    re.I,
)
_NUMBERS = ("two three four five six seven eight nine ten eleven twelve dozen").split()
_COUNT = re.compile(r"\b(" + "|".join(_NUMBERS) + r"|\d{1,3})\s+([a-z][\w-]*)", re.I)
_QUOTED = re.compile(r"\"([^\"\n]{1,80})\"|“([^”\n]{1,80})”")
_SIZES = {"tiny", "small", "large", "huge", "giant", "young", "fluffy", "cute", "happy"}
_ADJECTIVES = {"usual", "favourite", "favorite", "own", "little", "old", "new", "big", "small", "lovely", "beloved",
               "sweet", "cute", "dear", "best", "first", "second", "whole", "entire"}


async def read_memory(memory: MemoryStore, user_id: str, degraded: list[str]) -> tuple[list[MemoryItem], bool]:
    """The user's items, or none when the store is unreachable: planning goes on and `degraded` says why."""
    try:
        return list(await memory.items(user_id)), True
    except MEMORY_ERRORS as exc:
        degraded.append(f"memory unavailable: {type(exc).__name__}: {exc}")
        return [], False


def _utc_today() -> date:
    return datetime.now(timezone.utc).date()


def _is_capitalised(token: str) -> bool:
    return token[:1].isupper()


def _tokens(prompt: str) -> list[str]:
    raw = _TOKEN.findall(prompt)
    out: list[str] = []
    for i, tok in enumerate(raw):
        # "this year's" is one cue; keeping it as a token keeps the "within three words" test simple.
        if tok.lower() in ("year's", "year’s", "year") and out and out[-1].lower() == "this":
            out[-1] = "this-year"
            continue
        out.append(tok)
    return out


def _sentence_start(tokens: list[str], i: int) -> bool:
    return i == 0 or tokens[i - 1] in (".", "!", "?", "\n", ":", ";", "\"", "“")


def _entities(tokens: list[str], excluded: set[str]) -> list[tuple[int, int, str]]:
    """Capitalised runs ("Lantern Fair", "Day of the Dead", "Orbit kettle") as (first, last, text)."""
    found = []
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if not (_is_capitalised(tok) and tok[0].isalpha()):
            i += 1
            continue
        j = i
        while j + 1 < len(tokens):
            nxt = tokens[j + 1]
            if _is_capitalised(nxt) and nxt[0].isalpha():
                j += 1
            elif nxt.lower() in _CONNECTORS:
                k = j + 1
                while k < len(tokens) and tokens[k].lower() in _CONNECTORS and k - j <= 2:
                    k += 1
                if k < len(tokens) and _is_capitalised(tokens[k]) and tokens[k][0].isalpha():
                    j = k  # "Day of the Dead", "Festival of Lights"
                else:
                    break
            elif nxt.isdigit() and not _YEAR.match(nxt) and len(nxt) <= 3:
                j += 1
            else:
                break
        words = tokens[i : j + 1]
        while words and (words[0].lower() in STOPWORDS or words[0].lower() in _CALENDAR):
            words = words[1:]
            i += 1
        text = " ".join(words)
        single = len(words) == 1
        skip = (
            not words
            or text.lower() in excluded
            or (single and words[0].lower() in _CALENDAR)
            or (single and _sentence_start(tokens, i))  # "Friends celebrating…": a capital that only starts a line
            or bool(find_styles(text)) and single
        )
        end = j
        if not skip and single and j + 1 < len(tokens):
            nxt = tokens[j + 1]
            if nxt[0].isalpha() and not _is_capitalised(nxt) and nxt.lower() not in STOPWORDS \
                    and not nxt.lower().endswith(("ing", "ly")):
                text, end = f"{text} {nxt}", j + 1  # "Orbit kettle": the brand and what kind of thing it is
        if not skip:
            found.append((i, end, text))
        i = j + 1
    return found


def _noun_after(tokens: list[str], i: int) -> tuple[int, str]:
    words = []
    j = i + 1
    while j < len(tokens) and len(words) < 2:
        tok = tokens[j]
        if not tok[0].isalnum() or tok.lower() in STOPWORDS or _YEAR.match(tok):
            break
        words.append(tok)
        j += 1
    return j - 1, " ".join(words)


class HeuristicPlanner:
    """`GapsRecord` from an `ImageRequest`, with rules; reads and writes the requesting user's memory only."""

    def __init__(
        self,
        memory: MemoryStore,
        today: Optional[Callable[[], date]] = None,
        *,
        defaults: Optional[Mapping[str, str]] = None,
    ) -> None:
        if memory is None:
            raise ValueError("memory store is required (use an empty store for no memory)")
        self.memory = memory
        self.today = today or _utc_today
        self.defaults = {**DEFAULTS, **(defaults or {})}

    async def __call__(self, request: ImageRequest) -> GapsRecord:
        if not isinstance(request, ImageRequest):
            raise ValueError(f"expected an ImageRequest, got {type(request).__name__}")
        degraded: list[str] = []
        prompt = request.prompt
        year = self.today().year

        stored, memory_ok = await read_memory(self.memory, request.user_id, degraded)
        statements = statements_in(prompt, now=request.created_at)
        written: list[MemoryItem] = []
        if statements and memory_ok:
            try:
                await self.memory.add(request.user_id, statements)
                # Listed even when already stored: a redelivered request then produces the same record.
                written = statements
            except MEMORY_ERRORS as exc:
                degraded.append(f"memory unavailable: could not store statements: {type(exc).__name__}: {exc}")
        view = MemoryView([*stored, *statements])

        gaps: list[Gap] = []
        used: dict[str, MemoryItem] = {}

        def add_gap(**fields) -> Gap:
            gap = Gap(id=f"g{len(gaps) + 1}", **fields)
            gaps.append(gap)
            return gap

        def fill_from(item: MemoryItem, value: str) -> dict:
            used.setdefault(item.id, item)
            return {"status": "filled", "value": value, "source": f"memory:{item.id}", "filled_by": "memory"}

        tokens = _tokens(prompt)
        remembered_names = set(view.named())
        for start, end, subject, ts, query in self._knowledge(tokens, prompt, remembered_names, year):
            add_gap(kind="knowledge", strategy="search", subject=subject, query=query, time_sensitive=ts,
                    description=f"what {subject} {'is like now' if ts else 'looks like'}; the image model cannot know")

        style_ref = _STYLE_REF.search(prompt)
        style_item = view.style()
        previous = last_time(view, prompt)  # "draw Max like last time": the last accepted result showing Max
        if style_ref:
            phrase = style_ref.group(0).strip()
            fields = dict(kind="memory", strategy="memory", subject="style",
                          description=f"the user's style, referred to as '{phrase}'")
            if previous is not None and previous.style:
                add_gap(**fields, **fill_from(previous, previous.style))
            elif style_item:
                add_gap(**fields, **fill_from(style_item, style_item.value))
            else:
                add_gap(**fields, status="unfilled", reason="no style preference in the user's memory")
        if previous is not None and repeats_last_time(prompt, {i.subject for i in view.names_in(prompt)}):
            add_gap(kind="memory", strategy="memory", subject="last time",
                    description="what the last accepted image showed",
                    **fill_from(previous, _STYLE_REF.sub("", previous.text).strip(" ,.") or previous.text))

        referenced: set[str] = set()
        for match in _POSSESSIVE.finditer(prompt):
            if style_ref and style_ref.start() <= match.start() < style_ref.end():
                continue
            owner = match.group(1).lower()
            phrase_words = []
            for word in match.group(2).split():
                if word.lower() in STOPWORDS or word.lower() in ("is", "are"):
                    break
                phrase_words.append(word)
            if not phrase_words:
                continue
            item = None
            for word in phrase_words:
                facts = view.facts_about(f"{owner} {word}") or view.facts_about(word)
                if facts:
                    item = facts[0]
                    break
            nouns = [w.lower() for w in phrase_words if w.lower() not in _ADJECTIVES]
            subject = item.subject if item else (nouns[0] if nouns else phrase_words[0].lower())
            if subject in referenced:
                continue
            referenced.add(subject)
            fields = dict(kind="memory", strategy="memory", subject=subject,
                          description=f"what '{owner} {' '.join(phrase_words)}' is, known only to the user")
            if item:
                add_gap(**fields, **fill_from(item, describe(item)))
            else:
                add_gap(**fields, status="unfilled",
                        reason=f"nothing about '{owner} {' '.join(phrase_words)}' in the user's memory")

        for item in view.names_in(prompt):
            if item.subject in referenced:
                continue
            referenced.add(item.subject)
            add_gap(kind="memory", strategy="memory", subject=item.subject,
                    description=f"who or what '{item.subject}' is, from the user's memory", **fill_from(item, describe(item)))

        self._preferences(prompt, view, bool(style_ref), any(g.kind == "knowledge" for g in gaps), add_gap, fill_from)

        return GapsRecord(
            request_id=request.request_id,
            user_id=request.user_id,
            round=0,
            request=request,
            gaps=gaps,
            checklist=_checklist(prompt, gaps, tokens),
            memory_used=list(used.values()),
            memory_written=written,
            degraded=degraded,
        )

    def _knowledge(self, tokens: list[str], prompt: str, names: set[str], year: int):
        """(start, end, subject, time_sensitive, query) for each thing only search can know."""
        found: list[tuple[int, int, str, bool, str]] = []
        entities = _entities(tokens, names)
        cue_at = [i for i, t in enumerate(tokens) if t.lower() in _STRONG_CUES | _WEAK_CUES or _YEAR.match(t)]

        def temporal(start: int, end: int, strong_only: bool) -> tuple[bool, Optional[str]]:
            for i in cue_at:
                tok = tokens[i].lower()
                # A weak cue counts only right before the name ("the new Orbit kettle"), a strong one a few words off.
                window = 1 if tok in _WEAK_CUES else 3
                if not (start - window <= i < start or end < i <= end + 2):
                    continue
                between = tokens[min(i, end) + 1 : max(i, start)]
                if any(not t[0].isalnum() for t in between):
                    continue  # "Mother's Day, 2026 Lantern Fair": the year belongs to the fair
                if strong_only and tok in _WEAK_CUES:
                    continue
                return True, tok if _YEAR.match(tok) else None
            return False, None

        covered: set[int] = set()
        for start, end, text in entities:
            ts, explicit_year = temporal(start, end, strong_only=False)
            query = f"{text} {explicit_year or year}" if ts else text
            found.append((start, end, text, ts, query))
            covered.update(range(start, end + 1))
        for i in cue_at:
            tok = tokens[i].lower()
            if tok in _WEAK_CUES or _YEAR.match(tok) or i + 1 in covered or i in covered:
                continue
            end, noun = _noun_after(tokens, i)
            if noun and not any(s <= i + 1 <= e for s, e, *_ in found):
                found.append((i + 1, end, noun.lower(), True, f"{noun.lower()} {year}"))
                covered.update(range(i + 1, end + 1))
        subjects = {f[2].lower() for f in found}
        occasions = [m.group(1) for m in _OCCASIONS.finditer(prompt)]
        for m in _CELEBRATING.finditer(prompt):
            words = [w for w in m.group(1).split() if w.lower() not in STOPWORDS]
            if words and m.group(1).split()[0].lower() not in STOPWORDS:
                occasions.append(" ".join(words))
        for occasion in occasions:
            key = occasion.lower()
            if any(key in s or s in key for s in subjects):
                continue
            subjects.add(key)
            found.append((len(tokens), len(tokens), key, False, key))
        return found

    def _preferences(self, prompt, view: MemoryView, style_referenced: bool, has_knowledge: bool, add_gap, fill_from):
        if not style_referenced and not find_styles(prompt) and not _MEDIUM_CUES.search(prompt):
            fields = dict(kind="preference", subject="style", description="no style or medium given")
            style = view.style()
            if style:
                add_gap(**fields, strategy="memory", **fill_from(style, style.value))
            else:
                add_gap(**fields, strategy="default", status="filled", value=self.defaults["style"], source="default", filled_by="default")
        # A searched event or custom brings its own setting; a default backdrop would contradict it.
        checks = [("setting", _SETTING, not has_knowledge), ("composition", _COMPOSITION, True),
                  ("lighting", _LIGHTING, True)]
        for subject, pattern, wanted in checks:
            if wanted and not pattern.search(prompt):
                add_gap(kind="preference", strategy="default", subject=subject, status="filled",
                        value=self.defaults[subject], source="default", filled_by="default", description=f"no {subject} given")


def _checklist(prompt: str, gaps: list[Gap], tokens: list[str]) -> list[ChecklistItem]:
    items: list[ChecklistItem] = []
    seen: set[tuple[str, ...]] = set()

    def add(text: str, terms: list[str], gap_id: Optional[str] = None) -> None:
        key = tuple(t.lower() for t in terms)
        if not terms or key in seen:
            return
        seen.add(key)
        items.append(ChecklistItem(id=f"c{len(items) + 1}", text=text, terms=terms, gap_id=gap_id))

    for gap in gaps:
        if gap.status == "filled" and gap.value:
            add(f"{gap.subject or gap.kind}: {gap.value}", content_words(gap.value)[:3], gap.id)
    for m in _COUNT.finditer(prompt):
        count, noun = m.group(1), m.group(2)
        rest = prompt[m.start(2):].split()
        # "two red apples": the count belongs to the noun, not to its colour or size.
        while len(rest) > 1 and (_COLOURS.fullmatch(rest[0].lower()) or rest[0].lower() in _ADJECTIVES | _SIZES):
            rest = rest[1:]
        noun = re.sub(r"[^\w'-]+$", "", rest[0]) if rest else noun
        if noun.lower() not in STOPWORDS and not _YEAR.match(count):
            add(f"{count} {noun}", [count.lower(), noun.lower()])
    for m in _QUOTED.finditer(prompt):
        quoted = (m.group(1) or m.group(2)).strip()
        add(f'the text "{quoted}"', [quoted])
    for colour in dict.fromkeys(c.lower() for c in _COLOURS.findall(prompt)):
        add(f"colour {colour}", [colour])
    for _, _, entity in _entities(tokens, set()):
        add(f"named subject {entity}", [entity])
    for style in find_styles(prompt):
        add(f"style {style}", [style])
    return items
