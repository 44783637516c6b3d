"""What each model call must answer: small, flat pydantic models that JSON-schema-guided decoding (and small local
models in JSON mode) can fill. Unknown fields are ignored; everything the stages rely on is checked again after
validation, because a schema says nothing about whether a cited id exists or a fact has a source.
"""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field

from schemas.records import GapKind, Strategy


class _Output(BaseModel):
    model_config = ConfigDict(extra="ignore")


class PlannedGap(_Output):
    id: str = Field(default="", description="g1, g2, … in order")
    kind: GapKind
    strategy: Strategy
    subject: str = Field(default="", description="what the gap is about, in a few words")
    description: str = Field(default="", description="what is missing; for 'ask', the question to the user")
    query: Optional[str] = Field(default=None, description="search strategy: the web search query")
    value: Optional[str] = Field(default=None, description="reason/default strategy: the value that fills the gap")
    memory_id: Optional[str] = Field(default=None, description="memory strategy: id of the memory item cited")
    time_sensitive: bool = Field(default=False, description="true when the answer changes over time")
    reasoning: str = Field(default="", description="one short sentence: why this strategy and value")


class PlannedCheck(_Output):
    text: str = Field(description="what the image must show")
    terms: list[str] = Field(default_factory=list, description="1-3 words a prompt showing it would contain")
    gap_id: Optional[str] = Field(default=None, description="the gap this item checks, if any")


class StatedFact(_Output):
    text: str = Field(description="the user's statement, in their words")
    kind: Literal["fact", "preference"] = "fact"
    subject: str = Field(default="", description="what it is about: a name, 'dog', 'style'")
    value: str = Field(default="", description="what is true of the subject: 'a grey sphynx', 'watercolor'")


class PlannerOutput(_Output):
    gaps: list[PlannedGap] = Field(default_factory=list)
    checklist: list[PlannedCheck] = Field(default_factory=list)
    remember: list[StatedFact] = Field(default_factory=list)


class UsedFact(_Output):
    text: str = Field(description="the phrase exactly as it appears in the prompt")
    gap_id: str = Field(description="id of the gap data block the phrase came from")


class EnricherOutput(_Output):
    prompt: str = Field(description="the diffusion prompt, comma-separated phrases")
    negative_prompt: str = Field(default="", description="things to avoid, comma-separated")
    used: list[UsedFact] = Field(default_factory=list, description="every phrase taken from a gap, with its gap id")


class ItemCheck(_Output):
    item_id: str = Field(description="checklist item id: c1, c2, …")
    passed: bool
    reason: str = ""


class CriticOutput(_Output):
    checks: list[ItemCheck] = Field(default_factory=list, description="one per checklist item, for the best draft")
    best_draft: int = Field(default=1, description="number of the best draft, 1 for the first image")
    draft_scores: list[float] = Field(default_factory=list, description="one score 0..1 per draft, in order")
    score: float = Field(description="the best draft's score, 0..1")
    verdict: Literal["accept", "revise"] = "revise"
    suggestions: list[str] = Field(default_factory=list, description="up to 5 prompt changes for the next round")


def constrained(model: type[_Output], limits: dict[tuple[str, ...], dict]) -> type[_Output]:
    """`model` with a JSON Schema (what the server decodes against) narrowed at the given paths, e.g. a memory id
    that must be one of the ids shown, or a list of at most 8 gaps. Validation stays the base model's: a server that
    ignores the schema can still answer anything, and the stage's own checks keep what is valid of it."""
    base = model.model_json_schema()

    def narrowed() -> dict:
        import copy

        schema = copy.deepcopy(base)
        for path, replacement in limits.items():
            node = schema
            for key in path[:-1]:
                node = node[key]
            if path[-1] in node and set(replacement) <= {"maxItems", "minItems"}:
                node[path[-1]] = {**node[path[-1]], **replacement}  # a bound beside the list's own items
            else:
                node[path[-1]] = replacement
        return schema

    class Narrowed(model):  # type: ignore[misc, valid-type]
        @classmethod
        def model_json_schema(cls, *args, **kwargs):  # noqa: D102 - same contract as pydantic's
            return narrowed()

    Narrowed.__name__ = model.__name__
    Narrowed.__qualname__ = model.__qualname__
    return Narrowed


def one_of(values: list[str], nullable: bool = True) -> dict:
    """A string that must be one of `values` (or null); just null when there are none to choose from."""
    if not values:
        return {"type": "null"}
    choice = {"type": "string", "enum": list(values)}
    return {"anyOf": [choice, {"type": "null"}]} if nullable else choice


MAX_PLANNED_GAPS = 8
MAX_PLANNED_CHECKS = 12
MAX_REMEMBERED = 4
MAX_USED = 12


def _gap_by_kind(memory_ids: list[str], gap_ids: list[str], allowed: dict[str, frozenset[str]]) -> dict:
    """The PlannedGap schema as one variant per kind, each with only the strategies that kind may use: a guided
    decoder cannot then give "my dog" a web search (measured: the tiny model did, on most requests)."""
    base = PlannedGap.model_json_schema()
    properties = dict(base["properties"])
    properties["memory_id"] = one_of(memory_ids)
    properties["id"] = one_of(gap_ids, nullable=False)
    variants = []
    for kind, strategies in allowed.items():
        props = {**properties, "kind": {"type": "string", "enum": [kind]},
                 "strategy": {"type": "string", "enum": sorted(strategies)}}
        variants.append({"type": "object", "properties": props, "required": ["kind", "strategy"]})
    return {"anyOf": variants, "title": "PlannedGap"}


def planner_output_for(memory_ids: list[str], allowed: dict[str, frozenset[str]]) -> type[PlannerOutput]:
    """PlannerOutput whose schema lets the model cite only the memory ids it was shown and only gap ids g1…g8, and
    give each kind of gap only the strategies that kind may use (`allowed`)."""
    gap_ids = [f"g{i + 1}" for i in range(MAX_PLANNED_GAPS)]
    return constrained(PlannerOutput, {  # type: ignore[return-value]
        ("$defs", "PlannedGap"): _gap_by_kind(memory_ids, gap_ids, allowed),
        ("$defs", "PlannedCheck", "properties", "gap_id"): one_of(gap_ids),
        ("properties", "gaps"): {"maxItems": MAX_PLANNED_GAPS},
        ("properties", "checklist"): {"maxItems": MAX_PLANNED_CHECKS},
        ("properties", "remember"): {"maxItems": MAX_REMEMBERED},
    })


def enricher_output_for(gap_ids: list[str]) -> type[EnricherOutput]:
    """EnricherOutput whose schema lets `used` cite only the filled gaps' ids."""
    return constrained(EnricherOutput, {  # type: ignore[return-value]
        ("$defs", "UsedFact", "properties", "gap_id"): one_of(gap_ids, nullable=False),
        ("properties", "used"): {"maxItems": MAX_USED if gap_ids else 0},
    })
