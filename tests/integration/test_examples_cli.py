"""Every public example (tests/data/context-gap-examples.json) through the CLI, as a user runs them: one
`gapstream worker` with every stage on the test's broker and Redis and the examples' corpus, `gapstream memory add`
for each memory line and `gapstream submit --wait --json` for each request. The final prompt must hold every
`expect` word and no `forbid` word, and no search query (corpus or web) may contain a `forbid_search` word.

The worker matches by meaning with the real all-MiniLM-L6-v2 (the default), so this is also the examples on the
default brain end to end; tests/unit/test_context_gap_examples.py runs the same cases in process.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys

import pytest

pytestmark = pytest.mark.timeout(900)


def _cmd(*args: str) -> list[str]:
    exe = shutil.which("gapstream")
    return [exe, *args] if exe else [sys.executable, "-m", "cli", *args]


@pytest.fixture(scope="module")
def deployment(broker, redis_url, example_corpus, tmp_path_factory):
    import uuid

    unique = uuid.uuid4().hex[:8]
    env = {
        **os.environ,
        "GAPSTREAM_HOME": str(tmp_path_factory.mktemp("examples-home")),
        "GAPSTREAM_KAFKA_BOOTSTRAP": broker.bootstrap,
        "GAPSTREAM_REDIS_URL": redis_url,
        "GAPSTREAM_TOPIC_PREFIX": f"ex{unique}.",
        "GAPSTREAM_APP_ID": f"ex-{unique}",
        "GAPSTREAM_BROKER_SESSION_TIMEOUT": "4",
        "GAPSTREAM_CORPUS_DIR": str(example_corpus),
    }
    for name in ("SERPAPI_API_KEY", "GAPSTREAM_LLM_MODEL", "GAPSTREAM_VLM_MODEL", "GAPSTREAM_SEMANTIC_MATCHING"):
        env.pop(name, None)
    worker = subprocess.Popen(_cmd("worker"), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        yield env, unique
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
        assert worker.returncode == 0, worker.stderr.read()


def test_every_public_example_through_the_cli(deployment, examples):
    env, unique = deployment
    users = {case["user"]: f"{case['user']}-{unique}" for case in examples["cases"]}
    for case in examples["cases"]:  # all memories first: ex-8 must not see ex-1's "Pixel"
        for line in case["memory"]:
            added = subprocess.run(_cmd("memory", "add", users[case["user"]], line), env=env, capture_output=True,
                                   text=True, timeout=120)
            assert added.returncode == 0, added.stderr
    failures = []
    for case in examples["cases"]:
        done = subprocess.run(_cmd("submit", case["prompt"], "--user", users[case["user"]], "--wait", "--json",
                                   "--no-progress", "--timeout", "180"),
                              env=env, capture_output=True, text=True, timeout=240)
        assert done.stdout.strip().startswith("{"), (case["user"], done.returncode, done.stderr)
        result = json.loads(done.stdout)
        assert done.returncode == 0, (case["user"], result.get("status"), result.get("error"), result.get("degraded"))
        assert result["status"] == "completed", (case["user"], result.get("error"), result.get("degraded"))
        prompt = result["prompt"].lower()
        queries = [s["query"].lower() for s in result.get("searches", [])]
        problems = [f"missing {w!r}" for w in case["expect"] if w.lower() not in prompt]
        problems += [f"forbidden {w!r}" for w in case["forbid"] if w.lower() in prompt]
        problems += [f"searched {w!r} in {q!r}" for w in case.get("forbid_search", []) for q in queries
                     if w.lower() in q]
        if problems:
            failures.append(f"{case['user']}: {', '.join(problems)} | prompt {result['prompt']!r}")
    assert not failures, "\n".join(failures)
