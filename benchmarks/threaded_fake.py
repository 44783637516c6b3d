"""Run an async fake server on its own event loop in a daemon thread, for sync code and subprocess tests."""

from __future__ import annotations

import asyncio
import threading
from typing import Any, TypeVar

F = TypeVar("F", bound="ThreadedFake")


class ThreadedFake:
    """Mixin for fakes with async `start()` and `close()`: adds `start_in_thread()` and `stop()`."""

    _loop: Any = None
    _thread: Any = None

    async def start(self):  # pragma: no cover - provided by the fake
        raise NotImplementedError

    async def close(self) -> None:  # pragma: no cover - provided by the fake
        raise NotImplementedError

    @classmethod
    def start_in_thread(cls: type[F], **kwargs: Any) -> F:
        """Start a fake on its own event loop in a daemon thread; call `.stop()` when done."""
        fake = cls(**kwargs)
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            fake._loop = loop
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(fake.start())
            except BaseException as exc:  # pragma: no cover - port binding failures
                failure.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(fake.close())
            loop.close()

        fake._thread = threading.Thread(target=run, name=cls.__name__, daemon=True)
        fake._thread.start()
        ready.wait(10)
        if failure:
            raise failure[0]
        return fake

    def stop(self) -> None:
        """Stop a fake started with `start_in_thread`."""
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._thread = None
