"""What a finished request teaches memory, and what a later request takes back from it.

A completed result is an accepted one (the user got it and nobody rejected it): it becomes a `history` item (the
prompt, the style it was drawn in, the things it showed, the image), preferences the request expressed (a style it
asked for, its colours, its aspect ratio) marked `learned:<request_id>`, and `entity` items for what it referred
to. Every id derives from the request id (or the entity), so a redelivered result writes nothing twice. Learned
preferences never override what the user stated ("I like watercolor" beats a one-off "in pixel art").

A follow-up (`parent_request_id`) starts from a `Turn`: the parent's merged prompt, final prompt, filled gaps,
checklist and image, kept per user beside the history with the same cap and expiry.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
from datetime import datetime, timedelta, timezone
from typing import Optional

from pydantic import BaseModel, Field

from agents.memory import MemoryView, content_words, find_styles, item_id
from agents.ports import MemoryStore
from schemas.records import ChecklistItem, Degraded, Gap, MemoryItem, ParentRef, ResultRecord, utc_now

log = logging.getLogger("gapstream.learning")

_COLOURS = re.compile(
    r"\b(red|orange|yellow|green|blue|purple|violet|pink|brown|black|white|grey|gray|silver|gold|golden|teal|"
    r"turquoise|cyan|magenta|beige|crimson|emerald|navy|ivory|copper|bronze|pastel colou?rs?)\b",
    re.I,
)
_LAST_TIME = re.compile(r"\blast time\b|\bas before\b|\bsame as before\b|\bthe usual\b", re.I)
# Words of a "like last time" request that say nothing about what to draw.
_FILLER = {"draw", "paint", "make", "create", "show", "render", "picture", "image", "like", "last", "time", "again",
           "before", "same", "usual", "please", "another", "one"}


class Turn(BaseModel):
    """What a follow-up of a request starts from."""

    request_id: str
    prompt: str  # the request's merged prompt (its own words, or its parent's merged with them)
    final_prompt: str = ""
    image_uri: Optional[str] = None
    gaps: list[Gap] = Field(default_factory=list)
    checklist: list[ChecklistItem] = Field(default_factory=list)
    created_at: str = ""

    def parent_ref(self) -> ParentRef:
        return ParentRef(request_id=self.request_id, prompt=self.prompt, final_prompt=self.final_prompt,
                         image_uri=self.image_uri)


def _learned_id(request_id: str, what: str) -> str:
    return "l-" + hashlib.sha256(f"{request_id}\x00{what}".encode()).hexdigest()[:16]


def _expiry(finished_at: str, ttl_s: int) -> str:
    try:
        at = datetime.fromisoformat(finished_at)
    except ValueError:
        at = datetime.now(timezone.utc)
    return (at + timedelta(seconds=ttl_s)).isoformat(timespec="milliseconds")


def style_of(result: ResultRecord) -> str:
    """The style a result was drawn in: the one its prompt asked for, else the gap that filled the style."""
    prompt = result.base_prompt or (result.request.prompt if result.request else "")
    asked = find_styles(prompt)
    if asked:
        return asked[0]
    for gap in result.gaps:
        if gap.subject == "style" and gap.status == "filled" and gap.value:
            return gap.value
    return ""


def entities_of(result: ResultRecord) -> list[str]:
    """What the result showed that a later prompt can name: remembered things and searched subjects."""
    found = [g.subject.lower() for g in result.gaps
             if g.kind in ("memory", "knowledge") and g.subject and g.subject not in ("style", "last time")]
    return list(dict.fromkeys(found))


def learn(result: ResultRecord, history_ttl_s: int) -> list[MemoryItem]:
    """Memory items a completed result teaches; nothing for a failed, expired or unanswered one."""
    if result.status != "completed" or result.request is None:
        return []
    rid = result.request_id
    prompt = result.base_prompt or result.request.prompt
    source = f"learned:{rid}"
    at = result.finished_at
    style = style_of(result)
    entities = entities_of(result)
    items = [MemoryItem(
        id=_learned_id(rid, "history"), kind="history", text=prompt, subject=entities[0] if entities else "",
        value=result.prompt, source=f"result:{rid}", created_at=at, request_id=rid,
        expires_at=_expiry(at, history_ttl_s), style=style, entities=entities,
        image_uri=result.best_image.uri if result.best_image else None,
    )]
    for asked in find_styles(result.request.prompt):
        items.append(MemoryItem(id=_learned_id(rid, f"style:{asked}"), kind="preference", subject="style",
                                text=f"asked for {asked}", value=asked, source=source, created_at=at,
                                request_id=rid))
    for colour in dict.fromkeys(c.lower() for c in _COLOURS.findall(result.request.prompt)):
        items.append(MemoryItem(id=_learned_id(rid, f"colour:{colour}"), kind="preference", subject="colour",
                                text=f"asked for {colour}", value=colour, source=source, created_at=at,
                                request_id=rid))
    width, height = result.request.width, result.request.height
    if width and height and width != height:
        div = math.gcd(width, height)
        ratio = f"{width // div}:{height // div}"
        items.append(MemoryItem(id=_learned_id(rid, f"aspect:{ratio}"), kind="preference", subject="aspect ratio",
                                text=f"asked for {width}x{height}", value=ratio, source=source, created_at=at,
                                request_id=rid))
    for gap in result.gaps:
        subject = gap.subject.lower()
        if gap.kind in ("memory", "knowledge") and subject in entities and gap.status == "filled":
            # One entity item per thing, whoever mentions it next: the id is the subject's, not the request's.
            items.append(MemoryItem(id=item_id(f"entity:{subject}"), kind="entity", subject=subject,
                                    text=f"referred to {subject}", value=(gap.value or "")[:200], source=source,
                                    created_at=at, request_id=rid))
    return items


def turn_of(result: ResultRecord) -> Optional[Turn]:
    if result.status != "completed" or result.request is None:
        return None
    keep = [g for g in result.gaps if g.status == "filled"]
    return Turn(request_id=result.request_id, prompt=result.base_prompt or result.request.prompt,
                final_prompt=result.prompt, image_uri=result.best_image.uri if result.best_image else None,
                gaps=keep, checklist=result.checklist, created_at=result.finished_at)


def last_time(view: MemoryView, prompt: str) -> Optional[MemoryItem]:
    """For "draw Max like last time": the newest accepted result that showed what the prompt names (by entity),
    else the newest accepted result; None when the prompt does not refer to last time or nothing was accepted."""
    if not _LAST_TIME.search(prompt):
        return None
    history = view.history()
    if not history:
        return None
    named = {i.subject for i in view.names_in(prompt)} | set(content_words(prompt))
    for item in history:
        if named & set(item.entities):
            return item
    return history[0]


def repeats_last_time(prompt: str, names: set[str]) -> bool:
    """True when the prompt asks for nothing but the same again ("draw Max like last time")."""
    rest = [w for w in content_words(prompt) if w not in _FILLER and w not in names]
    return not rest


async def remember(memory: MemoryStore, result: ResultRecord, history_ttl_s: int) -> ResultRecord:
    """Teach memory what a final result shows and keep its turn for follow-ups; returns the result, with a degraded
    note when memory could not take it (that never holds back the result itself)."""
    try:
        items = learn(result, history_ttl_s)
        if items:
            await memory.add(result.user_id, items)
        turn = turn_of(result)
        if turn is not None:
            expires = items[0].expires_at if items else utc_now()
            await memory.put_turn(result.user_id, result.request_id, turn.model_dump_json(), expires)
    except Exception as exc:
        log.warning("could not remember result %s: %s: %s", result.request_id, type(exc).__name__, exc)
        forgotten = Degraded(stage="publisher", kind="not_remembered",
                             detail=f"memory: result not remembered: {type(exc).__name__}")
        return result.model_copy(update={"degraded": [*result.degraded, forgotten]})
    return result
