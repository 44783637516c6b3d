"""The submit form, checked by the records' own rules (`schemas.records.ImageRequest`), errors per field."""

from __future__ import annotations

from typing import Any, Mapping, Optional

from pydantic import ValidationError

from schemas.records import ImageRequest, new_request_id
from schemas.questions import AnswerRecord

INT_FIELDS = ("drafts", "max_rounds", "width", "height", "seed", "steps")
TEXT_FIELDS = ("prompt", "user_id", "negative_prompt", "parent_request_id")
# What a pattern means, for the person who typed the value (pydantic would print the regular expression).
PATTERN_HELP = {
    "user_id": "1-128 letters, digits or _ . @ -",
    "parent_request_id": "an earlier request's id: 1-128 letters, digits or _ . : @ -",
    "request_id": "1-128 letters, digits or _ . : @ -",
}


def _message(field: str, error: dict[str, Any]) -> str:
    if error.get("type") == "string_pattern_mismatch":
        return f"must be {PATTERN_HELP.get(field, 'in the expected format')}"
    message = str(error.get("msg", "invalid value"))
    return message.removeprefix("Value error, ")


def field_errors(exc: ValidationError) -> dict[str, str]:
    """The first problem of each field, keyed by the form field's name."""
    errors: dict[str, str] = {}
    for error in exc.errors():
        loc = error.get("loc") or ("form",)
        field = str(loc[0])
        errors.setdefault(field, _message(field, error))
    return errors


def form_values(form: Mapping[str, Any]) -> dict[str, Any]:
    """What was typed, to fill the form again after an error (the template escapes it)."""
    values = {name: str(form.get(name, "") or "") for name in (*TEXT_FIELDS, *INT_FIELDS)}
    values["allow_clarification"] = bool(form.get("allow_clarification"))
    return values


def parse_request(form: Mapping[str, Any]) -> tuple[Optional[ImageRequest], dict[str, str]]:
    """The request the form describes, or None and what is wrong with which field."""
    errors: dict[str, str] = {}
    fields: dict[str, Any] = {}
    for name in INT_FIELDS:
        raw = str(form.get(name, "") or "").strip()
        if not raw:
            continue
        try:
            fields[name] = int(raw)
        except ValueError:
            errors[name] = "must be a whole number"
    negative = str(form.get("negative_prompt", "") or "")
    if negative.strip():
        fields["negative_prompt"] = negative
    parent = str(form.get("parent_request_id", "") or "").strip()
    if parent:
        fields["parent_request_id"] = parent
    try:
        request = ImageRequest(request_id=new_request_id(), user_id=str(form.get("user_id", "") or "").strip(),
                               prompt=str(form.get("prompt", "") or ""),
                               allow_clarification=bool(form.get("allow_clarification")), **fields)
    except ValidationError as exc:
        return None, {**field_errors(exc), **errors}
    if errors:
        return None, errors
    return request, {}


def parse_answer(request_id: str, user_id: str, text: str) -> tuple[Optional[AnswerRecord], dict[str, str]]:
    try:
        return AnswerRecord(request_id=request_id, user_id=user_id, answer=text), {}
    except ValidationError as exc:
        return None, field_errors(exc)
