"""A fake OpenAI-compatible HTTP server for tests: a real aiohttp server on 127.0.0.1, scripted replies.

The real `openai` client talks to it over HTTP, so tests exercise the actual wire format, status codes, timeouts
and dropped connections. It serves `POST /v1/chat/completions` and `GET /v1/models`.

In an async test::

    from tests.fakes.openai_server import FakeOpenAI, Reply

    async with FakeOpenAI() as fake:
        fake.queue({"gaps": []}, Reply.rate_limited(), Reply.text("not json"))   # FIFO, one per request
        llm = OpenAICompatibleLLM("m", base_url=fake.base_url, api_key="sk-test")
        ...
        assert fake.requests[0].response_format_type == "json_schema"

From sync code or for a subprocess (a worker started with OPENAI_BASE_URL=fake.base_url)::

    fake = FakeOpenAI.start_in_thread(default={"ok": True})
    try: ...
    finally: fake.stop()

Scripting. For each request the first of these that applies answers it:

1. `fake.route(...)` rules, in the order added. A rule matches on any of (all given must hold):
   `schema="Plan"` — the structured-output name: `response_format.json_schema.name`, or in JSON mode the name the
   adapter writes into the system prompt (see `FakeRequest.schema_name`); `system_contains="..."`,
   `user_contains="..."` — substrings of the system / user text; `when=lambda req: ...` — any predicate.
   The rule's `reply` is a `Reply`, a dict/list (JSON content), a str (raw text content), a callable
   `(FakeRequest) -> reply`, or a list of those consumed one per matching request (the last one repeats; for a
   JSON array as content use `Reply.json([...])`).
   `times=N` retires the rule after N uses. So a pipeline test scripts each stage separately::

       fake.route(schema="PlanOutput", reply={"gaps": [...]})
       fake.route(schema="EnrichOutput", reply=lambda req: {"prompt": "..." + req.user[:20]})
       fake.route(system_contains="You are the critic", reply=[Reply.server_error(), {"score": 0.9}])

2. `fake.queue(*replies)` — a FIFO consumed one reply per request.
3. `default=` (constructor argument or attribute): a reply or callable used when nothing else applies.
4. Otherwise HTTP 400 "no scripted reply" (not retriable, so a mis-scripted test fails fast), and the request is
   also listed in `fake.unscripted`.

Replies (`Reply`):

- `Reply.json(obj)` (or just a dict/list): 200, `obj` serialized as the message content;
- `Reply.text("...")` (or just a str): 200 with raw text content (malformed JSON, prose, a fenced block);
- `Reply.error(status, message, retry_after=None, param=None, type=None)`: an OpenAI-style error body;
  shorthands `Reply.rate_limited(retry_after=0)`, `Reply.server_error(status=500)`,
  `Reply.schema_unsupported()` (400 about `response_format`, as servers without json_schema answer);
- `Reply.slow(seconds, then=reply)`: wait, then answer (the wait ends early when the server stops);
- `Reply.drop()`: close the connection without answering;
- `Reply.raw(status, body, content_type)`: any body (an HTML error page, a truncated JSON body);
- any of them take `usage=(prompt_tokens, completion_tokens)`; by default usage is estimated from the text
  (about 4 characters a token) and is always present in a 200.

Everything received is recorded in `fake.requests` (a list of `FakeRequest`: `.body` JSON, `.headers` with
lower-case names, `.model`, `.system`, `.user`, `.images` (data URLs), `.response_format_type`, `.schema_name`,
`.schema`). `require_api_key="sk-..."` makes requests without `Authorization: Bearer <key>` get a 401.
`models=[...]` is what `GET /v1/models` lists.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Optional, Union

from aiohttp import web

from benchmarks.threaded_fake import ThreadedFake

# Kept in step with infra.llm.JSON_MODE_MARKER (not imported: the fake has no dependency on the code under test).
_JSON_MODE_NAME = re.compile(r'Respond with one JSON object that matches the JSON Schema "([^"]+)"')


@dataclass
class Reply:
    """One scripted answer; build with the classmethods."""

    status: int = 200
    content: Optional[str] = None
    error_message: Optional[str] = None
    error_type: Optional[str] = None
    error_param: Optional[str] = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    drop_connection: bool = False
    raw_body: Optional[bytes] = None
    content_type: str = "application/json"
    usage: Optional[tuple[int, int]] = None
    finish_reason: str = "stop"

    @classmethod
    def json(cls, obj: Any, *, usage: Optional[tuple[int, int]] = None) -> "Reply":
        return cls(content=json.dumps(obj), usage=usage)

    @classmethod
    def text(cls, text: str, *, usage: Optional[tuple[int, int]] = None) -> "Reply":
        return cls(content=text, usage=usage)

    @classmethod
    def error(
        cls,
        status: int,
        message: str = "error",
        *,
        retry_after: Optional[float] = None,
        param: Optional[str] = None,
        type: Optional[str] = None,  # noqa: A002 - OpenAI's field name
    ) -> "Reply":
        headers = {}
        if retry_after is not None:
            headers["retry-after"] = f"{retry_after:g}"
        default_type = (
            "rate_limit_error" if status == 429 else "server_error" if status >= 500 else "invalid_request_error"
        )
        return cls(status=status, error_message=message, error_type=type or default_type, error_param=param,
                   headers=headers)

    @classmethod
    def rate_limited(cls, retry_after: Optional[float] = 0) -> "Reply":
        return cls.error(429, "Rate limit reached, slow down", retry_after=retry_after)

    @classmethod
    def server_error(cls, status: int = 500) -> "Reply":
        return cls.error(status, "The server had an error while processing your request")

    @classmethod
    def schema_unsupported(cls, status: int = 400) -> "Reply":
        return cls.error(status, "response_format of type 'json_schema' is not supported by this model",
                         param="response_format")

    @classmethod
    def slow(cls, seconds: float, then: Any = None) -> "Reply":
        reply = _coerce(then) if then is not None else cls.json({})
        reply.delay = seconds
        return reply

    @classmethod
    def drop(cls) -> "Reply":
        return cls(drop_connection=True)

    @classmethod
    def raw(cls, status: int, body: Union[str, bytes], content_type: str = "text/html") -> "Reply":
        data = body.encode() if isinstance(body, str) else body
        return cls(status=status, raw_body=data, content_type=content_type)


# A script entry: what a route, the queue or the default may hold.
Scripted = Union[Reply, dict, list, str, Callable[["FakeRequest"], Any]]


def _coerce(value: Any) -> Reply:
    if isinstance(value, Reply):
        return Reply(**{**value.__dict__, "headers": dict(value.headers)})  # a copy: replies may be reused
    if isinstance(value, (dict, list)):
        return Reply.json(value)
    if isinstance(value, str):
        return Reply.text(value)
    raise TypeError(f"cannot make a Reply from {type(value).__name__}")


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


@dataclass
class FakeRequest:
    """One request the fake received."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any
    at: float

    @property
    def messages(self) -> list[dict]:
        return list(self.body.get("messages") or []) if isinstance(self.body, dict) else []

    @property
    def model(self) -> Optional[str]:
        return self.body.get("model") if isinstance(self.body, dict) else None

    @property
    def system(self) -> str:
        return "\n".join(_text_of(m.get("content")) for m in self.messages if m.get("role") in ("system", "developer"))

    @property
    def user(self) -> str:
        return "\n".join(_text_of(m.get("content")) for m in self.messages if m.get("role") == "user")

    @property
    def images(self) -> list[str]:
        """The image URLs (data URLs from gapstream) in the user messages, in order."""
        urls = []
        for m in self.messages:
            content = m.get("content")
            if isinstance(content, list):
                for part in content:
                    if isinstance(part, dict) and part.get("type") == "image_url":
                        image = part.get("image_url")
                        urls.append(image.get("url") if isinstance(image, dict) else image)
        return urls

    @property
    def response_format(self) -> Optional[dict]:
        rf = self.body.get("response_format") if isinstance(self.body, dict) else None
        return rf if isinstance(rf, dict) else None

    @property
    def response_format_type(self) -> Optional[str]:
        rf = self.response_format
        return rf.get("type") if rf else None

    @property
    def schema(self) -> Optional[dict]:
        rf = self.response_format
        if rf and rf.get("type") == "json_schema":
            return (rf.get("json_schema") or {}).get("schema")
        return None

    @property
    def schema_name(self) -> Optional[str]:
        """`json_schema.name`, or in JSON mode the name gapstream's adapter writes into the system prompt."""
        rf = self.response_format
        if rf and rf.get("type") == "json_schema":
            return (rf.get("json_schema") or {}).get("name")
        found = _JSON_MODE_NAME.search(self.system)
        return found.group(1) if found else None

    @property
    def authorization(self) -> Optional[str]:
        return self.headers.get("authorization")


@dataclass
class _Route:
    reply: Any
    schema: Optional[str] = None
    system_contains: Optional[str] = None
    user_contains: Optional[str] = None
    when: Optional[Callable[[FakeRequest], bool]] = None
    times: Optional[int] = None
    used: int = 0

    def matches(self, req: FakeRequest) -> bool:
        if self.times is not None and self.used >= self.times:
            return False
        if self.schema is not None and req.schema_name != self.schema:
            return False
        if self.system_contains is not None and self.system_contains not in req.system:
            return False
        if self.user_contains is not None and self.user_contains not in req.user:
            return False
        if self.when is not None and not self.when(req):
            return False
        return True

    def take(self) -> Any:
        self.used += 1
        if isinstance(self.reply, list):  # a sequence of replies; a JSON array as content is Reply.json([...])
            return self.reply[min(self.used - 1, len(self.reply) - 1)] if self.reply else None
        return self.reply


class FakeOpenAI(ThreadedFake):
    """See the module docstring."""

    def __init__(
        self,
        *,
        default: Optional[Scripted] = None,
        require_api_key: Optional[str] = None,
        models: Iterable[str] = ("fake-model",),
        host: str = "127.0.0.1",
    ) -> None:
        self.default = default
        self.require_api_key = require_api_key
        self.models = list(models)
        self.host = host
        self.port: Optional[int] = None
        self.requests: list[FakeRequest] = []
        self.unscripted: list[FakeRequest] = []
        self.in_flight = self.max_in_flight = 0  # slow replies being waited on, now and at most
        self._routes: list[_Route] = []
        self._queue: list[Any] = []
        self._lock = threading.Lock()
        self._runner: Optional[web.AppRunner] = None
        self._stopping: Optional[asyncio.Event] = None
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._thread: Optional[threading.Thread] = None

    # -- scripting --------------------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        if self.port is None:
            raise RuntimeError("FakeOpenAI is not started")
        return f"http://{self.host}:{self.port}/v1"

    def queue(self, *replies: Scripted) -> "FakeOpenAI":
        with self._lock:
            self._queue.extend(replies)
        return self

    def route(
        self,
        *,
        reply: Any,
        schema: Optional[str] = None,
        system_contains: Optional[str] = None,
        user_contains: Optional[str] = None,
        when: Optional[Callable[[FakeRequest], bool]] = None,
        times: Optional[int] = None,
    ) -> "FakeOpenAI":
        with self._lock:
            self._routes.append(_Route(reply, schema, system_contains, user_contains, when, times))
        return self

    def queue_left(self) -> list[Any]:
        """The queued replies not used yet."""
        with self._lock:
            return list(self._queue)

    def reset(self) -> None:
        """Forget routes, queue and recorded requests (the default stays)."""
        with self._lock:
            self._routes.clear()
            self._queue.clear()
            self.requests.clear()
            self.unscripted.clear()

    @property
    def chat_requests(self) -> list[FakeRequest]:
        return [r for r in self.requests if r.path.endswith("/chat/completions")]

    def _pick(self, req: FakeRequest) -> Optional[Reply]:
        with self._lock:
            chosen: Any = None
            for rule in self._routes:
                if rule.matches(req):
                    chosen = rule.take()
                    break
            else:
                if self._queue:
                    chosen = self._queue.pop(0)
                else:
                    chosen = self.default
        while callable(chosen) and not isinstance(chosen, Reply):
            chosen = chosen(req)
        return None if chosen is None else _coerce(chosen)

    # -- HTTP -------------------------------------------------------------------------------------------------

    def _app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/chat/completions", self._chat)
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/models", self._models)
        return app

    async def _record(self, request: web.Request) -> FakeRequest:
        raw = await request.read()
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        rec = FakeRequest(request.method, request.path, {k.lower(): v for k, v in request.headers.items()}, body,
                          time.time())
        with self._lock:
            self.requests.append(rec)
        return rec

    def _auth_failure(self, rec: FakeRequest) -> Optional[web.Response]:
        if self.require_api_key is None or rec.authorization == f"Bearer {self.require_api_key}":
            return None
        return self._error_response(Reply.error(401, "Incorrect API key provided", type="invalid_request_error"))

    async def _models(self, request: web.Request) -> web.Response:
        rec = await self._record(request)
        failure = self._auth_failure(rec)
        if failure is not None:
            return failure
        data = [{"id": m, "object": "model", "created": 0, "owned_by": "fake"} for m in self.models]
        return web.json_response({"object": "list", "data": data})

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        rec = await self._record(request)
        failure = self._auth_failure(rec)
        if failure is not None:
            return failure
        try:
            reply = self._pick(rec)
        except Exception as exc:  # a responder that raised: answer 500 so the test sees it
            return self._error_response(Reply.error(500, f"FakeOpenAI responder raised {type(exc).__name__}: {exc}"))
        if reply is None:
            with self._lock:
                self.unscripted.append(rec)
            return self._error_response(Reply.error(400, "FakeOpenAI: no scripted reply for this request"))
        if reply.delay > 0 and self._stopping is not None:
            # Slow replies overlap only if the client has several calls in flight: tests read `max_in_flight`.
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            try:
                await asyncio.wait_for(self._stopping.wait(), reply.delay)
            except asyncio.TimeoutError:
                pass
            finally:
                self.in_flight -= 1
        if reply.drop_connection:
            transport = request.transport
            if transport is not None:
                transport.abort()
            raise asyncio.CancelledError  # nothing more to send on a dropped connection
        if reply.raw_body is not None:
            return web.Response(status=reply.status, body=reply.raw_body, content_type=reply.content_type,
                                headers=reply.headers)
        if reply.status >= 400:
            return self._error_response(reply)
        return self._completion(rec, reply)

    @staticmethod
    def _error_response(reply: Reply) -> web.Response:
        body = {"error": {"message": reply.error_message or "error", "type": reply.error_type,
                          "param": reply.error_param, "code": None}}
        return web.json_response(body, status=reply.status, headers=reply.headers)

    def _completion(self, rec: FakeRequest, reply: Reply) -> web.Response:
        content = reply.content or ""
        if reply.usage is not None:
            prompt_tokens, completion_tokens = reply.usage
        else:
            prompt_tokens = max(1, (len(rec.system) + len(rec.user)) // 4) + 8 * len(rec.images)
            completion_tokens = max(1, len(content) // 4)
        body = {
            "id": f"chatcmpl-fake-{len(self.requests)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": rec.model or (self.models[0] if self.models else "fake-model"),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                         "finish_reason": reply.finish_reason, "logprobs": None}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens},
        }
        return web.json_response(body, status=reply.status, headers=reply.headers)

    # -- lifecycle --------------------------------------------------------------------------------------------

    async def start(self, port: int = 0) -> "FakeOpenAI":
        self._stopping = asyncio.Event()
        self._runner = web.AppRunner(self._app(), access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, port)
        await site.start()
        server = site._server  # the bound port, when 0 was asked for
        self.port = server.sockets[0].getsockname()[1] if server and server.sockets else port
        return self

    async def close(self) -> None:
        if self._stopping is not None:
            self._stopping.set()
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def __aenter__(self) -> "FakeOpenAI":
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def __enter__(self) -> "FakeOpenAI":  # `with FakeOpenAI.start_in_thread() as fake:`
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
