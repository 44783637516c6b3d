"""The planner's rules for what only a search can know, and for what is a format rather than a question.

- Named things (capitalised runs: "Lantern Fair", "Orbit kettle"), temporal cues ("this year", "latest", a year),
  occasions and customs ("celebrating hanami", "the flower people give on Mother's Day") and implicit processes
  ("copper sulfate crystals dissolving in water": what it looks like is knowledge, like a custom) are `knowledge`
  gaps, searched in the corpus or on the web.
- Platforms and formats ("a LinkedIn banner", "a YouTube thumbnail", "a flyer") are `constraint`s on layout, not
  knowledge: searching "LinkedIn banner" would only fill the prompt with facts about LinkedIn.
- A name that follows a possessive ("my dog Max") belongs to the user's world, never to a web search.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timezone
from typing import Optional

from agents.memory import STOPWORDS, find_styles

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
            or words[0].lower() in PLATFORMS  # "LinkedIn banner": a format (see format_constraints)
            or words[0].lower() in excluded  # "Max" after "my dog": a name from the user's world
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



# Platforms whose name in a request only says where the image will be shown.
PLATFORMS = frozenset("""linkedin youtube instagram facebook tiktok twitter pinterest etsy shopify twitch discord
    spotify reddit snapchat whatsapp threads bluesky mastodon tumblr behance dribbble""".split())
# Formats and the layout each implies: a default for composition, said as such, never a fact about a subject.
FORMATS: dict[str, str] = {
    "banner": "wide banner layout with room for text",
    "header": "wide header layout with room for text",
    "cover": "wide cover layout with room for text",
    "thumbnail": "bold high-contrast thumbnail, readable at small size",
    "flyer": "flyer layout with room for text",
    "leaflet": "flyer layout with room for text",
    "poster": "poster layout",
    "ad": "advertising layout with a clear focal point",
    "advert": "advertising layout with a clear focal point",
    "advertisement": "advertising layout with a clear focal point",
    "story": "vertical 9:16 layout",
    "reel": "vertical 9:16 layout",
    "post": "square social media post layout",
    "card": "card layout",
    "invitation": "invitation card layout",
    "billboard": "wide billboard layout with large bold shapes",
    "sticker": "sticker design with a clean outline",
    "icon": "simple centred icon",
    "avatar": "centred avatar portrait",
}
PLATFORM_LAYOUTS: dict[tuple[str, str], str] = {
    ("linkedin", "banner"): "wide 4:1 banner layout with room for text",
    ("youtube", "thumbnail"): "16:9 thumbnail, bold high-contrast, readable at small size",
    ("youtube", "banner"): "wide 16:9 channel banner layout",
    ("instagram", "post"): "square 1:1 post layout",
    ("instagram", "story"): "vertical 9:16 story layout",
    ("tiktok", "video"): "vertical 9:16 layout",
    ("twitter", "header"): "wide 3:1 header layout",
    ("facebook", "cover"): "wide cover layout with room for text",
    ("pinterest", "pin"): "tall 2:3 pin layout",
}
_FORMAT_RE = re.compile(r"\b(?:(" + "|".join(sorted(PLATFORMS)) + r")\s+)?(?:(?:social(?:[- ]media)?|web|"
                        r"channel|profile|event|product)\s+)?(" + "|".join(sorted({*FORMATS, "pin", "video"}, key=len,
                                                                                    reverse=True)) + r")s?\b", re.I)
# Processes and reactions whose look is knowledge, like a custom: "dissolving in water", "rusting", "erupting".
_PROCESS = re.compile(
    r"\b(?:dissolv|melt|freez|boil|evaporat|condens|burn|rust|oxidi[sz]|react|ferment|crystalli[sz]|erupt|decay|"
    r"germinat|hatch|sprout|ripen|corrod|combust|precipitat|sublimat|photosynthesi[sz]|molt|moult|tarnish|"
    r"caramelis|caramelliz|fluoresc|glow)ing\b", re.I)
_PROCESS_AFTER = re.compile(r"^\s+((?:in|into|with|on|under|over)\s+(?:a|an|the)?\s*[a-z][\w-]*(?:\s+[a-z][\w-]*)?)",
                            re.I)
# "the flower people give on Mother's Day", "the food they eat at Nowruz": a custom, asked for indirectly.
_CUSTOM = re.compile(
    r"\bthe\s+([a-z][\w-]*(?:\s+[a-z][\w-]*)?)\s+(?:people|we|they|you|families|children|kids|guests|locals)\s+"
    r"(?:traditionally\s+|usually\s+|often\s+)?(give|eat|wear|light|hang|send|make|carry|exchange|cook|drink|fly|"
    r"throw|release|plant|build|decorate|sing|dance|bring|burn)\b"
    r"((?:\s+(?!in\b|with\b|under\b|beside\b|next\b|inside\b)[\w'’]+){0,4})", re.I)


def format_constraints(prompt: str) -> list[tuple[str, str, str]]:
    """(what the request names, platform or "", layout) for each platform or format in the prompt."""
    found: dict[str, tuple[str, str, str]] = {}
    for match in _FORMAT_RE.finditer(prompt):
        platform = (match.group(1) or "").lower()
        fmt = match.group(2).lower()
        layout = PLATFORM_LAYOUTS.get((platform, fmt)) or FORMATS.get(fmt)
        if layout is None or (not platform and fmt in ("pin", "video", "card", "post", "story", "cover")):
            continue  # "a story about …", "a cover of snow": only formats when a platform says so
        found.setdefault(fmt, (match.group(0).strip(), platform, layout))
    return list(found.values())


def platform_words(prompt: str) -> set[str]:
    """Platform names in the prompt (lower-cased): never a subject to search."""
    return {w.lower() for w in re.findall(r"[A-Za-z]+", prompt) if w.lower() in PLATFORMS}


def processes(prompt: str) -> list[str]:
    """Implicit processes: "copper sulfate crystals dissolving in water" (the thing, the verb, where)."""
    found = []
    for match in _PROCESS.finditer(prompt):
        before = [w for w in re.findall(r"[A-Za-z][\w'-]*", prompt[: match.start()])][-4:]
        thing = []
        for word in reversed(before):
            if word.lower() in STOPWORDS or word.lower() in ("of", "showing", "picture", "photo", "image"):
                break
            thing.insert(0, word)
        after = _PROCESS_AFTER.match(prompt[match.end():])
        phrase = " ".join([*thing, match.group(0), *(after.group(1).split() if after else [])])
        if thing:
            found.append(re.sub(r"\s+", " ", phrase).strip().lower())
    return found


def customs(prompt: str) -> list[str]:
    """Customs asked for indirectly: "the flower people give on Mother's Day"."""
    return [re.sub(r"\s+", " ", m.group(0)).strip().lower() for m in _CUSTOM.finditer(prompt)]

def knowledge(tokens: list[str], prompt: str, names: set[str], year: int) -> list[tuple[int, int, str, bool, str]]:
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
    for phrase in customs(prompt):
        # "the flower people give on Mother's Day" asks more than "Mother's Day": it replaces that gap.
        found = [f for f in found if f[2].lower() not in phrase]
        subjects = {f[2].lower() for f in found} | {phrase}
        found.append((len(tokens), len(tokens), phrase, False, phrase))
    for phrase in processes(prompt):
        if any(phrase in s or s in phrase for s in subjects):
            continue
        subjects.add(phrase)
        found.append((len(tokens), len(tokens), phrase, False, phrase))
    return found

