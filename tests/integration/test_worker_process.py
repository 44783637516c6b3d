"""`gapstream worker` and `gapstream submit` as separate processes against one broker and Redis, as a deployment runs.

Also a request from a foreign producer with only the three required fields, and a scrape of the worker's /metrics.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

from streams.local import free_port
from tests.integration.kafka_tools import produce_raw, read_topic


def _cmd(*args):
    exe = shutil.which("gapstream")
    return [exe, *args] if exe else [sys.executable, "-m", "cli", *args]


@pytest.fixture
def deployment(broker, redis_url, tmp_path, unique):
    env = {
        **os.environ,
        "GAPSTREAM_HOME": str(tmp_path),
        "GAPSTREAM_KAFKA_BOOTSTRAP": broker.bootstrap,
        "GAPSTREAM_REDIS_URL": redis_url,
        "GAPSTREAM_TOPIC_PREFIX": f"wp{unique}.",
        "GAPSTREAM_APP_ID": f"wp-{unique}",
        "GAPSTREAM_BROKER_SESSION_TIMEOUT": "4",
    }
    env.pop("GAPSTREAM_CORPUS_DIR", None)
    port = free_port()
    cpu = subprocess.Popen(_cmd("worker", "--stages", "planner,searcher,enricher,critic,publisher",
                                "--metrics-port", str(port)),
                           env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    gpu = subprocess.Popen(_cmd("worker", "--stages", "generator"),
                           env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        yield env, port
    finally:
        for proc in (cpu, gpu):
            proc.send_signal(signal.SIGTERM)
        for proc in (cpu, gpu):
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                pytest.fail("a worker did not stop on SIGTERM")
        assert cpu.returncode == 0 and gpu.returncode == 0, (cpu.stderr.read(), gpu.stderr.read())


def _metrics(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return response.read().decode()


async def test_split_workers_serve_submit_and_a_minimal_foreign_request(deployment, broker, unique):
    env, port = deployment
    submitted = subprocess.run(_cmd("submit", "a lighthouse in a storm", "--user", f"carol-{unique}", "--wait", "--json",
                                    "--request-id", f"cli-{unique}", "--timeout", "120"),
                               env=env, capture_output=True, text=True, timeout=180)
    result = json.loads(submitted.stdout) if submitted.stdout.strip().startswith("{") else {}
    assert submitted.returncode == 0, (submitted.stderr, result.get("error"), result.get("degraded"))
    assert result["status"] == "completed" and result["request_id"] == f"cli-{unique}"
    assert {t["stage"] for t in result["timings"]} == {"planner", "searcher", "enricher", "generator", "critic",
                                                       "publisher"}

    # A follow-up through `submit`, as through `run`: it names its parent and keeps the parent's subject.
    followed = subprocess.run(_cmd("submit", "now at night", "--user", f"carol-{unique}", "--wait", "--json",
                                   "--follow", f"cli-{unique}", "--timeout", "120"),
                              env=env, capture_output=True, text=True, timeout=180)
    follow_up = json.loads(followed.stdout) if followed.stdout.strip().startswith("{") else {}
    assert followed.returncode == 0, (followed.stderr, follow_up.get("error"), follow_up.get("degraded"))
    assert follow_up["request"]["parent_request_id"] == f"cli-{unique}"
    assert "lighthouse" in follow_up["prompt"].lower()

    # What a service in another language publishes: three fields, keyed by request_id.
    minimal = {"request_id": f"foreign-{unique}", "user_id": f"dave-{unique}", "prompt": "a paper boat on a pond"}
    await produce_raw(broker.bootstrap, f"wp{unique}.requests", minimal["request_id"].encode(),
                      json.dumps(minimal).encode())
    deadline = time.monotonic() + 120
    found = []
    while not found and time.monotonic() < deadline:
        found = [r for r in await read_topic(broker.bootstrap, f"wp{unique}.results")
                 if r.get("request_id") == minimal["request_id"]]
    assert found and found[0]["status"] == "completed" and found[0]["images"]

    text = _metrics(port)
    assert 'gapstream_stage_events_total{outcome="ok",stage="planner"}' in text
    assert 'gapstream_results_total{status="completed"}' in text
    assert "request_id" not in text and f"carol-{unique}" not in text and f"cli-{unique}" not in text  # bounded labels only
