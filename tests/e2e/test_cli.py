"""The CLI as a newcomer uses it: embedded broker and Redis, memory that persists between runs, one-line errors."""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest


def _gapstream(*args: str, home: Path, timeout: float = 180, extra_env=None) -> subprocess.CompletedProcess:
    exe = shutil.which("gapstream")
    cmd = [exe, *args] if exe else [sys.executable, "-m", "cli", *args]
    env = {k: v for k, v in os.environ.items()
           if k not in ("GAPSTREAM_KAFKA_BOOTSTRAP", "GAPSTREAM_REDIS_URL", "GAPSTREAM_CORPUS_DIR")}
    env |= {"GAPSTREAM_HOME": str(home), **(extra_env or {})}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)


def test_run_uses_remembered_facts_and_prints_only_json(tmp_path, example_corpus):
    home = tmp_path / "home"
    added = _gapstream("memory", "add", "alice", "my dog Max is a corgi", home=home)
    assert added.returncode == 0, added.stderr
    assert _gapstream("memory", "add", "alice", "I like watercolor", home=home).returncode == 0
    shown = _gapstream("memory", "show", "alice", "--json", home=home)
    assert {item["text"] for item in json.loads(shown.stdout)} == {"my dog Max is a corgi", "I like watercolor"}

    started = time.monotonic()
    run = _gapstream("run", "a poster of my dog Max at the beach in my usual style", "--user", "alice", "--json",
                     home=home, extra_env={"GAPSTREAM_CORPUS_DIR": str(example_corpus)})
    wall = time.monotonic() - started
    print(f"\ngapstream run on embedded defaults: {wall:.1f} s wall")
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)  # stdout holds the JSON record and nothing else
    assert result["status"] == "completed"
    assert "corgi" in result["prompt"].lower() and "watercolor" in result["prompt"].lower()
    image = Path(result["best_image"]["uri"].removeprefix("file://"))
    assert image.is_file() and image.is_relative_to(home)
    assert {gap["kind"] for gap in result["gaps"]} >= {"memory"}

    human = _gapstream("run", "a bowl of lemons on a marble counter", "--user", "alice", home=home)
    assert human.returncode == 0, human.stderr
    assert "image: " in human.stdout and "gaps:" in human.stdout

    # Both accepted results were learned (history with the image, entities referred to), beside the 2 statements.
    remembered = json.loads(_gapstream("memory", "show", "alice", "--json", home=home).stdout)
    history = [item for item in remembered if item["kind"] == "history"]
    assert result["request_id"] in {h["request_id"] for h in history} and len(history) == 2
    assert all(item["source"] and item["created_at"] for item in remembered)
    shown = _gapstream("memory", "show", "alice", home=home).stdout
    assert "(from result:" in shown and "until " in shown

    forgot = _gapstream("memory", "forget", "alice", home=home)
    assert forgot.returncode == 0 and f"forgot {len(remembered)} item(s)" in forgot.stdout
    assert json.loads(_gapstream("memory", "show", "alice", "--json", home=home).stdout) == []


def test_follow_up_and_clarifying_question_from_the_cli(tmp_path):
    home = tmp_path / "home"
    asked = _gapstream("run", "draw my logo on a mug", "--user", "zoe", "--ask", "--json", home=home)
    assert asked.returncode == 0, asked.stderr
    question = json.loads(asked.stdout)
    assert question["status"] == "needs_clarification" and "logo" in question["question"]

    answered = _gapstream("answer", question["request_id"], "a blue fox", "--user", "zoe", "--json", home=home)
    assert answered.returncode == 0, answered.stderr
    done = json.loads(answered.stdout)
    assert done["request_id"] == question["request_id"] and done["status"] == "completed"
    assert "blue fox" in done["prompt"].lower()

    follow = _gapstream("run", "now at night", "--user", "zoe", "--follow", question["request_id"], "--json",
                        home=home)
    assert follow.returncode == 0, follow.stderr
    after = json.loads(follow.stdout)
    assert after["parent"]["request_id"] == question["request_id"]
    assert "night" in after["prompt"].lower() and "blue fox" in after["prompt"].lower()

    item = next(i for i in json.loads(_gapstream("memory", "show", "zoe", "--json", home=home).stdout)
                if i["source"] == f"answer:{question['request_id']}")
    one = _gapstream("memory", "forget", "zoe", "--item", item["id"], home=home)
    assert "forgot 1 item(s)" in one.stdout
    assert item["id"] not in _gapstream("memory", "show", "zoe", home=home).stdout


@pytest.mark.parametrize("args, env, needle", [
    (("runn", "a cat", "--user", "alice"), {}, "No such command"),
    (("run", "", "--user", "alice"), {}, "prompt"),
    (("run", "a cat", "--user", "alice", "--width", "65"), {}, "multiple of 8"),
    (("run", "a cat", "--user", "bad user"), {}, "user_id"),
    (("run", "a cat"), {}, "--user"),
    (("memory", "add", "bad:user*", "x"), {}, "user"),
    (("worker", "--stages", "plannr"), {}, "unknown stage"),
    (("worker",), {}, "GAPSTREAM_KAFKA_BOOTSTRAP"),
    (("submit", "a cat", "--user", "alice"), {}, "GAPSTREAM_KAFKA_BOOTSTRAP"),
    (("run", "a cat", "--user", "alice"), {"GAPSTREAM_DEFAULT_STEPS": "many"}, "GAPSTREAM_DEFAULT_STEPS"),
    (("run", "a cat", "--user", "alice"), {"GAPSTREAM_CORPUS_DIR": "/nonexistent/docs"}, "GAPSTREAM_CORPUS_DIR"),
    (("run", "a cat", "--user", "alice", "--follow", "bad id*"), {}, "parent_request_id"),
    (("answer", "r-1", "  ", "--user", "alice"), {}, "answer"),
    (("answer", "never-asked", "a fox", "--user", "alice"), {}, "no question is waiting"),
])
def test_mistakes_get_one_line_not_a_traceback(tmp_path, args, env, needle):
    done = _gapstream(*args, home=tmp_path, timeout=60, extra_env=env)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert needle in lines[0]
