"""The human-readable account of a result: where the image is and how each gap was closed."""

from __future__ import annotations

from collections import defaultdict

from schemas.records import ResultRecord


def _path(uri: str) -> str:
    return uri[len("file://"):] if uri.startswith("file://") else uri


def format_result(result: ResultRecord) -> str:
    lines = []
    score = f", score {result.score:.2f}" if result.score is not None else ""
    lines.append(f"request {result.request_id} for {result.user_id}: {result.status}"
                 f" after {result.rounds} round(s){score}")
    if result.error:
        lines.append(f"error: {result.error}")
    if result.status == "needs_clarification" and result.question:
        lines.append(f"question: {result.question}")
        lines.append(f'answer with: gapstream answer {result.request_id} "..." --user {result.user_id}'
                     + (f" (before {result.expires_at})" if result.expires_at else ""))
    if result.parent:
        lines.append(f"follows: {result.parent.request_id} ({result.parent.prompt})")
    if result.clarification:
        lines.append(f"answered: {result.clarification.question} -> {result.clarification.answer}")
    if result.best_image:
        lines.append(f"image: {_path(result.best_image.uri)}")
    for ref in result.images:
        if not result.best_image or ref.uri != result.best_image.uri:
            lines.append(f"  draft: {_path(ref.uri)}")
    if result.prompt:
        lines.append(f"prompt: {result.prompt}")
    if result.negative_prompt:
        lines.append(f"negative: {result.negative_prompt}")
    if result.gaps:
        lines.append("gaps:")
        for gap in result.gaps:
            how = f"{gap.value!r} from {gap.source}" if gap.status == "filled" else (gap.reason or gap.status)
            by = f" [{gap.filled_by}]" if gap.filled_by else ""
            lines.append(f"  {gap.id} {gap.kind}/{gap.strategy} {gap.description}: {how}{by}")
            if gap.reasoning:
                lines.append(f"     why: {gap.reasoning}")
    if result.searches:
        lines.append("searches:")
        for search in result.searches:
            found = f"{len(search.hits)} hit(s)" if not search.error else f"error: {search.error}"
            found += " (cached)" if search.cached else ""
            lines.append(f"  [{search.backend}] {search.query!r}: {found}")
    if result.memory_used:
        lines.append("memory used: " + "; ".join(item.text for item in result.memory_used))
    if result.memory_written:
        lines.append("remembered: " + "; ".join(item.text for item in result.memory_written))
    for critique in result.critiques:
        failed = [c.item_id for c in critique.checks if not c.passed]
        detail = f", failed {', '.join(failed)}" if failed else ""
        lines.append(f"round {critique.round}: {critique.verdict} (score {critique.score:.2f}{detail})")
    if result.llm_calls:
        lines.append("model calls: " + ", ".join(
            f"{c.stage} {c.model} r{c.round} {c.prompt_tokens}+{c.completion_tokens} tokens"
            + ("" if c.outcome == "ok" else f" ({c.outcome})") for c in result.llm_calls))
    if result.timings:
        per_stage: dict[str, float] = defaultdict(float)
        for timing in result.timings:
            per_stage[timing.stage] += timing.seconds
        lines.append("timings: " + ", ".join(f"{stage} {seconds * 1000:.0f} ms" for stage, seconds in per_stage.items()))
    if result.degraded:
        lines.append("degraded: " + "; ".join(d.detail for d in result.degraded))
    return "\n".join(lines)
