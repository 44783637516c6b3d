"""An in-process `StructuredLLM` that answers from a script, for the unit tests of the model-backed stages."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence, Union

from pydantic import BaseModel, ValidationError

from agents.ports import LLMError, LLMReply

# One scripted answer: a dict or model instance (validated into the requested output, as the real adapter does),
# an exception to raise, or a function of the call that returns either.
Answer = Union[dict, BaseModel, BaseException, Callable[["Call"], Any]]


@dataclass
class Call:
    system: str
    user: str
    output: type
    images: list[bytes]


class ScriptedLLM:
    """Answers calls in order from `script`; the last answer repeats. Every call is kept in `calls`."""

    def __init__(self, *script: Answer, model: str = "fake-model", prompt_tokens: int = 120,
                 completion_tokens: int = 40) -> None:
        if not script:
            raise ValueError("a script needs at least one answer")
        self.model = model
        self.script = list(script)
        self.calls: list[Call] = []
        self.prompt_tokens = prompt_tokens
        self.completion_tokens = completion_tokens

    async def complete(self, *, system: str, user: str, output: type, images: Sequence[bytes] = ()) -> LLMReply:
        call = Call(system=system, user=user, output=output, images=list(images))
        self.calls.append(call)
        answer = self.script[min(len(self.calls), len(self.script)) - 1]
        if callable(answer) and not isinstance(answer, (BaseModel, type)):
            answer = answer(call)
        if isinstance(answer, BaseException):
            raise answer
        data = answer.model_dump() if isinstance(answer, BaseModel) else answer
        try:
            parsed = output.model_validate(data)
        except ValidationError as exc:
            raise LLMError(f"{self.model}: answer does not match {output.__name__}: {exc.error_count()} errors",
                           retriable=False, kind="invalid_output") from None
        return LLMReply(output=parsed, model=self.model, prompt_tokens=self.prompt_tokens,
                        completion_tokens=self.completion_tokens, seconds=0.01, attempts=1)


def unreachable() -> LLMError:
    return LLMError("fake-model: endpoint unreachable (ConnectError)", retriable=True, kind="unreachable")


class ByOutput:
    """Routes each call to the answer for its output model, so one fake can serve all three stages."""

    def __init__(self, answers: dict[type, Answer]) -> None:
        self.answers = answers

    def __call__(self, call: Call) -> Any:
        # The stages send narrowed subclasses of their output models (schemas with enums); match by base class.
        answer = next(a for out, a in self.answers.items() if issubclass(call.output, out))
        return answer(call) if callable(answer) and not isinstance(answer, BaseModel) else answer
