"""Live progress: each stage on stderr as it completes, while stdout keeps only the result."""

import io
import json
import os
import shutil
import subprocess
import sys

from aiokafka.partitioner import DefaultPartitioner

from cli.progress import Printer
from streams.progress import describe, partition_for


def _gapstream(*args, home, extra_env=None):
    exe = shutil.which("gapstream")
    cmd = [exe, *args] if exe else [sys.executable, "-m", "cli", *args]
    env = {k: v for k, v in os.environ.items()
           if k not in ("GAPSTREAM_KAFKA_BOOTSTRAP", "GAPSTREAM_REDIS_URL", "GAPSTREAM_CORPUS_DIR")}
    env |= {"GAPSTREAM_HOME": str(home), **(extra_env or {})}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env)


def test_run_shows_each_stage_on_stderr_and_keeps_stdout_pure_json(tmp_path, example_corpus):
    done = _gapstream("run", "a poster for this year's Lantern Fair", "--user", "erin", "--json",
                      "--max-rounds", "2", "--accept-score", "1.0", home=tmp_path,
                      extra_env={"GAPSTREAM_CORPUS_DIR": str(example_corpus)})
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)  # nothing but the record on stdout
    assert result["status"] == "completed" and result["rounds"] == 2
    lines = done.stderr.splitlines()
    stages = [line.split("] ", 1)[1].split(":", 1)[0] for line in lines if line.startswith("[")]
    # Plain lines (stderr is a pipe here), in pipeline order, one per stage and round.
    assert stages == ["planner", "searcher", "enricher", "generator", "critic", "enricher", "generator", "critic"]
    planner = next(line for line in lines if "planner:" in line)
    assert f"{len(result['gaps'])} gap(s) found" in planner
    searcher = next(line for line in lines if "searcher:" in line)
    assert f"{len(result['searches'])} search(es)" in searcher and f"{len(result['facts'])} fact(s)" in searcher
    critics = [line for line in lines if "critic:" in line]
    assert [f"score {c['score']:.2f}" in line for c, line in zip(result["critiques"], critics)] == [True, True]
    assert "\x1b[" not in done.stderr  # no terminal styling when stderr is not a terminal


def test_no_progress_keeps_stderr_quiet(tmp_path):
    done = _gapstream("run", "a bowl of lemons", "--user", "erin", "--json", "--no-progress", home=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["status"] == "completed"
    assert "planner:" not in done.stderr and "critic" not in done.stderr


def test_progress_reads_the_partition_the_default_partitioner_picks():
    for key in (b"r-1", b"a" * 40, "ünïcode".encode()):
        for n in (1, 4, 8, 13):
            assert partition_for(key, n) == DefaultPartitioner()(key, list(range(n)), list(range(n)))


def test_terminal_lines_are_styled_and_plain_lines_are_not():
    styled, plain = io.StringIO(), io.StringIO()
    Printer(styled, styled=True)("critic", "round 1: accept, score 0.90")
    Printer(plain, styled=False)("critic", "round 1: accept, score 0.90")
    assert "\x1b[" in styled.getvalue() and "✓" in styled.getvalue()
    assert plain.getvalue().rstrip().endswith("critic: round 1: accept, score 0.90")
    assert "\x1b[" not in plain.getvalue()


def test_a_dead_letter_and_garbage_are_described_without_failing():
    line = describe("dead-letters", {"stage": "planner", "error": "invalid requests record: prompt: blank"})
    assert line.startswith("planner could not process") and "prompt: blank" in line
    assert describe("critiques", {"critique": {"verdict": "revise", "score": "x"}}) == "round 0: revise, no score"


def test_on_a_terminal_stderr_gets_styled_lines_and_stdout_still_only_json(tmp_path):
    import pty

    exe = shutil.which("gapstream")
    cmd = [exe] if exe else [sys.executable, "-m", "cli"]
    env = {k: v for k, v in os.environ.items()
           if k not in ("GAPSTREAM_KAFKA_BOOTSTRAP", "GAPSTREAM_REDIS_URL", "GAPSTREAM_CORPUS_DIR")}
    env["GAPSTREAM_HOME"] = str(tmp_path)
    controller, terminal = pty.openpty()
    try:
        proc = subprocess.Popen([*cmd, "run", "a kite over a hill", "--user", "erin", "--json"], env=env,
                                stdout=subprocess.PIPE, stderr=terminal, text=True)
        os.close(terminal)
        seen = b""
        while True:
            try:
                chunk = os.read(controller, 4096)
            except OSError:  # the terminal closes when the process exits
                break
            if not chunk:
                break
            seen += chunk
        stdout, _ = proc.communicate(timeout=240)
    finally:
        os.close(controller)
    assert proc.returncode == 0, seen.decode(errors="replace")
    assert json.loads(stdout)["status"] == "completed"
    text = seen.decode(errors="replace")
    assert "\x1b[" in text and "✓" in text and "critic" in text and "planner" in text
