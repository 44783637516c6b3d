"""`StructuredLLM` over any OpenAI-compatible chat endpoint (OpenAI, vLLM, Ollama, LM Studio, llama.cpp server).

How a call goes:

- The request asks for structured output with `response_format={"type": "json_schema", ...}` built from the
  pydantic model's JSON Schema (`strict: False`, so servers that only guide decoding still accept it). A server that
  rejects it (a 400/422 whose error concerns `response_format` / `json_schema`; llama-cpp-python's server answers
  500 with a validation error naming `response_format`) is asked again at once in JSON mode with the schema beside
  it (`{"type": "json_object", "schema": …}`, which llama.cpp turns into a grammar) and written into the system
  prompt; a server that rejects that too gets plain `{"type": "json_object"}`. The instance remembers the level and
  uses it for every later call. `max_tokens` bounds every answer.
- An answer whose list entries are partly invalid keeps the valid ones (`infra/llm_json.salvage`);
  `LLMReply.dropped` says what was dropped.
- The answer is parsed leniently (a ```json fenced block, prose around the object) and validated with
  `output.model_validate`; anything unusable is `LLMError(kind="invalid_output", retriable=False)` with a short
  reason, never the model's whole answer.
- Each attempt is bounded by the client timeout and, around it, an `asyncio.wait_for` guard a little longer, so no
  call can hang. 429, 5xx, timeouts and connection errors are retried (`retries` more attempts, exponential backoff,
  a small Retry-After honoured); other 4xx are not. The openai client's own retries are off (`max_retries=0`), so
  every retry decision here reads the error's type and status, not its text.
- Secrets: the API key is held only by the openai client. No log line, exception message, reply or metric made here
  carries it or the Authorization header; server error text is scrubbed of the key and anything key-shaped before it
  goes into an `LLMError`, and exceptions are raised `from None` so a logged traceback does not carry the client's
  own exception either.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import random
import re
import time
from typing import Any, Optional, Sequence

from pydantic import BaseModel, ValidationError

from agents.ports import LLMError, LLMReply, T
from infra.llm_json import extract_json_object, salvage, short_validation_reason  # noqa: F401 - re-exported

log = logging.getLogger("gapstream.llm")

INSTALL_HINT = "pip install 'gapstream[llm]'"
# A Retry-After up to this many seconds is honoured as given; a longer one is capped to it (the call stays bounded).
MAX_RETRY_AFTER_S = 10.0
# Marker line written into the system prompt in JSON mode; tests/fakes/openai_server.py reads the schema name from it.
JSON_MODE_MARKER = "Respond with one JSON object that matches the JSON Schema"

_KEYISH = re.compile(r"(?i)(bearer\s+)[^\s\"',;]+|\b(sk|pk|rk)-[A-Za-z0-9_\-*.]{6,}")


def _import_openai() -> Any:
    try:
        import openai
    except ImportError as exc:  # pragma: no cover - exercised only where the extra is missing
        raise ImportError(
            f"the OpenAI-compatible LLM backend needs the `openai` package: {INSTALL_HINT}"
        ) from exc
    return openai


def _mime(data: bytes) -> str:
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "image/png"
    if data[:3] == b"\xff\xd8\xff":
        return "image/jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    return "image/png"


def image_data_url(data: bytes) -> str:
    return f"data:{_mime(data)};base64,{base64.b64encode(data).decode('ascii')}"


class OpenAICompatibleLLM:
    """`StructuredLLM` over the official `openai` async client; see the module docstring."""

    def __init__(
        self,
        model: str,
        *,
        base_url: Optional[str],
        api_key: Optional[str],
        timeout_s: float = 30.0,
        retries: int = 2,
        backoff_s: float = 0.5,
        max_tokens: Optional[int] = None,
    ) -> None:
        if not model:
            raise ValueError("model must be a non-empty model name")
        if timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        if retries < 0:
            raise ValueError("retries must be >= 0")
        openai = _import_openai()
        self._openai = openai
        self.model = model
        self.base_url = base_url
        self.timeout_s = float(timeout_s)
        self.retries = int(retries)
        self.backoff_s = max(0.0, float(backoff_s))
        self._secrets = tuple(s for s in (api_key,) if s and len(s) >= 4)
        self._client = openai.AsyncOpenAI(
            base_url=base_url, api_key=api_key or "not-needed", timeout=self.timeout_s, max_retries=0
        )
        self.max_tokens = int(max_tokens) if max_tokens else None
        # 0: json_schema; 1: json_object with the schema beside it; 2: plain json_object. Only ever goes up.
        self._format_level = 0
        self.closed = False

    def __repr__(self) -> str:
        return f"OpenAICompatibleLLM(model={self.model!r}, base_url={self._display_url()!r})"

    def _display_url(self) -> Optional[str]:
        if not self.base_url:
            return None
        return re.sub(r"//[^/@]*@", "//***@", self.base_url)  # never show user:password@ from a URL

    @property
    def json_mode(self) -> bool:
        """True when this instance has fallen back from json_schema to JSON mode."""
        return self._format_level > 0

    async def aclose(self) -> None:
        if not self.closed:
            self.closed = True
            await self._client.close()

    # -- the port ---------------------------------------------------------------------------------------------

    async def complete(
        self, *, system: str, user: str, output: type[T], images: Sequence[bytes] = ()
    ) -> LLMReply[T]:
        started = time.monotonic()
        attempts = 0
        retries_used = 0
        prompt_tokens = completion_tokens = 0
        user_content: Any = user
        if images:
            user_content = [{"type": "text", "text": user}] + [
                {"type": "image_url", "image_url": {"url": image_data_url(bytes(img))}} for img in images
            ]
        while True:
            attempts += 1
            level = self._format_level
            try:
                response = await self._call(system, user_content, output, level)
            except LLMError as err:
                if err.kind == "schema_unsupported" and level < 2:
                    # The server does not take this structured-output form: ask again at once one level down, and
                    # from now on.
                    self._format_level = level + 1
                    log.warning(
                        "model %s at %s rejected %s output; using %s from now on",
                        self.model, self._display_url() or "the default endpoint",
                        ("json_schema", "json_object with a schema")[level],
                        ("json_object with a schema", "plain json_object")[level],
                    )
                    continue
                if err.kind == "schema_unsupported":
                    err = LLMError(str(err), retriable=False, kind="http_error")
                if not err.retriable or retries_used >= self.retries:
                    log.warning(
                        "model %s call failed after %d attempt(s): %s (%s)", self.model, attempts, err.kind, err
                    )
                    raise err from None
                retries_used += 1
                delay = self._delay(retries_used, getattr(err, "retry_after", None))
                log.info(
                    "model %s: %s on attempt %d, retrying in %.2fs", self.model, err.kind, attempts, delay
                )
                await asyncio.sleep(delay)
                continue
            usage = getattr(response, "usage", None)
            prompt_tokens += int(getattr(usage, "prompt_tokens", 0) or 0)
            completion_tokens += int(getattr(usage, "completion_tokens", 0) or 0)
            parsed, dropped = self._parse(response, output)
            return LLMReply(
                output=parsed,
                model=self.model,
                prompt_tokens=prompt_tokens,
                completion_tokens=completion_tokens,
                seconds=round(time.monotonic() - started, 6),
                attempts=attempts,
                dropped=tuple(dropped),
            )

    # -- one attempt ------------------------------------------------------------------------------------------

    def _messages(self, system: str, user_content: Any, output: type[BaseModel], level: int) -> list[dict]:
        if level > 0:
            schema = json.dumps(output.model_json_schema(), separators=(",", ":"))
            system = (
                f"{system}\n\n{JSON_MODE_MARKER} \"{output.__name__}\" below. "
                f"Output only the JSON object, no prose.\n{schema}"
            )
        return [{"role": "system", "content": system}, {"role": "user", "content": user_content}]

    def _response_format(self, output: type[BaseModel], level: int) -> dict:
        if level == 1:
            return {"type": "json_object", "schema": output.model_json_schema()}
        if level == 2:
            return {"type": "json_object"}
        return {
            "type": "json_schema",
            "json_schema": {"name": output.__name__, "schema": output.model_json_schema(), "strict": False},
        }

    async def _call(self, system: str, user_content: Any, output: type[BaseModel], level: int) -> Any:
        openai = self._openai
        extra = {"max_tokens": self.max_tokens} if self.max_tokens else {}
        request = self._client.chat.completions.create(
            model=self.model,
            messages=self._messages(system, user_content, output, level),
            response_format=self._response_format(output, level),
            **extra,
        )
        guard = self.timeout_s * 1.1 + 0.5
        try:
            return await asyncio.wait_for(request, timeout=guard)
        except (asyncio.TimeoutError, openai.APITimeoutError):
            raise LLMError(
                f"{self.model}: no answer within {self.timeout_s:g}s", retriable=True, kind="timeout"
            ) from None
        except openai.APIConnectionError as exc:
            cause = type(exc.__cause__).__name__ if exc.__cause__ is not None else "connection error"
            raise LLMError(
                f"{self.model}: endpoint {self._display_url() or '(default)'} unreachable ({cause})",
                retriable=True, kind="unreachable",
            ) from None
        except openai.APIStatusError as exc:
            raise self._status_error(exc) from None
        except openai.APIError as exc:  # e.g. a response body the client could not read
            raise LLMError(
                f"{self.model}: bad response ({type(exc).__name__}: {self._scrub(str(exc))[:200]})",
                retriable=False, kind="invalid_output",
            ) from None
        except openai.OpenAIError as exc:
            raise LLMError(
                f"{self.model}: client error ({type(exc).__name__}: {self._scrub(str(exc))[:200]})",
                retriable=False, kind="http_error",
            ) from None

    def _status_error(self, exc: Any) -> LLMError:
        status = int(getattr(exc, "status_code", 0) or 0)
        detail = self._error_detail(exc)
        text = f"{self.model}: HTTP {status}" + (f" ({detail})" if detail else "")
        rejected = status in (400, 422) or (status == 500 and "validation error" in detail.lower())
        if rejected and self._about_response_format(exc, detail):
            return LLMError(text, retriable=False, kind="schema_unsupported")
        if status == 429:
            err = LLMError(text, retriable=True, kind="rate_limited")
            err.retry_after = self._retry_after(exc)  # type: ignore[attr-defined]
            return err
        if status >= 500:
            err = LLMError(text, retriable=True, kind="server_error")
            err.retry_after = self._retry_after(exc)  # type: ignore[attr-defined]
            return err
        return LLMError(text, retriable=False, kind="http_error")

    @staticmethod
    def _about_response_format(exc: Any, detail: str) -> bool:
        param = str(getattr(exc, "param", "") or "")
        haystack = f"{param} {detail}".lower()
        return any(word in haystack for word in ("response_format", "json_schema", "response format", "json schema"))

    def _error_detail(self, exc: Any) -> str:
        body = getattr(exc, "body", None)
        message: Any = None
        if isinstance(body, dict):
            inner = body.get("error", body)
            message = inner.get("message") if isinstance(inner, dict) else inner
            if message is None and isinstance(body.get("detail"), (str, list)):
                message = body.get("detail")
        elif isinstance(body, str):
            message = body
        if message is None:
            return ""
        return self._scrub(" ".join(str(message).split()))[:200]

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return _KEYISH.sub(lambda m: f"{m.group(1)}***" if m.group(1) else "***", text)

    @staticmethod
    def _retry_after(exc: Any) -> Optional[float]:
        response = getattr(exc, "response", None)
        headers = getattr(response, "headers", None)
        if headers is None:
            return None
        for name, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
            raw = headers.get(name)
            if raw is None:
                continue
            try:
                value = float(raw) / scale
            except ValueError:
                continue  # an HTTP date: not worth parsing for a bounded retry
            if value >= 0:
                return value
        return None

    def _delay(self, retry_number: int, retry_after: Optional[float]) -> float:
        if retry_after is not None:
            return min(retry_after, MAX_RETRY_AFTER_S)
        base = self.backoff_s * (2 ** (retry_number - 1))
        return base * (1.0 + 0.25 * random.random())

    def _parse(self, response: Any, output: type[T]) -> tuple[T, list[str]]:
        name = output.__name__
        choices = getattr(response, "choices", None) or []
        if not choices:
            raise LLMError(f"{self.model}: answer has no choices", retriable=False, kind="invalid_output")
        message = getattr(choices[0], "message", None)
        content = getattr(message, "content", None)
        if not isinstance(content, str) or not content.strip():
            refusal = getattr(message, "refusal", None)
            reason = "model refused" if refusal else "empty answer"
            raise LLMError(f"{self.model}: {reason}", retriable=False, kind="invalid_output")
        try:
            data = extract_json_object(content)
        except ValueError as exc:
            raise LLMError(
                f"{self.model}: answer is not JSON ({exc}; {len(content)} chars)",
                retriable=False, kind="invalid_output",
            ) from None
        try:
            return output.model_validate(data), []
        except ValidationError as exc:
            first = exc
        # Small models often wrap the object: {"Plan": {...}} or {"properties": {...}}.
        candidates = [data]
        if isinstance(data, dict) and len(data) == 1:
            (inner,) = data.values()
            if isinstance(inner, dict):
                candidates.append(inner)
                try:
                    return output.model_validate(inner), []
                except ValidationError:
                    pass
        for candidate in candidates:  # partly valid: keep the list entries that validate
            kept, dropped = salvage(output, candidate)
            if kept is not None:
                return kept, dropped
        raise LLMError(
            f"{self.model}: {short_validation_reason(first, name)}", retriable=False, kind="invalid_output"
        ) from None
