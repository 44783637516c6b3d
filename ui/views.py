"""Presentation helpers the templates call: prompt diffs, ages, where a gap's value came from, timings.

They return plain strings and tuples; the templates escape every one of them (autoescape), so nothing here builds
markup out of untrusted text.
"""

from __future__ import annotations

import difflib
import re
from collections import defaultdict
from datetime import datetime, timezone
from typing import Any, Iterable, Optional

_TOKENS = re.compile(r"\s+|[^\s,;]+|[,;]")


def diff_words(before: str, after: str) -> list[tuple[str, str]]:
    """`after` as (text, "same" | "added" | "removed") runs against `before`, word by word, so a page can
    highlight what a round changed in the prompt."""
    old, new = _TOKENS.findall(before or ""), _TOKENS.findall(after or "")
    runs: list[tuple[str, str]] = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=old, b=new, autojunk=False).get_opcodes():
        if op == "equal":
            runs.append(("".join(new[j1:j2]), "same"))
            continue
        removed, added = "".join(old[i1:i2]).strip(), "".join(new[j1:j2])
        if removed:
            runs.append((removed, "removed"))
        if added.strip():
            runs.append((added, "added"))
        elif added:
            runs.append((added, "same"))
    return runs


def prompt_rounds(result: Any) -> list[dict[str, Any]]:
    """The base prompt, then each round's prompt with its changes against the one before."""
    request_prompt = result.request.prompt if result.request is not None else ""
    base = result.base_prompt or request_prompt
    rounds, before = [], base
    for critique in result.critiques:
        prompt = critique.prompt or (result.prompt if critique.round == result.rounds - 1 else "")
        if not prompt:
            continue
        rounds.append({"round": critique.round, "prompt": prompt, "runs": diff_words(before, prompt)})
        before = prompt
    if not rounds and result.prompt:
        rounds.append({"round": 0, "prompt": result.prompt, "runs": diff_words(base, result.prompt)})
    return rounds


def age(iso: Optional[str], now: Optional[datetime] = None) -> str:
    """'just now', '5 min ago', '3 h ago', '12 days ago'; the ISO time itself when it cannot be read."""
    if not iso:
        return ""
    try:
        then = datetime.fromisoformat(iso)
    except ValueError:
        return iso
    if then.tzinfo is None:
        then = then.replace(tzinfo=timezone.utc)
    seconds = ((now or datetime.now(timezone.utc)) - then).total_seconds()
    if seconds < 0:
        until = -seconds
        if until < 3600:
            return f"in {max(1, int(until // 60))} min"
        return f"in {int(until // 3600)} h" if until < 2 * 86400 else f"in {int(until // 86400)} days"
    if seconds < 45:
        return "just now"
    if seconds < 3600:
        return f"{max(1, round(seconds / 60))} min ago"
    if seconds < 86400:
        return f"{round(seconds / 3600)} h ago"
    return f"{round(seconds / 86400)} days ago"


def source_of(source: Optional[str], filled_by: Optional[str] = None) -> dict[str, Optional[str]]:
    """What kind of thing a gap's source is, and a link where it is a web page."""
    text = source or ""
    if re.match(r"^https?://", text):
        return {"kind": "web page", "text": text, "href": text}
    if text.startswith("memory:") or (filled_by or "").startswith("memory"):
        return {"kind": "memory item", "text": text.removeprefix("memory:"), "href": None}
    if text == "default" or filled_by == "default":
        return {"kind": "default", "text": text or "default", "href": None}
    if text.startswith("llm:") or (filled_by or "").startswith("llm:"):
        return {"kind": "model", "text": text or filled_by, "href": None}
    if text.startswith("result:"):
        return {"kind": "earlier result", "text": text.removeprefix("result:"), "href": None}
    if text.startswith("answer:") or text == "user":
        return {"kind": "your answer", "text": text, "href": None}
    if text:
        return {"kind": "corpus file", "text": text, "href": None}
    return {"kind": "", "text": "", "href": None}


def stage_timings(timings: Iterable[Any]) -> list[dict[str, Any]]:
    """Seconds per stage, summed over rounds, in pipeline order, with the rounds it ran in."""
    total: dict[str, float] = defaultdict(float)
    rounds: dict[str, set[int]] = defaultdict(set)
    order: list[str] = []
    for timing in timings:
        if timing.stage not in total:
            order.append(timing.stage)
        total[timing.stage] += timing.seconds
        rounds[timing.stage].add(timing.round)
    return [{"stage": s, "seconds": total[s], "rounds": len(rounds[s])} for s in order]


def checks_of(result: Any) -> list[dict[str, Any]]:
    """The checklist with the last critique's pass/fail and reason for each item."""
    last = result.critiques[-1] if result.critiques else None
    by_item = {c.item_id: c for c in (last.checks if last else [])}
    rows = []
    for item in result.checklist:
        check = by_item.get(item.id)
        rows.append({"id": item.id, "text": item.text, "gap_id": item.gap_id,
                     "passed": None if check is None else check.passed, "reason": check.reason if check else ""})
    return rows


def best_uri(result: Any) -> Optional[str]:
    if result.best_image is not None:
        return result.best_image.uri
    return result.images[0].uri if result.images else None
