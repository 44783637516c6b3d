"""One Redis round trip for the commands many stage coroutines issue at the same moment.

Under load every stage checks and marks its dedupe key for each message: ~11 small commands a request, each its own
write and read on the socket, which measured ~15 % of a worker's CPU (issue 9). Commands queued during one turn of
the event loop go out as one pipeline (no transaction: each command stands alone), and each caller gets its own
command's reply or error, so callers see exactly what a direct call would give them. A lone command is sent
directly: at low load nothing waits and nothing changes.
"""

from __future__ import annotations

import asyncio
from typing import Any


class CoalescedCommands:
    """`await commands.call("exists", key)`: the reply of that command, sent with whatever else is queued."""

    def __init__(self, client: Any) -> None:
        self.redis = client
        self._queued: list[tuple[str, tuple, dict, asyncio.Future]] = []
        self._flushing: set[asyncio.Task] = set()  # held so a running flush is not garbage-collected

    def call(self, name: str, *args: Any, **kwargs: Any) -> "asyncio.Future[Any]":
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        if not self._queued:
            # call_soon runs in the loop's next turn, after every coroutine woken in this one has queued its command.
            loop.call_soon(self._flush)
        self._queued.append((name, args, kwargs, future))
        return future

    def _flush(self) -> None:
        queued, self._queued = self._queued, []
        task = asyncio.ensure_future(self._send(queued))
        self._flushing.add(task)
        task.add_done_callback(self._flushing.discard)

    async def _send(self, queued: list[tuple[str, tuple, dict, asyncio.Future]]) -> None:
        live = [entry for entry in queued if not entry[3].done()]  # callers cancelled meanwhile need no reply
        if not live:
            return
        try:
            if len(live) == 1:
                name, args, kwargs, _ = live[0]
                replies: list[Any] = [await getattr(self.redis, name)(*args, **kwargs)]
            else:
                pipe = self.redis.pipeline(transaction=False)
                for name, args, kwargs, _ in live:
                    getattr(pipe, name)(*args, **kwargs)
                replies = await pipe.execute(raise_on_error=False)
        except asyncio.CancelledError:  # the loop is shutting down: so are the callers
            for *_, future in live:
                future.cancel()
            raise
        except Exception as exc:  # the connection failed: every caller gets the error a direct call would raise
            for *_, future in live:
                if not future.done():
                    future.set_exception(exc)
            return
        for (*_, future), reply in zip(live, replies):
            if future.done():
                continue
            if isinstance(reply, Exception):
                future.set_exception(reply)
            else:
                future.set_result(reply)
