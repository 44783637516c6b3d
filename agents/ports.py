"""The small Protocols the stages call. Adapters live in `infra/`; tests pass fakes or real local servers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generic, Literal, Optional, Protocol, Sequence, TypeVar, runtime_checkable

from pydantic import BaseModel

from schemas.records import Fact, Gap, Hit, ImageRequest, LLMCall, MemoryItem


@runtime_checkable
class MemoryStore(Protocol):
    """Per-user memory. Items come back oldest first; adding an item whose id exists is a no-op (idempotent)."""

    async def items(self, user_id: str) -> list[MemoryItem]: ...

    async def add(self, user_id: str, items: Sequence[MemoryItem]) -> list[MemoryItem]:
        """Store the items that are new; return those actually added."""
        ...

    async def forget(self, user_id: str, item_id: Optional[str] = None) -> int:
        """Delete one item, or all of the user's memory; return how many items were removed."""
        ...

    async def turn(self, user_id: str, request_id: str) -> Optional[str]:
        """The JSON of the user's earlier request (`agents.learning.Turn`) that a follow-up starts from, or None:
        another user's request id is simply not under this user's keys."""
        ...

    async def put_turn(self, user_id: str, request_id: str, turn_json: str, expires_at: str) -> bool:
        """Keep a finished request's turn until `expires_at` (ISO 8601), with the user's history; False when it
        was there already (a redelivered result)."""
        ...


QuestionState = Literal["waiting", "answered", "expired"]


@dataclass(frozen=True)
class WaitingQuestion:
    """What the planner keeps while a request waits for its user's answer: enough to resume it."""

    request: ImageRequest
    gap: Gap
    question: str


@dataclass(frozen=True)
class QuestionStatus:
    """Where a question stands. After `resolve`, `previous` is the state it was in: only the caller that moved it
    out of `waiting` acts on it, so an answer and the expiry sweep racing at the deadline agree on one outcome."""

    state: QuestionState
    user_id: str
    waiting: WaitingQuestion
    previous: Optional[QuestionState] = None


@runtime_checkable
class PendingQuestions(Protocol):
    """Requests waiting for the answer to a clarifying question, one question per request (issue 6)."""

    async def put(self, waiting: WaitingQuestion, deadline: float, keep_s: int) -> bool:
        """Start waiting until `deadline` (epoch seconds), kept `keep_s` longer for late answers; False when this
        request was asked already (a redelivery)."""
        ...

    async def peek(self, request_id: str) -> Optional[QuestionStatus]:
        """The question's status without changing it, or None when no question was asked (or it is forgotten)."""
        ...

    async def resolve(self, request_id: str, wanted: Literal["answered", "expired"],
                      now: Optional[float] = None) -> Optional[QuestionStatus]:
        """Move a waiting question to `wanted` (an answer after the deadline expires it instead); a question no
        longer waiting keeps its state. None when unknown."""
        ...

    async def due(self, now: Optional[float] = None, limit: int = 100) -> list[str]:
        """Request ids whose question's deadline has passed, oldest first."""
        ...


@runtime_checkable
class VectorStore(Protocol):
    """What a `MemoryStore` may also keep: one embedding per memory item and model, stored beside the item (so it is
    computed once, not per request) and removed with it by `forget`."""

    async def vectors(self, user_id: str, model: str) -> dict[str, bytes]: ...

    async def put_vectors(self, user_id: str, model: str, vectors: dict[str, bytes]) -> None: ...


@runtime_checkable
class Embedder(Protocol):
    """Sentence embeddings: unit-length float32 vectors of `dim` numbers, one per text, in order. Blocking work
    happens off the event loop inside the adapter; the same text always gives the same vector."""

    model: str
    dim: int

    async def embed(self, texts: Sequence[str]) -> "list[Vector]": ...


Vector = object  # numpy.ndarray of float32, shape (dim,); a name so the Protocol does not import numpy


@runtime_checkable
class SearchBackend(Protocol):
    """Hits for a query. `name` labels every hit and search in the result trace ("corpus", "serpapi")."""

    name: str

    async def search(self, query: str, limit: int = 5) -> list[Hit]: ...


class SearchError(Exception):
    """A search that gave no usable answer. `retriable` says whether trying again may help; `kind` is one of
    "unauthorized", "bad_request", "rate_limited", "server_error", "timeout", "unreachable", "invalid_response",
    "budget_exhausted". Messages never hold credentials."""

    def __init__(self, message: str, *, retriable: bool, kind: str, attempts: int = 1) -> None:
        super().__init__(message)
        self.retriable = retriable
        self.kind = kind
        self.attempts = attempts


@dataclass(frozen=True)
class SearchOutcome:
    """Hits plus where they came from: `cached` (served from the result cache) or `coalesced` (shared with an
    identical query in flight)."""

    hits: list[Hit]
    cached: bool = False
    coalesced: bool = False


@runtime_checkable
class MetaSearchBackend(SearchBackend, Protocol):
    """A backend that can say whether a result was served from cache; the Searcher prefers this when present."""

    async def search_with_meta(self, query: str, limit: int = 5) -> SearchOutcome: ...


@runtime_checkable
class PageReader(Protocol):
    """Plain text of a web page (bounded in bytes and time by the adapter); raises on failure."""

    async def read(self, url: str) -> str: ...


@dataclass(frozen=True)
class FactExtraction:
    """What a fact extractor found: facts (each naming a hit's `source`) and the model calls it made."""

    facts: list[Fact]
    llm_calls: list[LLMCall] = field(default_factory=list)


@runtime_checkable
class FactExtractor(Protocol):
    """Facts for a gap from its (sanitised, ranked) hits, e.g. by a language model. The Searcher keeps only facts
    whose `source` is one of the hits', re-sanitises their text and takes backend and date from the hit; when the
    extractor raises or finds nothing, the heuristic (most relevant sentences) is used instead."""

    async def extract(self, gap: Gap, hits: Sequence[Hit]) -> "FactExtraction | list[Fact]": ...


@dataclass(frozen=True)
class GenerationJob:
    prompt: str
    negative_prompt: str
    width: int
    height: int
    steps: int
    guidance: float
    seed: int

    def batch_key(self) -> tuple[int, int, int, float]:
        """Jobs with the same key can share one pipeline call."""
        return (self.width, self.height, self.steps, self.guidance)


@dataclass(frozen=True)
class GenerationDefaults:
    width: int
    height: int
    steps: int
    guidance: float
    max_side: int


@runtime_checkable
class TextToImage(Protocol):
    """A blocking text-to-image model; callers run it off the event loop."""

    model_name: str
    defaults: GenerationDefaults

    def generate(self, jobs: Sequence[GenerationJob]) -> list["PILImage"]: ...


@runtime_checkable
class ImageStore(Protocol):
    def put(self, data: bytes, name: str) -> str:
        """Store bytes under a name; return the URI."""
        ...

    def get(self, uri: str) -> bytes: ...


PILImage = object  # PIL.Image.Image; kept as a name so agents/ does not import Pillow at import time


class LLMError(Exception):
    """A model call that did not give a usable answer. `retriable` says whether trying again may help."""

    def __init__(self, message: str, *, retriable: bool, kind: str) -> None:
        super().__init__(message)
        self.retriable = retriable
        self.kind = kind  # "unreachable", "timeout", "rate_limited", "server_error", "http_error", "invalid_output"


T = TypeVar("T", bound=BaseModel)


@dataclass(frozen=True)
class LLMReply(Generic[T]):
    output: T
    model: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    attempts: int = 1
    # What the adapter dropped from a partly valid answer ("gaps[2].kind: …"); the rest is `output`.
    dropped: tuple[str, ...] = ()


@runtime_checkable
class StructuredLLM(Protocol):
    """A chat model that answers with JSON validated into `output` (a pydantic model).

    Adapters retry retriable failures themselves (bounded) and raise `LLMError` when they give up; `images` are PNG
    bytes sent alongside the user text, for vision models.
    """

    model: str

    async def complete(
        self, *, system: str, user: str, output: type[T], images: Sequence[bytes] = ()
    ) -> LLMReply[T]: ...
