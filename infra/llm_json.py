"""Reading a model's JSON answer: the object in it, and as much of it as is valid.

Small models answer with prose around the object, fenced blocks, or a list in which one entry is wrong. The object is
found leniently; when the whole answer does not validate, `salvage` keeps the list entries that do (one gap with a
kind that does not exist must not cost the other gaps), and says what it dropped, so the stage can record it.
"""

from __future__ import annotations

import json
import re
from typing import Any, Optional

from pydantic import BaseModel, ValidationError

_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.S)


def extract_json_object(text: str) -> Any:
    """The JSON object in a model's answer: the whole text, a fenced block, or the outermost `{...}` in prose.

    Raises ValueError when there is none.
    """
    stripped = text.strip()
    if not stripped:
        raise ValueError("empty answer")
    try:
        return json.loads(stripped)
    except json.JSONDecodeError:
        pass
    for block in _FENCE.findall(stripped):
        try:
            return json.loads(block.strip())
        except json.JSONDecodeError:
            continue
    start, end = stripped.find("{"), stripped.rfind("}")
    if start != -1 and end > start:
        try:
            return json.loads(stripped[start : end + 1])
        except json.JSONDecodeError:
            pass
        # Prose with braces after the object: take the first object that decodes from any '{'.
        decoder = json.JSONDecoder()
        index = start
        while index != -1:
            try:
                value, _ = decoder.raw_decode(stripped, index)
            except json.JSONDecodeError:
                index = stripped.find("{", index + 1)
                continue
            if isinstance(value, dict):
                return value
            index = stripped.find("{", index + 1)
    raise ValueError("no JSON object in the answer")


def short_validation_reason(exc: ValidationError, name: str) -> str:
    errors = exc.errors(include_input=False, include_url=False)
    parts = []
    for err in errors[:3]:
        loc = ".".join(str(p) for p in err.get("loc", ())) or "<root>"
        parts.append(f"{loc}: {err.get('msg', 'invalid')}")
    more = f" (+{len(errors) - 3} more)" if len(errors) > 3 else ""
    return f"answer does not match {name}: {'; '.join(parts)}{more}"[:300]


def _item_model(annotation: Any) -> Optional[type[BaseModel]]:
    """The BaseModel of a `list[Model]` field, else None."""
    args = getattr(annotation, "__args__", ()) or ()
    origin = getattr(annotation, "__origin__", None)
    if origin is list and len(args) == 1 and isinstance(args[0], type) and issubclass(args[0], BaseModel):
        return args[0]
    return None


def salvage(output: type[BaseModel], data: Any) -> tuple[Optional[BaseModel], list[str]]:
    """(the answer with its invalid list entries dropped, what was dropped), or (None, []) when even that fails or
    nothing was dropped (then the answer is simply invalid)."""
    if not isinstance(data, dict):
        return None, []
    kept = dict(data)
    dropped: list[str] = []
    for name, field in output.model_fields.items():
        model = _item_model(field.annotation)
        entries = data.get(name)
        if model is None or not isinstance(entries, list):
            continue
        good = []
        for index, entry in enumerate(entries):
            try:
                model.model_validate(entry)
            except ValidationError as exc:
                err = exc.errors(include_input=False, include_url=False)[0]
                loc = ".".join(str(p) for p in err.get("loc", ()))
                dropped.append(f"{name}[{index}]{'.' + loc if loc else ''}: {err.get('msg', 'invalid')}"[:160])
                continue
            good.append(entry)
        kept[name] = good
    if not dropped:
        return None, []
    try:
        return output.model_validate(kept), dropped
    except ValidationError:
        return None, []
