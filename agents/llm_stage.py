"""What the three model-backed stages share: one timed call, the trace entry it leaves, and what happens when the
model is unreachable or its answer fails the stage's checks (heuristic fallback, or a non-retriable error that the
wiring dead-letters).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal, Optional, Sequence, TypeVar

from pydantic import BaseModel

from agents.ports import LLMError, LLMReply, StructuredLLM
from agents.prompt_templates import Template
from schemas.records import Degraded, GapsRecord, LLMCall

OnError = Literal["fallback", "dead-letter"]
ON_ERROR: tuple[str, ...] = ("fallback", "dead-letter")
E = TypeVar("E", bound=GapsRecord)


class Rejected(Exception):
    """The model answered, but the answer failed a stage's own checks (an unknown id, an invented fact, …)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def check_llm(llm: object, what: str = "llm") -> StructuredLLM:
    if llm is None or not callable(getattr(llm, "complete", None)) or not isinstance(getattr(llm, "model", None), str):
        raise ValueError(f"{what} must be a StructuredLLM (needs .model and async .complete)")
    return llm  # type: ignore[return-value]


def check_on_error(value: str) -> str:
    if value not in ON_ERROR:
        raise ValueError(f"on_error must be one of {', '.join(ON_ERROR)}, got {value!r}")
    return value


@dataclass
class ModelCall:
    """One call's bookkeeping: started before the call so a failure still reports its time and tokens spent."""

    llm: StructuredLLM
    template: Template
    stage: str
    round: int
    started: float = 0.0
    reply: Optional[LLMReply] = None

    async def run(self, user: str, output: type[BaseModel], images: Sequence[bytes] = ()) -> BaseModel:
        self.started = time.perf_counter()
        self.reply = await self.llm.complete(system=self.template.system, user=user, output=output, images=images)
        if not isinstance(self.reply.output, output):
            raise Rejected(f"model answered {type(self.reply.output).__name__}, not {output.__name__}")
        return self.reply.output

    @property
    def model(self) -> str:
        return (self.reply.model if self.reply and self.reply.model else None) or self.llm.model

    def trace(self, outcome: str = "ok") -> LLMCall:
        reply = self.reply
        seconds = reply.seconds if reply and reply.seconds else time.perf_counter() - self.started
        return LLMCall(
            stage=self.stage,
            model=self.model,
            template=self.template.ref,
            round=self.round,
            prompt_tokens=reply.prompt_tokens if reply else 0,
            completion_tokens=reply.completion_tokens if reply else 0,
            seconds=round(max(seconds, 0.0), 6),
            attempts=reply.attempts if reply else 1,
            outcome=outcome,
        )

    def failed(self, exc: Exception, on_error: str) -> tuple[Degraded, LLMCall]:
        """(degraded reason, trace entry) for a fallback; raises a non-retriable LLMError in dead-letter mode."""
        if isinstance(exc, LLMError):
            kind = exc.kind
            note = f"{self.stage}: model unavailable ({kind}): heuristic fallback"
        elif isinstance(exc, Rejected):
            kind = "invalid_output"
            note = f"{self.stage}: {exc.reason}: heuristic fallback"
        else:  # pragma: no cover - callers only pass the two kinds above
            raise exc
        if on_error == "dead-letter":
            # Not retriable: the same input would meet the same model, and the wiring dead-letters these at once.
            reason = note.removesuffix(": heuristic fallback")
            raise LLMError(reason, retriable=False, kind=kind) from exc
        return Degraded(stage=self.stage, kind="llm_fallback", detail=note), self.trace(outcome=f"fallback: {kind}")


def partial(stage: str, what: str) -> Degraded:
    """The reason for a model answer kept in part: `what` says what was dropped or repaired."""
    detail = f"{stage}: kept the valid part of the model's answer; {what}"
    return Degraded(stage=stage, kind="llm_partial", detail=detail[:500])


def with_trace(record: E, call: LLMCall, notes: Sequence[Degraded] = ()) -> E:
    """A copy of the record with one more model call and any degraded reasons added to its trace."""
    return record.model_copy(update={
        "llm_calls": [*record.llm_calls, call],
        "degraded": [*record.degraded, *notes],
    })
