"""Nothing lost, nothing twice: 200 requests through worker processes while things break.

During the run: the fake model and search servers fail (HTTP 500) for a while, the worker process holding the
planner…publisher is SIGKILLed and started again, and Redis is stopped and started again. A few bad messages ride
along. At the end each of the 200 good requests has exactly one `completed` result and the only dead letters are
the bad messages'. The figures are printed.
"""

import asyncio
import json
import time
from collections import Counter

import pytest
from aiokafka import AIOKafkaProducer

from infra.settings import Settings
from streams.client import ensure_topics
from tests.chaos.harness import BAD, BAD_KEYS, CPU_STAGES, Results, Workers, wait_for, worker_env
from tests.servers import RestartableRedis
from tests.fakes.openai_server import FakeOpenAI, Reply
from benchmarks.fake_serpapi import FakeSerpApi, SerpReply

REQUESTS = 200


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


@pytest.mark.timeout(900)
async def test_200_requests_exactly_once_across_worker_kill_redis_restart_and_failing_fakes(
        broker, tmp_path, unique, capsys):
    outage = Outage()
    llm = FakeOpenAI.start_in_thread(require_api_key="sk-chaos")
    llm.route(schema="PlannerOutput", reply=outage.planner)
    llm.default = outage.other
    serp = FakeSerpApi.start_in_thread(api_key="serp-chaos", default=outage.search)
    store = RestartableRedis(tmp_path / "redis").start()
    env = worker_env(
        tmp_path, broker.bootstrap, store.url, f"chaos{unique}",
        OPENAI_BASE_URL=llm.base_url,
        OPENAI_API_KEY="sk-chaos",
        GAPSTREAM_LLM_MODEL="fake-llm",
        GAPSTREAM_LLM_RETRIES="0",
        GAPSTREAM_LLM_TIMEOUT_S="2",
        SERPAPI_API_KEY="serp-chaos",
        GAPSTREAM_SERPAPI_URL=serp.base_url,
        GAPSTREAM_SEARCH_TIMEOUT_S="1",
    )
    settings = await ensure_topics(broker.bootstrap, Settings.from_env(env))
    workers = Workers(env, tmp_path / "logs")
    logs = workers.logs
    watch = Results(broker.bootstrap, settings, f"chaos-{unique}-")
    started = time.monotonic()
    events: list[str] = []

    def note(event):
        events.append(f"t={time.monotonic() - started:5.1f}s {event}")
    try:
        workers.start("cpu", CPU_STAGES)
        workers.start("gpu", "generator")
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=5,
                                    enable_idempotence=not settings.on_tansu)
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
        await wait_for(lambda: len(watch.good()) >= 15, 300, "15 results", logs)
        outage.on = False
        note(f"fakes back after {outage.failed_calls} failed calls at {len(watch.good())} results")

        await wait_for(lambda: len(watch.good()) >= 50, 150, "50 results", logs)
        workers.kill("cpu")
        note(f"worker SIGKILLed at {len(watch.good())} results")
        workers.start("cpu", CPU_STAGES)

        await wait_for(lambda: len(watch.good()) >= 110, 150, "110 results", logs)
        store.stop()
        note(f"Redis stopped at {len(watch.good())} results")
        await asyncio.sleep(2.0)
        store.start()
        note(f"Redis back at {len(watch.good())} results")

        await wait_for(lambda: len(watch.good()) >= REQUESTS, 240, f"{REQUESTS} results", logs)
        note(f"all {REQUESTS} results in")
        await asyncio.sleep(3.0)  # late duplicates would land now
    finally:
        seconds = time.monotonic() - started
        workers.stop_all()
        await watch.stop()
        store.stop()
        llm.stop()
        serp.stop()

    good = watch.good()
    duplicates = sum(n - 1 for n in good.values())
    lost = REQUESTS - len(good)
    statuses = Counter(r["status"] for r in watch.results)
    degraded = sum(1 for r in watch.results if r["degraded"])
    dead_keys = Counter(d.get("key") for d in watch.dead)
    with capsys.disabled():
        print(f"\nchaos: requests={REQUESTS} results={sum(good.values())} distinct={len(good)} "
              f"duplicates={duplicates} lost={lost} dead_letters={len(watch.dead)} (bad inputs {len(BAD)}) "
              f"statuses={dict(statuses)} degraded={degraded} seconds={seconds:.1f}")
        for event in events:
            print(f"chaos:   {event}")
    assert lost == 0 and duplicates == 0, logs()
    assert statuses == {"completed": REQUESTS}, [r.get("error") for r in watch.results if r["status"] != "completed"]
    assert set(dead_keys) == BAD_KEYS
    assert all(d["stage"] == "planner" for d in watch.dead)
    assert degraded > 0  # the outages showed in the results, not as failures
