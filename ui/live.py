"""Live progress of requests for the web page: one channel per request, fed from the topics.

Each channel is filled by a `streams.progress.ProgressWatcher` (the same reader `gapstream run` prints from),
started *before* the request or answer is published so no stage's output is missed, and by the result index when
the request's result lands. A browser's event stream replays what the channel already holds and then waits on it:
nothing polls Redis or the broker per browser.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any, AsyncIterator, Callable, Optional

from infra.settings import Settings
from schemas.records import ResultRecord
from schemas.topics import CRITIQUES, ENRICHED_PROMPTS, GAPS, IMAGES, SEARCH_RESULTS
from streams.progress import STAGE_OF, ProgressWatcher, describe

log = logging.getLogger("gapstream.ui.live")
# A watcher is one Kafka consumer; past this many at once, new live pages still get the result event, not stages.
MAX_WATCHERS = 64
# A watcher whose request never finishes (lost, or waiting on an unanswered question) is stopped after this.
WATCH_FOR_S = 900.0


def details(suffix: str, record: dict[str, Any], image_url: Callable[[str], str]) -> dict[str, Any]:
    """What the live page shows beyond the stage's one line: gaps, searches, the round's prompt, drafts, scores.
    Plain data: the page puts every string in with textContent, never as markup."""
    out: dict[str, Any] = {"round": record.get("round", 0)}
    if suffix in (GAPS.suffix, SEARCH_RESULTS.suffix):
        out["gaps"] = [{"kind": g.get("kind"), "strategy": g.get("strategy"), "status": g.get("status"),
                        "description": g.get("description"), "value": g.get("value")}
                       for g in record.get("gaps") or []]
    if suffix == SEARCH_RESULTS.suffix:
        out["searches"] = [{"query": s.get("query"), "backend": s.get("backend"), "hits": len(s.get("hits") or []),
                            "error": s.get("error")} for s in record.get("searches") or []]
    if suffix == ENRICHED_PROMPTS.suffix:
        out["prompt"] = record.get("prompt", "")
    if suffix == IMAGES.suffix:
        out["images"] = [image_url(i.get("uri", "")) for i in record.get("images") or []]
    if suffix == CRITIQUES.suffix:
        critique = record.get("critique") or {}
        out["score"] = critique.get("score")
        out["verdict"] = critique.get("verdict")
        out["images"] = [image_url(d.get("uri", "")) for d in critique.get("drafts") or []]
    return out


class Channel:
    """Everything seen of one request so far, and a condition that wakes its readers."""

    def __init__(self, request_id: str, user_id: Optional[str] = None) -> None:
        self.request_id = request_id
        self.user = user_id  # whose request: known at submit, else from the first record that names it
        self.events: list[dict[str, Any]] = []
        self.started = time.monotonic()
        self.changed = asyncio.Condition()
        self.watcher: Optional[ProgressWatcher] = None
        self.timer: Optional[asyncio.TimerHandle] = None
        self.done = False  # a result arrived: readers stop after it

    async def add(self, event: dict[str, Any], done: bool = False) -> None:
        async with self.changed:
            self.events.append({"seq": len(self.events), "t": round(time.monotonic() - self.started, 2), **event})
            self.done = self.done or done
            self.changed.notify_all()

    async def follow(self, after: int = -1, keepalive_s: float = 15.0) -> AsyncIterator[Optional[dict[str, Any]]]:
        """Events with seq > after, then each new one; None every `keepalive_s` of silence (a comment line keeps
        proxies from closing the stream); ends after the result."""
        position = after + 1
        while True:
            async with self.changed:
                if position >= len(self.events) and not self.done:
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(self.changed.wait(), keepalive_s)
                fresh = self.events[position:]
                finished = self.done
            if not fresh and not finished:
                yield None
            for event in fresh:
                yield event
            position += len(fresh)
            if finished and position >= len(self.events):
                return


class LiveHub:
    """The channels of requests this UI process is following."""

    def __init__(self, bootstrap: str, settings: Settings, image_url: Callable[[str], str]) -> None:
        self.bootstrap = bootstrap
        self.settings = settings
        self.image_url = image_url
        self.channels: dict[str, Channel] = {}
        self._adding: set[asyncio.Task] = set()

    def get(self, request_id: str) -> Optional[Channel]:
        return self.channels.get(request_id)

    async def open(self, request_id: str, user_id: Optional[str] = None) -> Channel:
        """A channel with a running watcher; call before publishing anything the stages will answer."""
        channel = self.channels.get(request_id)
        if channel is None or channel.done:
            channel = self.channels[request_id] = Channel(request_id, user_id)
        if channel.watcher is None and sum(c.watcher is not None for c in self.channels.values()) < MAX_WATCHERS:
            loop = asyncio.get_running_loop()

            def on_record(suffix: str, record: dict[str, Any], channel: Channel = channel) -> None:
                line = describe(suffix, record)
                # `user` lets the event stream show a request's stages only under its own user's address.
                # A dead letter names no user: it is the channel's request's, whose user the channel knows.
                channel.user = channel.user or record.get("user_id")
                event = {"stage": STAGE_OF.get(suffix, suffix), "text": line or "",
                         "user": record.get("user_id") or channel.user,
                         **details(suffix, record, self.image_url)}
                task = loop.create_task(channel.add(event))
                self._adding.add(task)  # the loop holds tasks weakly: keep each until it has run
                task.add_done_callback(self._adding.discard)

            watcher = ProgressWatcher(self.bootstrap, self.settings, request_id, lambda stage, text: None,
                                      on_record)
            try:
                await watcher.start()
            except Exception as exc:  # live stages are a nicety: the result still arrives through the index
                log.warning("live view of %s unavailable: %s: %s", request_id, type(exc).__name__, exc)
                with contextlib.suppress(Exception):
                    await watcher._consumer.stop()
            else:
                channel.watcher = watcher
                channel.timer = loop.call_later(WATCH_FOR_S, lambda: loop.create_task(self._stop(channel)))
        return channel

    async def result(self, result: ResultRecord, url: str) -> None:
        """The result index saw a result: the channel's readers get it and the watcher stops."""
        channel = self.channels.get(result.request_id)
        if channel is None or channel.done:
            return
        # The watcher's last read (the final critique) goes in before the result, in the order the stages wrote.
        await self._stop(channel)
        await asyncio.sleep(0)
        await channel.add({"stage": "result", "status": result.status, "url": url, "text": _result_line(result),
                           "user": result.user_id},
                          done=True)

    async def _stop(self, channel: Channel) -> None:
        if channel.timer is not None:
            channel.timer.cancel()
            channel.timer = None
        watcher, channel.watcher = channel.watcher, None
        if watcher is not None:
            with contextlib.suppress(Exception):
                await watcher.stop()
        # Keep finished channels only briefly: a reader that connects later reads the result page instead.
        stale = [rid for rid, c in self.channels.items() if c.done and c.watcher is None
                 and time.monotonic() - c.started > WATCH_FOR_S]
        for rid in stale:
            self.channels.pop(rid, None)

    async def aclose(self) -> None:
        for channel in list(self.channels.values()):
            await self._stop(channel)
        self.channels.clear()


def _result_line(result: ResultRecord) -> str:
    if result.status == "completed":
        score = f", score {result.score:.2f}" if result.score is not None else ""
        return f"completed after {result.rounds} round(s){score}"
    if result.status == "needs_clarification":
        return f"a question for you: {result.question or ''}"
    return f"{result.status}: {result.error or ''}"
