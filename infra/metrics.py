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
