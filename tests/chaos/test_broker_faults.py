"""Broker faults on a 3-node Apache Kafka cluster of the module's own, under load: 300 requests each.

(a) one broker SIGKILLed mid-run and restarted later; (b) a rolling restart of all three brokers; (c) a worker
SIGKILLed and restarted, then a second worker joining and leaving its consumer groups. Each run ends with exactly
one result per request on `results` (none lost, none twice) and every bad input in `dead-letters`, and prints
its figures: requests, results, lost, duplicates, seconds, and the time to recover (the longest gap between two
results after the fault, and for broker faults how long the restarted broker took to be back in sync).
"""

import asyncio
import json
import time

import pytest
from aiokafka import AIOKafkaProducer

from infra.settings import Settings
from streams.client import ensure_topics
from tests.chaos.harness import (
    BAD,
    BAD_KEYS,
    CPU_STAGES,
    Results,
    Workers,
    exactly_once_figures,
    wait_for,
    worker_env,
)
from tests.kafka.cluster import KafkaCluster

REQUESTS = 300


@pytest.fixture(scope="module")
def faulty_kafka(tmp_path_factory):
    """Brokers these tests may kill: not the session's cluster, which the other suites share."""
    with KafkaCluster(tmp_path_factory.mktemp("kafka-faults"), nodes=3) as cluster:
        yield cluster


class Run:
    """One deployment (a CPU worker and a generator) with 300 requests and the bad inputs in flight."""

    def __init__(self, cluster, redis_url, tmp_path, tag):
        self.cluster = cluster
        self.env = worker_env(tmp_path, cluster.bootstrap, redis_url, tag)
        self.settings = Settings.from_env(self.env)
        self.workers = Workers(self.env, tmp_path / "logs")
        self.watch = Results(cluster.bootstrap, self.settings, f"{tag}-r")
        self.tag = tag
        self.started = 0.0
        self.sent = 0
        self.producer = None
        self.events: list[str] = []

    def note(self, event):
        self.events.append(f"t={time.monotonic() - self.started:5.1f}s {event} (results {self.count()})")

    def count(self):
        return len(self.watch.good())

    async def __aenter__(self):
        self.settings = await ensure_topics(self.cluster.bootstrap, self.settings)
        self.started = time.monotonic()
        self.workers.start("cpu", CPU_STAGES)
        self.workers.start("gpu", "generator")
        self.producer = AIOKafkaProducer(bootstrap_servers=self.cluster.bootstrap, acks="all",
                                         enable_idempotence=True, linger_ms=5)
        await self.producer.start()
        for key, value in BAD.items():
            await self.producer.send(self.settings.topic("requests"), key=key, value=value)
        await self.watch.start()
        return self

    async def publish(self, n):
        """The next `n` of the run's requests (a user's idempotent producer, as faults happen)."""
        for i in range(self.sent, self.sent + n):
            request = {"request_id": f"{self.tag}-r{i}", "user_id": f"u{i % 5}-{self.tag}",
                       "prompt": f"a lighthouse at dusk, number {i}", "max_rounds": 1}
            await self.producer.send(self.settings.topic("requests"), key=request["request_id"].encode(),
                                     value=json.dumps(request).encode())
        await self.producer.flush()
        self.sent += n

    async def until(self, n, timeout_s=240):
        await wait_for(lambda: self.count() >= n, timeout_s, f"{n} results", self.workers.logs)

    async def __aexit__(self, *exc):
        if self.producer is not None:
            await self.producer.stop()
        self.workers.stop_all()
        await self.watch.stop()

    async def finish(self, capsys, name, **figures):
        assert self.sent == REQUESTS
        await self.until(REQUESTS, 300)
        await wait_for(lambda: {d.get("key") for d in self.watch.dead} >= BAD_KEYS, 60, "dead letters",
                       self.workers.logs)
        seconds = time.monotonic() - self.started
        await asyncio.sleep(3.0)  # late duplicates would land now
        counts = exactly_once_figures(self.watch, REQUESTS)
        with capsys.disabled():
            shown = " ".join(f"{k}={v}" for k, v in {**counts, "seconds": round(seconds, 1), **figures}.items())
            print(f"\nchaos[{name}]: {shown}")
            for event in self.events:
                print(f"chaos[{name}]:   {event}")
        assert counts["lost"] == 0 and counts["duplicates"] == 0, self.workers.logs()
        assert counts["statuses"] == {"completed": REQUESTS}, [r.get("error") for r in self.watch.results
                                                              if r["status"] != "completed"]
        assert {d.get("key") for d in self.watch.dead} == BAD_KEYS
        return counts


@pytest.mark.timeout(900)
async def test_a_broker_sigkilled_mid_run_loses_nothing(faulty_kafka, redis_url, tmp_path, unique, capsys):
    async with Run(faulty_kafka, redis_url, tmp_path, f"bk{unique}") as run:
        await run.publish(REQUESTS)
        await run.until(30)
        killed_at = time.monotonic()
        await asyncio.to_thread(faulty_kafka.kill_node, 2)
        run.note("broker 2 SIGKILLed")
        await run.until(150)  # two in-sync replicas are left: the pipeline goes on without the third
        run.note("broker 2 restarting")
        restarted = time.monotonic()
        await asyncio.to_thread(faulty_kafka.start_node, 2)  # off the loop: results keep being read meanwhile
        in_sync_s = await asyncio.to_thread(faulty_kafka.wait_in_sync,
                                            [run.settings.topic(t) for t in ("requests", "results", "images")])
        run.note(f"broker 2 back in sync after {in_sync_s:.1f} s")
        await run.finish(capsys, "broker-kill", stall_after_kill_s=round(run.watch.longest_stall_after(killed_at), 1),
                         restart_to_in_sync_s=round(time.monotonic() - restarted, 1))


@pytest.mark.timeout(900)
async def test_a_rolling_restart_of_all_brokers_loses_nothing(faulty_kafka, redis_url, tmp_path, unique, capsys):
    async with Run(faulty_kafka, redis_url, tmp_path, f"rr{unique}") as run:
        await run.publish(REQUESTS // 4)
        await run.until(20)
        first = time.monotonic()
        topics = [run.settings.topic(t) for t in ("requests", "results", "images")]
        for node in (1, 2, 3):
            # SIGTERM: a controlled shutdown hands its leaderships over. Off the loop, so results keep being read.
            await asyncio.to_thread(faulty_kafka.stop_node, node)
            run.note(f"broker {node} stopped")
            await run.publish(REQUESTS // 4)  # load through every restart, not only the first
            await asyncio.to_thread(faulty_kafka.start_node, node)
            await asyncio.to_thread(faulty_kafka.wait_in_sync, topics)
            run.note(f"broker {node} back in sync")
        await run.finish(capsys, "rolling-restart", longest_stall_s=round(run.watch.longest_stall_after(first), 1),
                         restarts_s=round(time.monotonic() - first, 1))


@pytest.mark.timeout(900)
async def test_a_worker_kill_and_a_joining_and_leaving_worker_lose_nothing(faulty_kafka, redis_url, tmp_path,
                                                                           unique, capsys):
    async with Run(faulty_kafka, redis_url, tmp_path, f"wk{unique}") as run:
        await run.publish(REQUESTS)
        await run.until(40)
        killed_at = time.monotonic()
        run.workers.kill("cpu")
        run.note("CPU worker SIGKILLed")
        run.workers.start("cpu", CPU_STAGES)
        await run.until(120)
        run.workers.start("cpu2", CPU_STAGES)  # joins every CPU stage's group: a rebalance under load
        run.note("second CPU worker joined")
        await run.until(200)
        run.workers.stop("cpu2")  # and leaves: another rebalance
        run.note("second CPU worker left")
        await run.finish(capsys, "worker-kill-rebalance",
                         stall_after_kill_s=round(run.watch.longest_stall_after(killed_at), 1))
