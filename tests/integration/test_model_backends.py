"""The pipeline with its real-world backends switched on: an OpenAI-compatible model and SerpAPI, both local fake
HTTP servers driven through the real `openai` and `serpapi` clients, next to the private corpus."""

import asyncio
import json
import logging
import re
import uuid

import pytest
import pytest_asyncio

from infra.settings import Settings
from schemas.records import ImageRequest
from streams.client import publish_request
from tests.fakes.openai_server import FakeOpenAI, Reply
from benchmarks.fake_serpapi import FakeSerpApi, SerpReply
from tests.integration.kafka_tools import read_topic, running_pipeline

pytestmark = pytest.mark.asyncio(loop_scope="module")

OPENAI_KEY = "sk-test-SECRET-4242"
SERPAPI_KEY = "serp-SECRET-7777"


def _planner(req):
    if "broken-model" in req.user:
        return Reply.server_error()
    if "slow-model" in req.user:
        return Reply.slow(0.5, then={"gaps": [], "checklist": []})
    if "Mother" in req.user:
        return {"gaps": [{"id": "g1", "kind": "knowledge", "strategy": "reason", "subject": "Mother's Day plant",
                          "value": "pink carnations", "reasoning": "Carnations are the traditional Mother's Day flower"}],
                "checklist": [{"text": "pink carnations", "terms": ["carnations"], "gap_id": "g1"}]}
    return {"gaps": [{"id": "g1", "kind": "knowledge", "strategy": "search", "subject": "Lantern Fair",
                      "query": "Lantern Fair 2026", "time_sensitive": True, "reasoning": "an event of this year"}],
            "checklist": [{"text": "the Lantern Fair venue", "terms": ["lisbon"], "gap_id": "g1"}]}


def _enricher(req):
    if "broken-model" in req.user:
        return Reply.text("this is not JSON {")
    if "carnation" in req.user:
        return {"prompt": "a bouquet of pink carnations on a table, watercolor", "negative_prompt": "blurry",
                "used": [{"text": "pink carnations", "gap_id": "g1"}]}
    return {"prompt": "a festival poster, lanterns at the old tram depot in Lisbon", "negative_prompt": "blurry",
            "used": [{"text": "old tram depot in Lisbon", "gap_id": "g1"}]}


def _critic(req):
    if "broken-model" in req.user:
        return Reply.slow(10, then={"score": 1.0})
    items = sorted(set(re.findall(r"\bc\d+\b", req.user)))
    return {"checks": [{"item_id": i, "passed": True, "reason": "visible"} for i in items],
            "best_draft": 1, "score": 0.9, "verdict": "accept", "suggestions": []}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(broker, redis_url, tmp_path_factory, example_corpus):
    async with FakeOpenAI(require_api_key=OPENAI_KEY) as llm, FakeSerpApi(api_key=SERPAPI_KEY) as serp:
        llm.route(schema="PlannerOutput", reply=_planner)
        llm.route(schema="EnricherOutput", reply=_enricher)
        llm.route(schema="CriticOutput", reply=_critic)
        serp.script("lantern fair 2026", SerpReply.results(organic=[{
            "title": "Lantern Fair 2026", "link": "https://example.org/lantern-fair-2026",
            "snippet": "The 2026 Lantern Fair is held on the old tram depot in Lisbon.", "date": "Oct 2, 2026"}]))
        settings = Settings.from_env({
            "GAPSTREAM_HOME": str(tmp_path_factory.mktemp("home")),
            "GAPSTREAM_TOPIC_PREFIX": f"mb{uuid.uuid4().hex[:8]}.",
            "GAPSTREAM_APP_ID": f"mb-{uuid.uuid4().hex[:8]}",
            "GAPSTREAM_CORPUS_DIR": str(example_corpus),
            "GAPSTREAM_BROKER_SESSION_TIMEOUT": "4",
            "OPENAI_BASE_URL": llm.base_url,
            "OPENAI_API_KEY": OPENAI_KEY,
            "GAPSTREAM_LLM_MODEL": "fake-llm",
            "GAPSTREAM_VLM_MODEL": "fake-vlm",
            "GAPSTREAM_LLM_TIMEOUT_S": "1",
            "GAPSTREAM_LLM_RETRIES": "1",
            "SERPAPI_API_KEY": SERPAPI_KEY,
            "GAPSTREAM_SERPAPI_URL": serp.base_url,
            "GAPSTREAM_SEARCH_CACHE_TTL_S": "60",
            "GAPSTREAM_SEARCH_CACHE_FRESH_TTL_S": "60",
        })
        async with running_pipeline(settings, broker.bootstrap, redis_url) as (watcher, producer):
            yield settings, watcher, producer, llm, serp


async def _run(stack, prompt, unique):
    settings, watcher, producer = stack[:3]
    request = ImageRequest(request_id=f"mb-{unique}-{uuid.uuid4().hex[:6]}", user_id=f"u-{unique}", prompt=prompt)
    await publish_request(producer, settings, request)
    return await watcher.wait(request.request_id, timeout_s=90)


async def test_the_model_reasons_plans_writes_and_judges_with_a_full_trace(stack, unique):
    result = await _run(stack, "the plant usually given on Mother's Day, in a vase", unique)
    assert result.status == "completed", result.error
    [gap] = result.gaps
    assert (gap.strategy, gap.status, gap.filled_by) == ("reason", "filled", "llm:fake-llm")
    assert "carnation" in gap.value and gap.reasoning
    assert "carnations" in result.prompt
    assert result.critiques[-1].judge == "vlm:fake-vlm" and result.critiques[-1].verdict == "accept"
    calls = {(call.stage, call.model) for call in result.llm_calls}
    assert calls == {("planner", "fake-llm"), ("enricher", "fake-llm"), ("critic", "fake-vlm")}
    assert all(call.outcome == "ok" and call.prompt_tokens > 0 and "@" in call.template for call in result.llm_calls)
    assert len([c for c in result.llm_calls if c.round == 0]) <= 3
    assert not result.degraded
    llm = stack[3]
    critic_calls = [r for r in llm.chat_requests if r.schema_name == "CriticOutput"]
    assert critic_calls and critic_calls[-1].images[0].startswith("data:image/png;base64,")


async def test_web_and_corpus_search_are_merged_labelled_and_cached(stack, unique):
    first = await _run(stack, "a poster for this year's Lantern Fair", unique)
    assert first.status == "completed", first.error
    backends = {search.backend for search in first.searches}
    assert backends == {"corpus", "serpapi"}
    facts = {(fact.backend, fact.source) for fact in first.facts}
    assert {("corpus", "lantern-fair.md"), ("serpapi", "https://example.org/lantern-fair-2026")} <= facts
    assert "Lisbon" in first.prompt
    [gap] = first.gaps
    assert gap.filled_by.startswith("search:") and gap.source in {source for _, source in facts}
    assert [a.gap_id for a in first.additions] == ["g1"] and first.additions[0].source == gap.source

    second = await _run(stack, "a poster for this year's Lantern Fair", unique)
    web = [search for search in second.searches if search.backend == "serpapi"]
    assert web and all(search.cached for search in web)
    assert stack[4].calls_for("lantern fair 2026") == 1  # the second request did not pay again


async def test_a_failing_model_degrades_to_the_heuristics_and_no_secret_leaks(stack, broker, unique):
    captured: list[str] = []

    class Capture(logging.Handler):
        def emit(self, record):
            captured.append(self.format(record))

    root = logging.getLogger()
    handler, old_level = Capture(level=logging.DEBUG), root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        result = await _run(stack, "a lighthouse on a cliff, broken-model", unique)
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)

    assert result.status == "completed", result.error
    reasons = " | ".join(d.detail for d in result.degraded)
    for stage in ("planner", "enricher", "critic"):
        assert f"{stage}:" in reasons
    outcomes = {call.stage: call.outcome for call in result.llm_calls}
    assert all(outcome.startswith("fallback") for outcome in outcomes.values()) and len(outcomes) == 3
    assert result.best_image is not None  # the heuristic path still drew and judged an image

    everything = "\n".join(captured) + result.model_dump_json()
    for suffix in ("gaps", "enriched-prompts", "critiques", "results", "dead-letters"):
        everything += json.dumps(await read_topic(broker.bootstrap, stack[0].topic(suffix)))
    assert captured, "the capture saw no log lines; the check would prove nothing"
    assert OPENAI_KEY not in everything and SERPAPI_KEY not in everything


async def test_model_calls_of_different_requests_overlap(stack, unique):
    """One slow model call must not hold up every other request behind it in the planner."""
    llm = stack[3]
    llm.max_in_flight = 0
    results = await asyncio.gather(*(_run(stack, f"a kite over a field, slow-model {i}", unique) for i in range(4)))
    assert all(result.status == "completed" for result in results)
    assert llm.max_in_flight >= 2
