"""Real outside tools touch a running worker, as a user's own stack would.

- Kafka's own console producer publishes a minimal JSON request, its console consumer reads the result back, and
  `kafka-consumer-groups --describe` shows every gapstream group with zero lag afterwards (kafka-tools jars);
- a Node.js producer/consumer on `kafkajs` (npm) publishes a minimal JSON request and reads its result back;
- Debian's `prometheus` server scrapes the worker's /metrics and answers a query for a gapstream metric, and every
  query of the Grafana dashboard parses and runs on it;
- `gapstream submit --wait --json` shows live progress on stderr while stdout stays the result record.

`.ci/run` installs node, npm, prometheus and runs `npm ci` in tests/outside/node; on a machine without them the
tests that need them skip and say what is missing, except in CI (`CI=true`), where a missing tool is a failure.
The Kafka tools need the Kafka cluster (not Tansu, `GAPSTREAM_TEST_BROKER=tansu`).
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from streams.local import free_port
from tests.integration.kafka_tools import produce_raw

ROOT = Path(__file__).parents[2]
NODE_DIR = Path(__file__).parent / "node"
DASHBOARD = ROOT / "infra/deploy/grafana/dashboards/gapstream.json"
# Unique per run: Redis is shared, and memory written under a fixed name by other code would leak in.
USERS = (f"olga-{os.urandom(3).hex()}", f"node-user-{os.urandom(3).hex()}")


def _need(ok: bool, what: str) -> None:
    """Skip where a tool is missing on a developer's machine; in CI the same is a failure, never a skip."""
    if not ok:
        if os.environ.get("CI"):
            pytest.fail(f"{what} (CI must run this test)", pytrace=False)
        pytest.skip(what)


def _cmd(*args):
    exe = shutil.which("gapstream")
    return [exe, *args] if exe else [sys.executable, "-m", "cli", *args]


def _get(url: str, timeout: float = 5) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read().decode()


def _wait_for(check, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except Exception as exc:  # not up yet
            last = exc
        time.sleep(0.25)
    pytest.fail(f"{what} within {timeout_s:.0f} s (last error: {last!r})")


@pytest.fixture(scope="module")
def deployment(broker, redis_url, tmp_path_factory, example_corpus):
    unique = os.urandom(4).hex()
    home = tmp_path_factory.mktemp("outside")
    env = {
        **os.environ,
        "GAPSTREAM_HOME": str(home),
        "GAPSTREAM_KAFKA_BOOTSTRAP": broker.bootstrap,
        "GAPSTREAM_REDIS_URL": redis_url,
        "GAPSTREAM_TOPIC_PREFIX": f"out{unique}.",
        "GAPSTREAM_APP_ID": f"out-{unique}",
        "GAPSTREAM_BROKER_SESSION_TIMEOUT": "4",
        "GAPSTREAM_LAG_INTERVAL_S": "1",
        "GAPSTREAM_LOG_FORMAT": "json",
        "GAPSTREAM_LOG_LEVEL": "INFO",
        "GAPSTREAM_CORPUS_DIR": str(example_corpus),  # knowledge gaps are searched, so searches are counted
    }
    port = free_port()
    log = home / "worker.log"
    with open(log, "w") as stderr:
        proc = subprocess.Popen(_cmd("worker", "--stages", "all", "--metrics-port", str(port)), env=env,
                                stdout=subprocess.DEVNULL, stderr=stderr, text=True)
    try:
        _wait_for(lambda: proc.poll() is None and "gapstream worker: stages" in log.read_text(), 120,
                  f"the worker did not start ({log.read_text()[-2000:] if log.exists() else ''})")
        yield {"env": env, "port": port, "prefix": env["GAPSTREAM_TOPIC_PREFIX"], "log": log,
               "bootstrap": broker.bootstrap}
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            pytest.fail("the worker did not stop on SIGTERM")


@pytest.fixture(scope="module")
def submitted(deployment):
    """One request through `gapstream submit --wait --json`, as a deployment's user runs it."""
    request_id = f"sub-{os.urandom(4).hex()}"
    done = subprocess.run(_cmd("submit", "a poster for this year's Lantern Fair", "--user", USERS[0], "--wait",
                               "--json", "--request-id", request_id, "--timeout", "150"),
                          env=deployment["env"], capture_output=True, text=True, timeout=200)
    assert done.returncode == 0, (done.stderr[-3000:], done.stdout[-2000:])
    return done


def test_submit_wait_shows_progress_on_stderr_and_only_json_on_stdout(submitted):
    result = json.loads(submitted.stdout)
    assert result["status"] == "completed"
    progress = [line for line in submitted.stderr.splitlines() if line.startswith("[")]
    stages = [line.split("] ", 1)[1].split(":", 1)[0] for line in progress]
    assert stages[:5] == ["planner", "searcher", "enricher", "generator", "critic"], submitted.stderr
    assert f"{len(result['gaps'])} gap(s) found" in progress[0]


def test_worker_logs_are_json_with_request_id_and_stage(submitted, deployment):
    request_id = json.loads(submitted.stdout)["request_id"]
    # Every line a worker writes in JSON mode is a JSON object, its start-up announcement included.
    lines = [json.loads(line) for line in deployment["log"].read_text().splitlines() if line.strip()]
    assert any(line["message"].startswith("gapstream worker: stages") for line in lines)
    assert lines and all({"ts", "level", "message", "request_id", "stage"} <= set(line) for line in lines)
    mine = [line for line in lines if line["request_id"] == request_id]
    assert mine and {line["stage"] for line in mine} <= {"planner", "searcher", "enricher", "generator", "critic",
                                                         "publisher"}


def test_a_nodejs_kafkajs_client_publishes_a_minimal_request_and_reads_its_result(deployment):
    _need(bool(shutil.which("node")), "Node.js is not installed (.ci/run installs nodejs and npm)")
    _need((NODE_DIR / "node_modules" / "kafkajs").is_dir(),
          "kafkajs is not installed: run `npm ci` in tests/outside/node (.ci/run does)")
    request_id = f"node-{os.urandom(4).hex()}"
    done = subprocess.run(["node", "roundtrip.mjs", deployment["bootstrap"], deployment["prefix"], request_id,
                           USERS[1], "a paper boat on a pond", "150"],
                          cwd=NODE_DIR, capture_output=True, text=True, timeout=200)
    assert done.returncode == 0, (done.stderr[-3000:], done.stdout[-1000:])
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["request_id"] == request_id and result["user_id"] == USERS[1]
    assert result["status"] == "completed" and result["images"] and result["prompt"].startswith("a paper boat")


def test_kafka_console_producer_and_consumer_round_trip_a_minimal_request(deployment, broker):
    _need(broker.kind == "kafka", "Kafka's console tools run against the Kafka cluster, not Tansu")
    request_id = f"console-{os.urandom(4).hex()}"
    minimal = json.dumps({"request_id": request_id, "user_id": USERS[0], "prompt": "a red kite over dunes"})
    broker.tool("org.apache.kafka.tools.ConsoleProducer", "--bootstrap-server", broker.bootstrap,
                "--topic", f"{deployment['prefix']}requests", "--property", "parse.key=true",
                "--property", "key.separator=\t", input_text=f"{request_id}\t{minimal}\n")
    # From the beginning of `results`, keys printed: stop at the first line for our request.
    consumer = subprocess.Popen(
        broker.java_cmd("org.apache.kafka.tools.consumer.ConsoleConsumer", "--bootstrap-server", broker.bootstrap,
                        "--topic", f"{deployment['prefix']}results", "--from-beginning",
                        "--property", "print.key=true", "--property", "key.separator=\t", "--timeout-ms", "150000"),
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        for line in consumer.stdout:
            key, _, value = line.rstrip("\n").partition("\t")
            if key == request_id:
                result = json.loads(value)
                break
        else:
            pytest.fail(f"the console consumer saw no result for {request_id}")
    finally:
        consumer.kill()
        consumer.wait()
    assert result["status"] == "completed" and result["user_id"] == USERS[0] and result["images"]


def test_kafka_consumer_groups_shows_every_stage_group_with_zero_lag(deployment, broker, submitted):
    _need(broker.kind == "kafka", "kafka-consumer-groups runs against the Kafka cluster, not Tansu")
    app = deployment["env"]["GAPSTREAM_APP_ID"]
    stages = ("planner", "searcher", "enricher", "generator", "critic", "publisher")

    def described():
        out = broker.tool("org.apache.kafka.tools.consumer.group.ConsumerGroupCommand", "--bootstrap-server",
                          broker.bootstrap, "--describe", "--all-groups").stdout
        rows = [line.split() for line in out.splitlines() if line.startswith(f"{app}-")]
        # GROUP TOPIC PARTITION CURRENT-OFFSET LOG-END-OFFSET LAG CONSUMER-ID HOST CLIENT-ID; an empty partition
        # has no committed offset, and its lag shows as "-".
        groups = {row[0] for row in rows}
        lags = [row[5] if row[4] != "0" else "0" for row in rows if row[1].startswith(deployment["prefix"])]
        consumed = [row for row in rows if row[1].startswith(deployment["prefix"]) and row[4] != "0"]
        return (groups >= {f"{app}-{stage}" for stage in stages} and len(consumed) >= len(stages)
                and all(lag == "0" for lag in lags) and (groups, lags))

    _wait_for(described, 60, "every gapstream group at zero lag")


def _families(port: int) -> dict:
    return {f.name: f for f in text_string_to_metric_families(_get(f"http://127.0.0.1:{port}/metrics"))}


async def test_metrics_cover_stages_requests_lag_and_errors_with_bounded_labels(submitted, deployment):
    request_id = json.loads(submitted.stdout)["request_id"]
    # Garbage on the requests topic: an error by class and a dead letter, and the worker keeps going.
    await produce_raw(deployment["bootstrap"], f"{deployment['prefix']}requests", b"garbage-1", b"not json")
    families = _wait_for(lambda: (f := _families(deployment["port"])) and any(
        s.value > 0 for s in f["gapstream_dead_letters"].samples) and any(
        s.value >= 0 for s in f["gapstream_consumer_lag_messages"].samples) and f, 60,
        "no dead letter or lag sample in /metrics")
    wanted = {
        "gapstream_stage_events": "counter", "gapstream_stage_errors": "counter", "gapstream_stage_seconds": "histogram",
        "gapstream_stage_in_flight": "gauge", "gapstream_stage_messages_in": "counter",
        "gapstream_stage_messages_out": "counter", "gapstream_request_seconds": "histogram",
        "gapstream_request_rounds": "histogram", "gapstream_request_drafts": "histogram",
        "gapstream_request_score": "histogram", "gapstream_request_wall_seconds": "histogram",
        "gapstream_results": "counter", "gapstream_gaps": "counter",
        "gapstream_images": "counter", "gapstream_consumer_lag_messages": "gauge", "gapstream_searches": "counter",
        "gapstream_dead_letters": "counter",
    }
    for name, kind in wanted.items():
        assert name in families and families[name].type == kind, name
        assert families[name].samples, f"{name} has no samples after a completed request"
    stages_in = {s.labels["stage"] for s in families["gapstream_stage_messages_in"].samples}
    assert stages_in == {"planner", "searcher", "enricher", "generator", "critic", "publisher"}
    lag = families["gapstream_consumer_lag_messages"].samples
    assert {s.labels["topic"] for s in lag} >= {f"{deployment['prefix']}requests"}
    assert all(s.labels["partition"].isdigit() for s in lag)
    errors = {(s.labels["stage"], s.labels["error_class"]) for s in families["gapstream_stage_errors"].samples
              if s.name.endswith("_total")}
    assert ("planner", "JSONDecodeError") in errors

    forbidden = {request_id, "garbage-1", *USERS}
    for family in families.values():
        for sample in family.samples:
            assert not {"request_id", "user_id", "user"} & set(sample.labels), sample
            assert not any(f in value for value in sample.labels.values() for f in forbidden), sample


def test_debian_prometheus_scrapes_the_worker_and_runs_every_dashboard_query(submitted, deployment, tmp_path):
    _need(bool(shutil.which("prometheus")), "Debian's prometheus is not installed (.ci/run installs it)")
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        f"  - job_name: gapstream\n    static_configs:\n      - targets: ['127.0.0.1:{deployment['port']}']\n")
    web = free_port()
    log = tmp_path / "prometheus.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(["prometheus", f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                                 f"--web.listen-address=127.0.0.1:{web}", "--log.level=warn"],
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    api = f"http://127.0.0.1:{web}/api/v1/query?query="

    def query(expr: str) -> dict:
        answer = json.loads(_get(api + urllib.parse.quote(expr)))
        assert answer["status"] == "success", answer
        return answer["data"]

    try:
        results = _wait_for(lambda: query('gapstream_results_total{status="completed"}')["result"], 90,
                            f"Prometheus has no gapstream_results_total ({log.read_text()[-1500:]})")
        assert float(results[0]["value"][1]) >= 1 and results[0]["metric"]["job"] == "gapstream"
        assert query('up{job="gapstream"}')["result"][0]["value"][1] == "1"
        # Every panel of the dashboard is a query Prometheus accepts (Grafana's interval variable filled in).
        dashboard = json.loads(DASHBOARD.read_text())
        exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
        for expr in exprs:
            query(expr.replace("$__rate_interval", "1m"))
        # The stages' throughput panel has data once a rate window holds two scrapes.
        _wait_for(lambda: query(exprs[1].replace("$__rate_interval", "1m"))["result"], 30,
                  "the dashboard's per-stage throughput has no data")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_the_compose_scrape_config_passes_promtool():
    _need(bool(shutil.which("promtool")), "promtool (Debian's prometheus) is not installed")
    done = subprocess.run(["promtool", "check", "config", str(ROOT / "infra/deploy/prometheus/prometheus.yml")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


ASYNCAPI_SPEC = NODE_DIR / "node_modules" / "@asyncapi" / "specs" / "schemas" / "3.0.0.json"


def test_the_asyncapi_document_is_valid_against_the_official_asyncapi_3_schema():
    _need(ASYNCAPI_SPEC.is_file(), "@asyncapi/specs is not installed: run `npm ci` in tests/outside/node (.ci/run does)")
    import jsonschema
    import yaml

    spec = json.loads(ASYNCAPI_SPEC.read_text())
    validator = jsonschema.validators.validator_for(spec)(spec)
    document = yaml.safe_load((ROOT / "schemas" / "asyncapi.yaml").read_text())
    errors = [f"{list(e.path)}: {e.message[:200]}" for e in validator.iter_errors(document)]
    assert not errors, errors[:5]
    # The official schema does catch mistakes: AsyncAPI 2's `publish` is no operation action in 3.
    broken = json.loads(json.dumps(document))
    next(iter(broken["operations"].values()))["action"] = "publish"
    assert list(validator.iter_errors(broken))
