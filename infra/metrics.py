"""Prometheus metrics for every worker. Labels are bounded: stage, outcome, error class — never a user or request."""

from __future__ import annotations

from typing import Optional

from prometheus_client import Counter, Gauge, Histogram, start_http_server

STAGE_EVENTS = Counter(
    "gapstream_stage_events_total", "Messages a stage finished, by outcome", ["stage", "outcome"]
)
STAGE_ERRORS = Counter(
    "gapstream_stage_errors_total", "Stage failures by error class", ["stage", "error_class"]
)
STAGE_SECONDS = Histogram(
    "gapstream_stage_seconds", "Time a stage spent on one message", ["stage"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)
STAGE_IN_FLIGHT = Gauge("gapstream_stage_in_flight", "Messages a stage is working on now", ["stage"])
DEAD_LETTERS = Counter("gapstream_dead_letters_total", "Messages sent to dead-letters", ["stage"])
RESULTS = Counter("gapstream_results_total", "Final results published", ["status"])
REQUEST_SECONDS = Histogram(
    "gapstream_request_seconds", "End-to-end time from request to result (sum of stage timings)",
    buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300),
)
ROUNDS = Histogram("gapstream_request_rounds", "Critique rounds per request", buckets=(1, 2, 3, 4, 5))
GAPS = Counter("gapstream_gaps_total", "Gaps found, by kind, strategy and outcome", ["kind", "strategy", "status"])
IMAGES = Counter("gapstream_images_total", "Images generated", ["model"])

_started_on: Optional[int] = None


def serve(port: int, host: str = "127.0.0.1") -> Optional[int]:
    """Expose /metrics once per process; port 0 means no endpoint."""
    global _started_on
    if port <= 0:
        return None
    if _started_on is None:
        start_http_server(port, addr=host)
        _started_on = port
    return _started_on


# -- language-model calls (issue: LLM planner, enricher, critic) -------------------------------------------------
# Fed by the wiring with each stage's `LLMCall` records. `model` is the configured model name (bounded by config);
# `outcome` is "ok", "fallback", "dead-letter" or "error" (the reason after "fallback: " is stripped), else "other".
from typing import Iterable  # noqa: E402

from schemas.records import LLMCall  # noqa: E402

LLM_CALLS = Counter("gapstream_llm_calls_total", "Language-model calls by stage, model and outcome",
                    ["stage", "model", "outcome"])
LLM_TOKENS = Counter("gapstream_llm_tokens_total", "Language-model tokens by stage, model and kind",
                     ["stage", "model", "kind"])  # kind: prompt | completion
LLM_SECONDS = Histogram(
    "gapstream_llm_seconds", "Time a stage spent on one language-model call, retries included", ["stage", "model"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120),
)
_LLM_OUTCOMES = ("ok", "fallback", "dead-letter", "error")


def llm_outcome_label(outcome: str) -> str:
    head = (outcome or "").split(":", 1)[0].strip().lower().replace("_", "-")
    return head if head in _LLM_OUTCOMES else "other"


def record_llm_calls(calls: Iterable[LLMCall]) -> None:
    """Count calls, tokens and time of `LLMCall` records; pass each record once (the new ones of a stage)."""
    for call in calls:
        stage, model = call.stage or "unknown", call.model or "unknown"
        LLM_CALLS.labels(stage, model, llm_outcome_label(call.outcome)).inc()
        if call.prompt_tokens > 0:
            LLM_TOKENS.labels(stage, model, "prompt").inc(call.prompt_tokens)
        if call.completion_tokens > 0:
            LLM_TOKENS.labels(stage, model, "completion").inc(call.completion_tokens)
        LLM_SECONDS.labels(stage, model).observe(max(0.0, call.seconds))


# -- search (issue: grounding by search) ---------------------------------------------------------------------------
# `backend` is a backend name ("serpapi", "corpus"); cache `outcome` is hit|miss|coalesced; call `outcome` is "ok",
# "empty" or a `SearchError.kind` ("rate_limited", "timeout", "budget_exhausted", …, else "error").
SEARCH_CACHE = Counter("gapstream_search_cache_total", "Search result cache lookups by backend and outcome",
                       ["backend", "outcome"])
SEARCH_CALLS = Counter("gapstream_search_calls_total", "Upstream search calls (retries included) by backend and outcome",
                       ["backend", "outcome"])
SEARCH_SECONDS = Histogram(
    "gapstream_search_seconds", "Time of one upstream search call, retries included", ["backend"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)


# -- generator (issue 5: GPU consumer group) -----------------------------------------------------------------------
# `model` is the configured model name (bounded by config). Queue wait is from the message's broker timestamp to
# the start of its batch's pipeline call; generation seconds per image is the call's time over its images.
GENERATOR_IMAGES = Counter("gapstream_generator_images_total", "Images the generator produced (rate() = images/s)",
                           ["model"])
GENERATOR_BATCH_SIZE = Histogram("gapstream_generator_batch_size", "Images per pipeline call", ["model"],
                                 buckets=(1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64))
GENERATOR_QUEUE_WAIT = Histogram(
    "gapstream_generator_queue_wait_seconds", "Time from a message's broker timestamp to its pipeline call",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
GENERATOR_SECONDS_PER_IMAGE = Histogram(
    "gapstream_generator_seconds_per_image", "Pipeline call time divided by its images", ["model"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
)
GENERATOR_BUSY = Gauge("gapstream_generator_busy", "1 while a pipeline call runs in this process")
GPU_MEMORY = Gauge("gapstream_gpu_memory_bytes", "CUDA memory of this process after a batch", ["kind"])  # allocated|reserved
# -- operations (issue 8: Prometheus/Grafana) ----------------------------------------------------------------------
# Messages in and out per stage and topic (the topic's name: bounded by the registry and the prefix), per-request
# shape (drafts, final score, degraded reasons by kind) and consumer lag (streams/lag.py samples it). Image
# throughput is `gapstream_images_total`; generator batch metrics belong to the generator (issue 5).
STAGE_MESSAGES_IN = Counter("gapstream_stage_messages_in_total", "Messages a stage received, by input topic",
                            ["stage", "topic"])
STAGE_MESSAGES_OUT = Counter("gapstream_stage_messages_out_total", "Messages a stage sent, by output topic",
                             ["stage", "topic"])
REQUEST_DRAFTS = Histogram("gapstream_request_drafts", "Images generated per request, all rounds together",
                           buckets=(1, 2, 3, 4, 6, 8, 12, 16, 24, 40))
REQUEST_SCORE = Histogram("gapstream_request_score", "Final critic score of a request's best image",
                          buckets=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 1.0))
REQUEST_WALL_SECONDS = Histogram(
    "gapstream_request_wall_seconds",
    "Wall time from a request's created_at to its result, queueing and lag included (producer's clock)",
    buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 900),
)
# `kind` is a `Degraded.kind` (schemas/trace.py: a closed set), so the labels stay bounded.
DEGRADED = Counter("gapstream_degraded_total", "Final results with a degraded reason, by kind", ["kind"])
CONSUMER_LAG = Gauge("gapstream_consumer_lag_messages",
                     "Messages on a partition that the stage's consumer group has not committed yet",
                     ["stage", "topic", "partition"])
SEARCHES = Counter("gapstream_searches_total",
                   "Searches made for requests, every backend, by outcome: cached, ok (hits), empty or error",
                   ["backend", "outcome"])
LAG_SAMPLE_ERRORS = Counter("gapstream_consumer_lag_sample_errors_total", "Failed consumer-lag samples, by class",
                            ["error_class"])

def observe_result(result: object) -> None:
    """Per-request figures of a final result: drafts made, final score, and each kind of degraded reason once."""
    drafts = sum(len(c.drafts) for c in getattr(result, "critiques", None) or [])
    REQUEST_DRAFTS.observe(drafts or len(getattr(result, "images", None) or []))
    score = getattr(result, "score", None)
    if score is not None:
        REQUEST_SCORE.observe(score)
    for kind in sorted({reason.kind for reason in getattr(result, "degraded", None) or []}):
        DEGRADED.labels(kind).inc()
    wall = _seconds_since(getattr(getattr(result, "request", None), "created_at", None))
    if wall is not None:
        REQUEST_WALL_SECONDS.observe(wall)


def _seconds_since(stamp: Optional[str]) -> Optional[float]:
    """Seconds from an ISO timestamp to now; None when unreadable or implausible (a skewed or made-up clock)."""
    from datetime import datetime, timezone

    try:
        then = datetime.fromisoformat(stamp or "")
    except ValueError:
        return None
    if then.tzinfo is None:
        then = then.replace(tzinfo=timezone.utc)
    seconds = (datetime.now(timezone.utc) - then).total_seconds()
    return seconds if 0 <= seconds <= 24 * 3600 else None


def observe_searches(searches: Iterable[object]) -> None:
    """Count the `Search` trace entries a searcher added (cache hits included, unlike upstream calls)."""
    for search in searches:
        if getattr(search, "error", None):
            outcome = "error"
        elif getattr(search, "cached", False):
            outcome = "cached"
        else:
            outcome = "ok" if getattr(search, "hits", None) else "empty"
        SEARCHES.labels(getattr(search, "backend", "") or "unknown", outcome).inc()
