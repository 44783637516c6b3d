"""Nothing lost, nothing twice: 200 requests through worker processes while things break.

During the run: the fake model and search servers fail (HTTP 500) for a while, the worker process holding the
planner…publisher is SIGKILLed and started again, and Redis is stopped and started again. A few bad messages ride
along. At the end each of the 200 good requests has exactly one `completed` result and the only dead letters are
the bad messages'. The figures are printed.
"""

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from infra.settings import Settings
from streams.client import ensure_topics
from tests.chaos.servers import RestartableRedis
from tests.fakes.openai_server import FakeOpenAI, Reply
from tests.fakes.serpapi_server import FakeSerpApi, SerpReply

REQUESTS = 200
CPU_STAGES = "planner,searcher,enricher,critic,publisher,watchdog"
BAD = {  # key → raw value: each must end as a dead letter, never as a crash
    b"bad-json": b"{not json",
    b"bad-array": b"[1, 2, 3]",
    b"bad-missing-prompt": json.dumps({"request_id": "bad-missing-prompt", "user_id": "eve"}).encode(),
    b"bad-user-star": json.dumps({"request_id": "bad-user-star", "user_id": "eve*", "prompt": "x"}).encode(),
    b"bad-width": json.dumps({"request_id": "bad-width", "user_id": "eve", "prompt": "a cat", "width": 13}).encode(),
    b"bad-binary": b"\xff\xfe\x00\x01binary",
}


def _cmd(*args):
    exe = shutil.which("gapstream")
    return [exe, *args] if exe else [sys.executable, "-m", "streams.cli", *args]


class Outage:
    """Shared switch the fakes read: while on, every model and search call gets HTTP 500."""

    def __init__(self):
        self.on = True
        self.failed_calls = 0

    def planner(self, req):
        if self.on:
            self.failed_calls += 1
            return Reply.server_error()
        return {"gaps": [{"id": "g1", "kind": "knowledge", "strategy": "search", "subject": "Lantern Fair",
                          "query": "Lantern Fair 2026", "time_sensitive": True, "reasoning": "an event"}],
                "checklist": [{"text": "the Lantern Fair", "terms": ["lantern"], "gap_id": "g1"}]}

    def other(self, req):
        if self.on:
            self.failed_calls += 1
            return Reply.server_error()
        return Reply.text("not a JSON answer")  # rejected: the heuristic enricher answers

    def search(self, query):
        if self.on:
            self.failed_calls += 1
            return SerpReply.server_error()
        return SerpReply.echo()


class Results:
    """Reads `results` and `dead-letters` from the beginning, continuously."""

    def __init__(self, bootstrap, settings):
        self.bootstrap = bootstrap
        self.topics = [settings.topic("results"), settings.topic("dead-letters")]
        self.results: list[dict] = []
        self.dead: list[dict] = []
        self._task = None

    async def start(self):
        self.consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, group_id=None, enable_auto_commit=False,
                                         fetch_max_wait_ms=50)
        await self.consumer.start()
        tps = [TopicPartition(t, p) for t in self.topics for p in (self.consumer.partitions_for_topic(t) or ())]
        self.consumer.assign(tps)
        await self.consumer.seek_to_beginning(*tps)
        self._task = asyncio.create_task(self._run())

    async def _run(self):
        while True:
            batches = await self.consumer.getmany(timeout_ms=200)
            for tp, messages in batches.items():
                for message in messages:
                    value = json.loads(message.value)
                    (self.results if tp.topic == self.topics[0] else self.dead).append(value)

    def good(self):
        return Counter(r["request_id"] for r in self.results if r["request_id"].startswith("chaos-"))

    async def stop(self):
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        await self.consumer.stop()


async def _wait_for(predicate, timeout_s, what, logs):
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}\n{logs()}")
        await asyncio.sleep(0.1)


@pytest.mark.timeout(900)
async def test_200_requests_exactly_once_across_worker_kill_redis_restart_and_failing_fakes(
        broker, tmp_path, unique, capsys):
    outage = Outage()
    llm = FakeOpenAI.start_in_thread(require_api_key="sk-chaos")
    llm.route(schema="PlannerOutput", reply=outage.planner)
    llm.default = outage.other
    serp = FakeSerpApi.start_in_thread(api_key="serp-chaos", default=outage.search)
    store = RestartableRedis(tmp_path / "redis").start()
    env = {
        **os.environ,
        "GAPSTREAM_HOME": str(tmp_path),
        "GAPSTREAM_KAFKA_BOOTSTRAP": broker.bootstrap,
        "GAPSTREAM_REDIS_URL": store.url,
        "GAPSTREAM_TOPIC_PREFIX": f"chaos{unique}.",
        "GAPSTREAM_APP_ID": f"chaos-{unique}",
        "GAPSTREAM_BROKER_SESSION_TIMEOUT": "4",
        "GAPSTREAM_DEFAULT_STEPS": "1",
        "GAPSTREAM_DEFAULT_SIZE": "32",
        "OPENAI_BASE_URL": llm.base_url,
        "OPENAI_API_KEY": "sk-chaos",
        "GAPSTREAM_LLM_MODEL": "fake-llm",
        "GAPSTREAM_LLM_RETRIES": "0",
        "GAPSTREAM_LLM_TIMEOUT_S": "2",
        "SERPAPI_API_KEY": "serp-chaos",
        "GAPSTREAM_SERPAPI_URL": serp.base_url,
        "GAPSTREAM_SEARCH_TIMEOUT_S": "1",
        "GAPSTREAM_STAGE_RETRY_S": "60",
    }
    env.pop("GAPSTREAM_CORPUS_DIR", None)
    settings = Settings.from_env(env)
    await ensure_topics(broker.bootstrap, settings)
    logs_dir = tmp_path / "logs"
    logs_dir.mkdir()
    procs: dict[str, subprocess.Popen] = {}

    def start(name, stages):
        log = open(logs_dir / f"{name}-{len(list(logs_dir.iterdir()))}.log", "w")
        procs[name] = subprocess.Popen(_cmd("worker", "--stages", stages), env=env, stdout=log, stderr=log)

    def logs():
        return "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in sorted(logs_dir.iterdir()))

    watch = Results(broker.bootstrap, settings)
    started = time.monotonic()
    events: list[str] = []

    def note(event):
        events.append(f"t={time.monotonic() - started:5.1f}s {event}")
    try:
        start("cpu", CPU_STAGES)
        start("gpu", "generator")
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, enable_idempotence=False, linger_ms=5)
        await producer.start()
        try:
            for key, value in BAD.items():
                await producer.send(settings.topic("requests"), key=key, value=value)
            for i in range(REQUESTS):
                request = {"request_id": f"chaos-{unique}-{i}", "user_id": f"u{i % 7}-{unique}",
                           "prompt": f"a poster for this year's Lantern Fair, number {i}", "max_rounds": 1}
                await producer.send(settings.topic("requests"), key=request["request_id"].encode(),
                                    value=json.dumps(request).encode())
            await producer.flush()
        finally:
            await producer.stop()
        await watch.start()

        # Generous: under a heavily loaded CI machine worker start-up (torch import) alone can take minutes.
        await _wait_for(lambda: len(watch.good()) >= 15, 300, "15 results", logs)
        outage.on = False
        note(f"fakes back after {outage.failed_calls} failed calls at {len(watch.good())} results")

        await _wait_for(lambda: len(watch.good()) >= 50, 150, "50 results", logs)
        procs["cpu"].send_signal(signal.SIGKILL)
        procs["cpu"].wait(10)
        note(f"worker SIGKILLed at {len(watch.good())} results")
        start("cpu", CPU_STAGES)

        await _wait_for(lambda: len(watch.good()) >= 110, 150, "110 results", logs)
        store.stop()
        note(f"Redis stopped at {len(watch.good())} results")
        await asyncio.sleep(2.0)
        store.start()
        note(f"Redis back at {len(watch.good())} results")

        await _wait_for(lambda: len(watch.good()) >= REQUESTS, 240, f"{REQUESTS} results", logs)
        note(f"all {REQUESTS} results in")
        await asyncio.sleep(3.0)  # late duplicates would land now
    finally:
        seconds = time.monotonic() - started
        for proc in procs.values():
            proc.send_signal(signal.SIGTERM)
        for proc in procs.values():
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        await watch.stop() if watch._task else None
        store.stop()
        llm.stop()
        serp.stop()

    good = watch.good()
    duplicates = sum(n - 1 for n in good.values())
    lost = REQUESTS - len(good)
    statuses = Counter(r["status"] for r in watch.results if r["request_id"].startswith("chaos-"))
    degraded = sum(1 for r in watch.results if r["request_id"].startswith("chaos-") and r["degraded"])
    dead_keys = Counter(d.get("key") for d in watch.dead)
    with capsys.disabled():
        print(f"\nchaos: requests={REQUESTS} results={sum(good.values())} distinct={len(good)} "
              f"duplicates={duplicates} lost={lost} dead_letters={len(watch.dead)} (bad inputs {len(BAD)}) "
              f"statuses={dict(statuses)} degraded={degraded} seconds={seconds:.1f}")
        for event in events:
            print(f"chaos:   {event}")
    assert lost == 0 and duplicates == 0, logs()
    assert statuses == {"completed": REQUESTS}, [r.get("error") for r in watch.results if r["status"] != "completed"]
    assert set(dead_keys) == {k.decode() if k != b"bad-binary" else k.decode("utf-8", "replace") for k in BAD}
    assert all(d["stage"] == "planner" for d in watch.dead)
    assert degraded > 0  # the outages showed in the results, not as failures
