"""A fake SerpAPI HTTP server for benchmarks and tests: a real aiohttp server on 127.0.0.1, scripted per query.

The real `serpapi` client (requests) talks to it over HTTP — point `SerpApiSearch(base_url=fake.base_url)` or
`GAPSTREAM_SERPAPI_URL` at it. It serves `GET /search` (what the client calls) and `/search.json`, with JSON shaped
like SerpAPI's: `search_metadata`, `search_parameters`, `answer_box`, `knowledge_graph`, `top_stories`,
`organic_results`, and SerpAPI's error bodies (`{"error": "..."}`).

    async with FakeSerpApi(api_key="k") as fake:
        fake.script("lantern fair 2026", SerpReply.results(organic=[...], answer_box={...}))
        fake.script("flaky", SerpReply.server_error(), SerpReply.results(organic=[...]))   # one per call; last repeats
        fake.default = SerpReply.echo(delay=0.2)   # organic results that mention whatever was asked
        ...
        assert fake.calls_for("lantern fair 2026") == 1

or, from sync code (a benchmark, a subprocess worker): `fake = FakeSerpApi.start_in_thread(...)`, `fake.stop()`.

Queries are matched case- and whitespace-insensitively. Requests with another `api_key` get SerpAPI's 401. Each
request is recorded in `fake.calls` (`FakeCall(query, params, path)`), so tests count upstream calls.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Union

from aiohttp import web

from benchmarks.threaded_fake import ThreadedFake


def normalise_query(query: str) -> str:
    return re.sub(r"\s+", " ", query or "").strip().lower()


@dataclass
class SerpReply:
    """One scripted answer; build with the classmethods."""

    status: int = 200
    body: Any = None  # a dict (JSON) or bytes (raw)
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    echo_query: bool = False

    @classmethod
    def results(cls, *, organic: Optional[list[dict]] = None, answer_box: Optional[dict] = None,
                knowledge_graph: Optional[dict] = None, top_stories: Optional[list[dict]] = None,
                delay: float = 0.0, **extra: Any) -> "SerpReply":
        body: dict[str, Any] = {}
        if answer_box is not None:
            body["answer_box"] = answer_box
        if knowledge_graph is not None:
            body["knowledge_graph"] = knowledge_graph
        if top_stories is not None:
            body["top_stories"] = top_stories
        if organic is not None:
            body["organic_results"] = [{"position": i + 1, **r} for i, r in enumerate(organic)]
        body.update(extra)
        return cls(body=body, delay=delay)

    @classmethod
    def echo(cls, delay: float = 0.0) -> "SerpReply":
        """Three organic results that mention the query (for benchmarks and load tests)."""
        return cls(echo_query=True, delay=delay)

    @classmethod
    def error(cls, status: int, message: str, *, retry_after: Optional[int] = None) -> "SerpReply":
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
        return cls(status=status, body={"error": message}, headers=headers)

    @classmethod
    def unauthorized(cls) -> "SerpReply":
        return cls.error(401, "Invalid API key. Your API key should be here: https://serpapi.com/manage-api-key")

    @classmethod
    def rate_limited(cls, retry_after: Optional[int] = None) -> "SerpReply":
        return cls.error(429, "Your account has run out of searches.", retry_after=retry_after)

    @classmethod
    def server_error(cls, status: int = 500) -> "SerpReply":
        return cls(status=status, body=b"<html><body>Internal Server Error</body></html>", content_type="text/html")

    @classmethod
    def no_results(cls) -> "SerpReply":
        return cls(body={"error": "Google hasn't returned any results for this query."})

    @classmethod
    def malformed(cls) -> "SerpReply":
        return cls(body=b'{"organic_results": [{"title": "cut', content_type="application/json")

    @classmethod
    def slow(cls, seconds: float, then: Optional["SerpReply"] = None) -> "SerpReply":
        reply = then or cls.results(organic=[])
        return SerpReply(reply.status, reply.body, reply.content_type, dict(reply.headers), seconds, reply.echo_query)


Script = Union[SerpReply, Callable[[str], SerpReply]]


@dataclass
class FakeCall:
    query: str
    params: dict[str, str]
    path: str


class FakeSerpApi(ThreadedFake):
    def __init__(self, *, api_key: str = "test-serpapi-key", default: Optional[Script] = None) -> None:
        self.api_key = api_key
        self.default: Optional[Script] = default
        self.scripts: dict[str, list[Script]] = {}
        self.calls: list[FakeCall] = []
        self.base_url = ""
        self._runner: Optional[web.AppRunner] = None
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._thread: Optional[threading.Thread] = None
        self._closing: Optional[asyncio.Event] = None  # created on the server's loop in start()

    def script(self, query: str, *replies: Script) -> None:
        """Answers for `query`, one per call; the last one repeats."""
        self.scripts[normalise_query(query)] = list(replies)

    def calls_for(self, query: str) -> int:
        return sum(1 for call in self.calls if normalise_query(call.query) == normalise_query(query))

    def _reply_for(self, query: str) -> Optional[SerpReply]:
        queue = self.scripts.get(normalise_query(query))
        script: Optional[Script] = None
        if queue:
            script = queue.pop(0) if len(queue) > 1 else queue[0]
        elif self.default is not None:
            script = self.default
        return script(query) if callable(script) else script

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        params = dict(request.query)
        query = params.get("q", "")
        self.calls.append(FakeCall(query=query, params={k: v for k, v in params.items() if k != "api_key"},
                                   path=request.path))
        if params.get("api_key") != self.api_key:
            reply = SerpReply.unauthorized()
        else:
            reply = self._reply_for(query) or SerpReply.error(400, f"no scripted reply for {query!r}")
        if reply.delay:
            try:
                await asyncio.wait_for(self._closing.wait(), reply.delay)
            except asyncio.TimeoutError:
                pass
        body = reply.body
        if reply.echo_query:
            body = {"organic_results": [
                {"position": i + 1, "title": f"{query} — result {i + 1}", "link": f"https://example.test/{i + 1}?"
                 f"q={query.replace(' ', '+')}", "snippet": f"About {query}: fact number {i + 1} about {query}."}
                for i in range(3)]}
        if isinstance(body, dict):
            body = {"search_metadata": {"id": f"fake-{len(self.calls)}", "status": "Success" if reply.status == 200
                                        and "error" not in body else "Error"},
                    "search_parameters": {k: v for k, v in params.items() if k != "api_key"}, **body}
            data = json.dumps(body).encode()
        else:
            data = body or b""
        return web.Response(status=reply.status, body=data, content_type=reply.content_type, headers=reply.headers)

    async def start(self) -> "FakeSerpApi":
        self._closing = asyncio.Event()
        app = web.Application()
        for path in ("/search", "/search.json"):
            app.router.add_get(path, self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.base_url = f"http://127.0.0.1:{port}"
        return self

    async def close(self) -> None:
        if self._closing is not None:
            self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> "FakeSerpApi":
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

