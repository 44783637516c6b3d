"""`gapstream bench pipeline|scaleout --json` as a user runs them: one JSON object on stdout, keys naming units.

Small runs with short simulated latencies; the checks are on what the figures must be, never on how fast this
machine is (upper bounds come from the simulated costs themselves, which no load can beat).
"""

import json
import os
import subprocess
import sys

import pytest

from streams.topology import STAGES


def _bench(args, env, timeout=400):
    proc = subprocess.run([sys.executable, "-c", "from cli.main import main; main()", "bench", *args, "--json"],
                          env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)  # stdout holds the JSON object and nothing else


@pytest.fixture
def env(broker, redis_url, tmp_path):
    env = {**os.environ, "GAPSTREAM_HOME": str(tmp_path), "GAPSTREAM_KAFKA_BOOTSTRAP": broker.bootstrap,
           "GAPSTREAM_REDIS_URL": redis_url, "GAPSTREAM_BROKER_SESSION_TIMEOUT": "4"}
    for name in ("GAPSTREAM_CORPUS_DIR", "GAPSTREAM_LLM_MODEL", "GAPSTREAM_VLM_MODEL", "SERPAPI_API_KEY"):
        env.pop(name, None)
    return env


def test_bench_pipeline_json(env):
    llm_s, image_s = 0.02, 0.01
    f = _bench(["pipeline", "--requests", "12", "--raw-requests", "12", "--in-flight", "6", "--latency-requests", "3",
                "--realistic-requests", "6", "--sequential-requests", "2",
                "--llm-s", str(llm_s), "--search-s", "0.01", "--image-s", str(image_s),
                "--image-batch-s", "0.004"], env)
    for key in ("requests_per_s_raw", "requests_per_s_instant", "requests_per_s_pipeline_realistic",
                "requests_per_s_sequential", "pipeline_over_raw_ratio", "pipeline_over_sequential_ratio"):
        assert f[key] > 0, key
    for prefix in ("latency_raw", "latency_instant", "latency_raw_one_in_flight", "latency_instant_one_in_flight",
                   "latency_realistic"):
        assert 0 < f[f"{prefix}_p50_ms"] <= f[f"{prefix}_p95_ms"] <= f[f"{prefix}_p99_ms"], prefix
    for q in (50, 95, 99):
        assert isinstance(f[f"added_latency_p{q}_ms"], float)
    assert f["pipeline_over_raw_ratio"] == pytest.approx(f["requests_per_s_instant"] / f["requests_per_s_raw"],
                                                         abs=0.002)
    # Every stage that runs through StageProcessor.process did work on the loop (the micro-batching generator
    # drives its own loop, counted outside the stages), and the per-stage CPU is part of the process's, not more.
    by_stage = f["cpu_s_per_request_by_stage"]
    assert set(by_stage) == set(STAGES)
    assert all(v > 0 for stage, v in by_stage.items() if stage != "generator") and by_stage["generator"] >= 0
    assert sum(by_stage.values()) <= f["cpu_s_per_request_process"]
    # The simulated latencies are really paid: each sequential request makes 3 model calls (plan, enrich,
    # critique) and renders 1 image one after another, so it cannot be faster than their sum.
    assert f["seconds_per_request_sequential"] >= 3 * llm_s + image_s
    assert f["simulated_latency_s"] == {"llm_call": llm_s, "search": 0.01, "image": image_s,
                                        "further_image_in_batch": 0.004}
    # With a batching gain configured, the same run without it is reported beside it.
    assert f["requests_per_s_pipeline_realistic_no_batch_gain"] > 0
    assert f["pipeline_over_sequential_ratio_no_batch_gain"] == pytest.approx(
        f["requests_per_s_pipeline_realistic_no_batch_gain"] / f["requests_per_s_sequential"], abs=0.01)
    assert f["record_bytes"] > 500 and f["machine"]["cpus"] >= 1


def test_bench_scaleout_json(env):
    image_s = 0.05
    f = _bench(["scaleout", "--workers", "1,2", "--partitions", "4", "--images", "8", "--image-s", str(image_s)],
               env)
    assert f["worker_processes"] == [1, 2] and f["partitions"] == 4
    assert 0 < f["images_per_s_1_workers"] <= 1 / image_s  # one worker sleeps image_s per image
    assert 0 < f["images_per_s_2_workers"] <= 2 / image_s
    assert f["scaling_efficiency_2_workers"] == pytest.approx(
        f["images_per_s_2_workers"] / (2 * f["images_per_s_1_workers"]), abs=0.002)


def test_bench_scaleout_rejects_more_workers_than_partitions(env):
    proc = subprocess.run([sys.executable, "-c", "from cli.main import main; main()", "bench", "scaleout",
                           "--workers", "4", "--partitions", "2"], env=env, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "partitions" in proc.stderr
