"""A real Apache Kafka cluster on loopback for tests and benchmarks: KRaft nodes, each broker and controller.

The jars come from Maven Central through `tests/kafka/pom.xml` into a cache outside the checkout
(`$GAPSTREAM_KAFKA_CACHE`, default `~/.cache/gapstream/kafka-<version>/libs`), so a second run downloads nothing.
Each node is one JVM with its own ports and log dir under a scratch folder; the launcher waits until the cluster
serves metadata with every broker registered, and stops every process it started (an atexit hook too, so a
crashed test run leaves no JVM behind).

Run one by hand for the benchmarks: `python -m tests.kafka start` prints the bootstrap to export as
`GAPSTREAM_KAFKA_BOOTSTRAP` and keeps the cluster up until Ctrl-C.
"""

from __future__ import annotations

import asyncio
import atexit
import base64
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

KAFKA_VERSION = "4.1.1"
POM = Path(__file__).with_name("pom.xml")
# Small heaps and the client compiler only: three JVMs and the test suite share two cores. Serial GC: with one
# busy core per JVM at most, a parallel collector only adds threads.
JVM_OPTS = ["-Xms128m", "-Xmx512m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-XX:-UsePerfData",
            "-XX:+ExitOnOutOfMemoryError", "-Djava.awt.headless=true",
            "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn", "-Dorg.slf4j.simpleLogger.showDateTime=true"]

_running: set["KafkaNode"] = set()


class KafkaUnavailable(RuntimeError):
    """Kafka could not be provisioned or started; the message says what is missing."""


# A copy of streams.local.free_port: this module imports nothing of gapstream's, so that `python3 -m tests.kafka
# fetch` runs in .ci/run before the project is installed.
def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def kafka_libs(version: str = KAFKA_VERSION) -> Path:
    """The folder of Kafka's jars, fetched with Maven the first time (a marker file says the copy is whole)."""
    root = Path(os.environ.get("GAPSTREAM_KAFKA_CACHE") or Path.home() / ".cache" / "gapstream" / f"kafka-{version}")
    libs = root / "libs"
    marker = root / ".complete"
    if marker.exists():
        return libs
    for tool in ("java", "mvn"):
        if shutil.which(tool) is None:
            raise KafkaUnavailable(f"Apache Kafka for the tests needs `{tool}` on PATH (.ci/run installs "
                                   "openjdk-17-jre-headless and maven)")
    if libs.exists():
        shutil.rmtree(libs)
    cmd = ["mvn", "-q", "-B", "-f", str(POM), f"-Dkafka.version={version}", "dependency:copy-dependencies",
           f"-DoutputDirectory={libs}"]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise KafkaUnavailable(f"fetching Kafka {version} with Maven failed: {(done.stdout + done.stderr)[-2000:]}")
    marker.write_text(version)
    return libs


def _java(libs: Path, main: str, *args: str, jvm: tuple[str, ...] = ()) -> list[str]:
    return ["java", *JVM_OPTS, *jvm, "-cp", f"{libs}/*", main, *args]


def run_tool(libs: Path, main: str, *args: str, timeout_s: float = 120.0,
             input_text: Optional[str] = None) -> subprocess.CompletedProcess:
    """One of Kafka's own command-line tools (a class in the jars), run to completion; raises on failure."""
    done = subprocess.run(_java(libs, main, *args, jvm=("-Xmx256m",)), capture_output=True, text=True,
                          timeout=timeout_s, input=input_text,
                          stdin=None if input_text is not None else subprocess.DEVNULL)
    if done.returncode != 0:
        raise KafkaUnavailable(f"{main} {' '.join(args)} failed ({done.returncode}): "
                               f"{(done.stdout + done.stderr)[-3000:]}")
    return done


@dataclass(eq=False)
class KafkaNode:
    node_id: int
    root: Path
    broker_port: int
    controller_port: int
    extra: dict[str, str] = field(default_factory=dict)
    proc: Optional[subprocess.Popen] = None

    @property
    def config_path(self) -> Path:
        return self.root / "node.properties"

    @property
    def log_path(self) -> Path:
        return self.root / "node.log"

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class KafkaCluster:
    """`nodes` combined broker+controller KRaft nodes on 127.0.0.1, replication factor = min(3, nodes)."""

    kind = "kafka"

    def __init__(self, root: Path, nodes: int = 3, *, version: str = KAFKA_VERSION,
                 broker_config: Optional[dict[str, str]] = None, listeners: Optional[dict[str, int]] = None) -> None:
        """`listeners` adds named listeners to node 1 (name → port), e.g. {"SASL_SSL": port} with the matching
        `broker_config`; the PLAINTEXT listener stays for the brokers themselves and for the admin tools."""
        if nodes < 1:
            raise ValueError("a cluster needs at least one node")
        self.root = root
        self.version = version
        self.libs = kafka_libs(version)
        self.cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode()[:22]
        self.broker_config = broker_config or {}
        self.listeners = listeners or {}
        self.nodes = [KafkaNode(i, root / f"node-{i}", free_port(), free_port()) for i in range(1, nodes + 1)]
        self.replication = min(3, nodes)

    @property
    def bootstrap(self) -> str:
        return ",".join(f"127.0.0.1:{n.broker_port}" for n in self.nodes)

    def node(self, node_id: int) -> KafkaNode:
        return self.nodes[node_id - 1]

    def _properties(self, node: KafkaNode) -> str:
        voters = ",".join(f"{n.node_id}@127.0.0.1:{n.controller_port}" for n in self.nodes)
        listeners = [f"PLAINTEXT://127.0.0.1:{node.broker_port}"]
        advertised = list(listeners)
        protocol_map = ["CONTROLLER:PLAINTEXT", "PLAINTEXT:PLAINTEXT"]
        if node.node_id == 1:
            for name, port in self.listeners.items():
                listeners.append(f"{name}://127.0.0.1:{port}")
                advertised.append(f"{name}://127.0.0.1:{port}")
                protocol_map.append(f"{name}:{name}")
        config = {
            "process.roles": "broker,controller",
            "node.id": str(node.node_id),
            "controller.quorum.voters": voters,
            "listeners": ",".join(listeners + [f"CONTROLLER://127.0.0.1:{node.controller_port}"]),
            "advertised.listeners": ",".join(advertised),
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": ",".join(protocol_map),
            "log.dirs": str(node.root / "data"),
            # What gapstream's topics are proven with: every partition on three brokers, two in sync to ack.
            "default.replication.factor": str(self.replication),
            "min.insync.replicas": str(min(2, self.replication)),
            "offsets.topic.replication.factor": str(self.replication),
            "transaction.state.log.replication.factor": str(self.replication),
            "transaction.state.log.min.isr": str(min(2, self.replication)),
            "unclean.leader.election.enable": "false",
            "auto.create.topics.enable": "false",
            "num.partitions": "4",
            # Test-sized: fewer internal partitions and no initial rebalance delay on two cores; sessions as
            # short as the tests' 4 s.
            "offsets.topic.num.partitions": "10",
            "transaction.state.log.num.partitions": "4",
            "group.initial.rebalance.delay.ms": "0",
            "group.min.session.timeout.ms": "1000",
            "num.network.threads": "2",
            "num.io.threads": "2",
            "num.replica.fetchers": "1",
            "num.recovery.threads.per.data.dir": "1",
            "background.threads": "2",
            "log.cleaner.threads": "1",
            "log.cleaner.dedupe.buffer.size": str(8 * 1024 * 1024),
            **self.broker_config,
        }
        return "".join(f"{key}={value}\n" for key, value in config.items())

    def _format(self, node: KafkaNode) -> subprocess.Popen:
        node.root.mkdir(parents=True, exist_ok=True)
        node.config_path.write_text(self._properties(node))
        return subprocess.Popen(
            _java(self.libs, "kafka.tools.StorageTool", "format", f"--cluster-id={self.cluster_id}",
                  f"--config={node.config_path}", "--ignore-formatted", jvm=("-Xmx256m",)),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True)

    def start(self, timeout_s: float = 120.0) -> "KafkaCluster":
        formats = [(node, self._format(node)) for node in self.nodes]  # in parallel: a JVM start each
        for node, proc in formats:
            out, _ = proc.communicate(timeout=120)
            if proc.returncode != 0:
                raise KafkaUnavailable(f"formatting Kafka node {node.node_id} failed: {out[-2000:]}")
        try:
            for node in self.nodes:
                self.start_node(node.node_id, wait=False)
            self.wait_ready(timeout_s)
        except BaseException:
            self.stop()
            raise
        return self

    def start_node(self, node_id: int, *, wait: bool = True, timeout_s: float = 90.0) -> None:
        node = self.node(node_id)
        if node.alive():
            return
        log = open(node.log_path, "ab")
        try:
            node.proc = subprocess.Popen(_java(self.libs, "kafka.Kafka", str(node.config_path)), stdout=log,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        finally:
            log.close()
        _running.add(node)
        if wait:
            self.wait_ready(timeout_s)

    def kill_node(self, node_id: int) -> None:
        """SIGKILL: the broker gets no chance to hand over leadership or flush."""
        self._signal(self.node(node_id), signal.SIGKILL, wait_s=30)

    def stop_node(self, node_id: int, timeout_s: float = 60.0) -> None:
        """SIGTERM: a controlled shutdown, as a rolling restart does it."""
        self._signal(self.node(node_id), signal.SIGTERM, wait_s=timeout_s)

    def _signal(self, node: KafkaNode, sig: int, wait_s: float) -> None:
        if node.proc is None:
            return
        if node.proc.poll() is None:
            try:
                os.killpg(node.proc.pid, sig)
            except ProcessLookupError:
                pass
            try:
                node.proc.wait(wait_s)
            except subprocess.TimeoutExpired:
                os.killpg(node.proc.pid, signal.SIGKILL)
                node.proc.wait(30)
        node.proc = None
        _running.discard(node)

    def stop(self) -> None:
        for node in self.nodes:
            if node.alive():
                os.killpg(node.proc.pid, signal.SIGTERM)  # type: ignore[union-attr]
        for node in self.nodes:
            self._signal(node, signal.SIGKILL, wait_s=20)  # after the SIGTERM above: a wait, then a kill

    def wait_ready(self, timeout_s: float = 90.0) -> float:
        """Block until every live node is registered in the cluster metadata; returns the seconds it took."""
        started = time.monotonic()
        wanted = {n.node_id for n in self.nodes if n.alive()}
        deadline = started + timeout_s
        last: object = None
        while time.monotonic() < deadline:
            for node in self.nodes:
                if node.proc is not None and node.proc.poll() is not None:
                    raise KafkaUnavailable(f"Kafka node {node.node_id} exited ({node.proc.returncode}): "
                                           f"{node.log_path.read_text(errors='replace')[-3000:]}")
            try:
                if wanted <= _in_thread(_broker_ids(self.bootstrap)):
                    return time.monotonic() - started
            except Exception as exc:  # not up yet: connection refused, no metadata
                last = exc
            time.sleep(0.3)
        logs = "\n".join(f"--- node {n.node_id}\n{n.log_path.read_text(errors='replace')[-1500:]}"
                         for n in self.nodes if n.log_path.exists())
        raise KafkaUnavailable(f"Kafka did not serve metadata for nodes {sorted(wanted)} within {timeout_s:.0f} s "
                               f"(last: {last!r})\n{logs}")

    def wait_in_sync(self, topics: list[str], timeout_s: float = 120.0) -> float:
        """Block until every partition of `topics` has all its replicas in sync again; returns the seconds."""
        started = time.monotonic()
        while time.monotonic() < started + timeout_s:
            if _in_thread(_all_in_sync(self.bootstrap, topics)):
                return time.monotonic() - started
            time.sleep(0.5)
        raise TimeoutError(f"partitions of {topics} not back in sync within {timeout_s:.0f} s")

    def tool(self, main: str, *args: str, timeout_s: float = 120.0,
             input_text: Optional[str] = None) -> subprocess.CompletedProcess:
        return run_tool(self.libs, main, *args, timeout_s=timeout_s, input_text=input_text)

    def java_cmd(self, main: str, *args: str) -> list[str]:
        """The command line of a Kafka tool, for a caller that streams its output."""
        return _java(self.libs, main, *args, jvm=("-Xmx256m",))

    def __enter__(self) -> "KafkaCluster":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _in_thread(coro):  # type: ignore[no-untyped-def]
    """Run a coroutine to completion on a loop of its own, whether or not the caller is inside one."""
    box: dict[str, object] = {}

    def run() -> None:
        try:
            box["value"] = asyncio.run(coro)
        except BaseException as exc:  # re-raised in the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["value"]


async def _broker_ids(bootstrap: str) -> set[int]:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000)
    await admin.start()
    try:
        described = await admin.describe_cluster()
        return {int(b["node_id"]) for b in described["brokers"]}
    finally:
        await admin.close()


async def _all_in_sync(bootstrap: str, topics: list[str]) -> bool:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
    await admin.start()
    try:
        for topic in await admin.describe_topics(topics):
            for partition in topic["partitions"]:
                if set(partition["isr"]) != set(partition["replicas"]):
                    return False
        return True
    finally:
        await admin.close()


@atexit.register
def _stop_everything() -> None:
    for node in list(_running):
        if node.alive():
            try:
                os.killpg(node.proc.pid, signal.SIGKILL)  # type: ignore[union-attr]
            except ProcessLookupError:
                pass
