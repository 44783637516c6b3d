"""What the chaos tests share: worker processes of a deployment, a reader of `results` and `dead-letters` from the
beginning, the bad inputs that ride along, and the figures each run prints."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Callable, Optional

from aiokafka import AIOKafkaConsumer, TopicPartition

from streams.broker import partitions_of

CPU_STAGES = "planner,searcher,enricher,critic,publisher,watchdog"
BAD = {  # key → raw value: each must end as a dead letter, never as a crash
    b"bad-json": b"{not json",
    b"bad-array": b"[1, 2, 3]",
    b"bad-missing-prompt": json.dumps({"request_id": "bad-missing-prompt", "user_id": "eve"}).encode(),
    b"bad-user-star": json.dumps({"request_id": "bad-user-star", "user_id": "eve*", "prompt": "x"}).encode(),
    b"bad-width": json.dumps({"request_id": "bad-width", "user_id": "eve", "prompt": "a cat", "width": 13}).encode(),
    b"bad-binary": b"\xff\xfe\x00\x01binary",
}
BAD_KEYS = {k.decode("utf-8", "replace") for k in BAD}


def gapstream_cmd(*args: str) -> list[str]:
    exe = shutil.which("gapstream")
    return [exe, *args] if exe else [sys.executable, "-m", "cli", *args]


class Workers:
    """`gapstream worker` processes of one deployment, each logging to its own file under `logs_dir`."""

    def __init__(self, env: dict[str, str], logs_dir: Path) -> None:
        self.env = env
        self.logs_dir = logs_dir
        logs_dir.mkdir(parents=True, exist_ok=True)
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, name: str, stages: str) -> None:
        log = open(self.logs_dir / f"{name}-{len(list(self.logs_dir.iterdir()))}.log", "w")
        self.procs[name] = subprocess.Popen(gapstream_cmd("worker", "--stages", stages), env=self.env,
                                            stdout=log, stderr=log)

    def kill(self, name: str) -> None:
        self.procs[name].send_signal(signal.SIGKILL)
        self.procs[name].wait(10)

    def stop(self, name: str) -> None:
        proc = self.procs.pop(name)
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()

    def stop_all(self) -> None:
        for name in list(self.procs):
            self.stop(name)

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}"
                         for p in sorted(self.logs_dir.iterdir()))


class Results:
    """Reads `results` and `dead-letters` from the beginning, continuously, noting when each result arrived."""

    def __init__(self, bootstrap: str, settings, run: str) -> None:
        self.bootstrap = bootstrap
        self.run = run
        self.topics = [settings.topic("results"), settings.topic("dead-letters")]
        self.results: list[dict] = []
        self.arrivals: list[float] = []  # monotonic time of each of our results
        self.dead: list[dict] = []
        self._task: Optional[asyncio.Task] = None
        self.consumer: Optional[AIOKafkaConsumer] = None

    async def start(self) -> None:
        self.consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, group_id=None, enable_auto_commit=False,
                                         fetch_max_wait_ms=50)
        await self.consumer.start()
        known = await partitions_of(self.consumer, self.topics)
        tps = [TopicPartition(t, p) for t in self.topics for p in known[t]]
        self.consumer.assign(tps)
        await self.consumer.seek_to_beginning(*tps)
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        assert self.consumer is not None
        while True:
            batches = await self.consumer.getmany(timeout_ms=200)
            for tp, messages in batches.items():
                for message in messages:
                    value = json.loads(message.value)
                    if tp.topic == self.topics[1]:
                        self.dead.append(value)
                    elif str(value.get("request_id", "")).startswith(self.run):
                        self.results.append(value)
                        self.arrivals.append(time.monotonic())

    def good(self) -> Counter:
        return Counter(r["request_id"] for r in self.results)

    def longest_stall_after(self, since: float) -> float:
        """The longest wait between two results (or from `since` to the first) after `since`."""
        times = [since] + [t for t in self.arrivals if t > since]
        return max((b - a for a, b in zip(times, times[1:])), default=0.0)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self.consumer is not None:
            await self.consumer.stop()


async def wait_for(predicate: Callable[[], bool], timeout_s: float, what: str, logs: Callable[[], str]) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}\n{logs()}")
        await asyncio.sleep(0.1)


def worker_env(tmp_path: Path, bootstrap: str, redis_url: str, tag: str, **extra: str) -> dict[str, str]:
    """The environment of one deployment's workers: its own topics and groups, quick joins, tiny images."""
    env = {
        **os.environ,
        "GAPSTREAM_HOME": str(tmp_path),
        "GAPSTREAM_KAFKA_BOOTSTRAP": bootstrap,
        "GAPSTREAM_REDIS_URL": redis_url,
        "GAPSTREAM_TOPIC_PREFIX": f"{tag}.",
        "GAPSTREAM_APP_ID": tag,
        "GAPSTREAM_BROKER_SESSION_TIMEOUT": "4",
        "GAPSTREAM_DEFAULT_STEPS": "1",
        "GAPSTREAM_DEFAULT_SIZE": "32",
        "GAPSTREAM_STAGE_RETRY_S": "60",
        **extra,
    }
    env.pop("GAPSTREAM_CORPUS_DIR", None)
    return env


def exactly_once_figures(watch: Results, requests: int) -> dict:
    good = watch.good()
    return {
        "requests": requests,
        "results": sum(good.values()),
        "lost": requests - len(good),
        "duplicates": sum(n - 1 for n in good.values()),
        "dead_letters": len(watch.dead),
        "statuses": dict(Counter(r["status"] for r in watch.results)),
    }
