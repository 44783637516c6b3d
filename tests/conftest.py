import json
import os
import uuid
from pathlib import Path

import pytest

from streams.local import EmbeddedBroker
from tests.kafka.cluster import KafkaCluster, KafkaUnavailable
from tests.servers import RestartableRedis

# Nothing in the tests may reach a model hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="session")
def examples() -> dict:
    return json.loads((DATA / "context-gap-examples.json").read_text())


@pytest.fixture(scope="session")
def example_corpus(tmp_path_factory, examples) -> Path:
    root = tmp_path_factory.mktemp("corpus")
    for name, text in examples["corpus"].items():
        (root / name).write_text(text)
    return root


# --- the real servers every suite uses: Apache Kafka (or Tansu), Redis ------------------------------------------
# The broker the suites are judged on is Apache Kafka (`tests/kafka/cluster.py`, 3 KRaft nodes); when it cannot
# be fetched or started the tests fail, never skip. `GAPSTREAM_TEST_BROKER=tansu` runs the same suites on the
# embedded Tansu broker instead (quicker, for development); `tansu_broker` is the Tansu of the embedded-path tests.
TEST_BROKER = os.environ.get("GAPSTREAM_TEST_BROKER", "kafka")


@pytest.fixture(scope="session")
def tansu_broker(tmp_path_factory):
    with EmbeddedBroker(log_dir=tmp_path_factory.mktemp("tansu")) as running:
        yield running


@pytest.fixture(scope="session")
def kafka_cluster(tmp_path_factory):
    """Three combined broker+controller nodes; topics get replication 3 and min.insync.replicas 2."""
    try:
        cluster = KafkaCluster(tmp_path_factory.mktemp("kafka"), nodes=3)
        cluster.start()
    except KafkaUnavailable as exc:
        pytest.fail(f"Apache Kafka could not be started for the tests: {exc}", pytrace=False)
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def broker(request):
    """The broker of the integration, chaos, fuzz-worker and outside-client suites: `.bootstrap`, `.kind`."""
    if TEST_BROKER == "tansu":
        return request.getfixturevalue("tansu_broker")
    if TEST_BROKER != "kafka":
        pytest.fail(f"GAPSTREAM_TEST_BROKER must be kafka or tansu, got {TEST_BROKER!r}", pytrace=False)
    return request.getfixturevalue("kafka_cluster")


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    """A redis-server of this test session's own on a free port (nothing is assumed to run before the tests)."""
    try:
        server = RestartableRedis(tmp_path_factory.mktemp("redis"), persist=False).start()
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_url(redis_server):
    return redis_server.url


@pytest.fixture
def unique() -> str:
    return uuid.uuid4().hex[:10]
