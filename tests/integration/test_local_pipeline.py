"""`benchmarks/local_pipeline.py`: the local path (embedded broker and Redis, every stage in one process) completes
its requests and reports start-up and per-request figures."""

from __future__ import annotations

from benchmarks import local_pipeline


async def test_the_local_benchmark_completes_requests_and_reports_timings(tmp_path):
    figures = await local_pipeline.measure(requests=3, in_flight=2, home=tmp_path, corpus=None)
    assert figures["stages"] == ["planner", "searcher", "enricher", "generator", "critic", "publisher"]
    assert 0 < figures["services_start_s"] <= figures["worker_start_s"]
    assert figures["requests"] == 3 and figures["requests_per_minute"] > 0
    assert 0 < figures["latency_p50_s"] <= figures["latency_p95_s"]
    assert figures["first_request_s"] > 0 and figures["second_request_s"] > 0
