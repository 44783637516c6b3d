"""Per-request metrics (infra/metrics.py): degraded reasons counted by kind, drafts and wall time per result."""

from infra import metrics
from schemas.records import Critique, Degraded, DraftScore, ResultRecord


def test_degraded_reasons_are_counted_by_their_kind_not_read_back_from_prose():
    kinds = ("search_budget", "memory_unavailable", "timeout")
    before = {kind: metrics.DEGRADED.labels(kind)._value.get() for kind in (*kinds, "other")}
    # The sentences would have classified otherwise (a word like "search" or "failed" in them): the kind decides.
    degraded = [Degraded(stage="searcher", kind="search_budget", detail="memory failed"),
                Degraded(stage="planner", kind="memory_unavailable", detail="search timed out"),
                Degraded(stage="critic", kind="timeout", detail="critic failed")]
    metrics.observe_result(ResultRecord(request_id="r-2", user_id="alice", status="failed", degraded=degraded))
    assert {kind: metrics.DEGRADED.labels(kind)._value.get() - before[kind] for kind in before} == {
        "search_budget": 1, "memory_unavailable": 1, "timeout": 1, "other": 0}


def test_a_result_records_drafts_score_and_each_reason_class_once():
    from schemas.records import ImageRequest

    before = metrics.DEGRADED.labels("llm_fallback")._value.get()
    walls_before = metrics.REQUEST_WALL_SECONDS._sum.get()
    drafts_before = metrics.REQUEST_DRAFTS._sum.get()
    result = ResultRecord(
        request_id="r-1", user_id="alice", status="completed", score=0.8, rounds=2,
        request=ImageRequest(request_id="r-1", user_id="alice", prompt="x", created_at="2000-01-01T00:00:00+00:00"),
        critiques=[Critique(round=r, verdict="revise", score=0.5,
                            drafts=[DraftScore(uri=f"file:///{r}-{i}.png", score=0.5) for i in range(3)])
                   for r in (0, 1)],
        degraded=[Degraded(stage="planner", kind="llm_fallback",
                           detail="planner: model unavailable (x): heuristic fallback"),
                  Degraded(stage="enricher", kind="llm_fallback", detail="enricher: bad answer: heuristic fallback")],
    )
    metrics.observe_result(result)
    assert metrics.DEGRADED.labels("llm_fallback")._value.get() == before + 1
    assert metrics.REQUEST_DRAFTS._sum.get() == drafts_before + 6
    assert metrics.REQUEST_WALL_SECONDS._sum.get() == walls_before  # a clock years off is not a latency
    metrics.observe_result(result.model_copy(update={"request": ImageRequest(request_id="r-1", user_id="alice",
                                                                             prompt="x")}))
    assert metrics.REQUEST_WALL_SECONDS._sum.get() > walls_before
