"""The OpenAI-compatible adapter, with the real `openai` client against the local fake server (no network)."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import socket
import time
from typing import Literal

import pytest
from prometheus_client import REGISTRY, generate_latest
from pydantic import BaseModel, Field

from agents.ports import LLMError, LLMReply, StructuredLLM
from infra import metrics
from infra.llm import OpenAICompatibleLLM, extract_json_object
from streams.backends import build_llms
from infra.settings import Settings
from schemas.records import LLMCall
from tests.fakes.openai_server import FakeOpenAI, Reply

KEY = "sk-test-SECRET-123"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00fake-png-bytes\xff" * 4
JPEG = b"\xff\xd8\xff\xe0" + b"jpeg-bytes"


class Gap(BaseModel):
    text: str
    kind: Literal["knowledge", "memory", "preference"]


class PlanOut(BaseModel):
    gaps: list[Gap]
    confidence: float = Field(ge=0, le=1)


class CriticOut(BaseModel):
    score: float


GOOD = {"gaps": [{"text": "which venue", "kind": "knowledge"}], "confidence": 0.8}


@pytest.fixture
async def fake():
    async with FakeOpenAI(require_api_key=KEY) as server:
        yield server


@pytest.fixture
async def make_llm():
    made: list[OpenAICompatibleLLM] = []

    def make(base_url: str, **kwargs) -> OpenAICompatibleLLM:
        kwargs.setdefault("api_key", KEY)
        kwargs.setdefault("timeout_s", 2.0)
        kwargs.setdefault("retries", 2)
        kwargs.setdefault("backoff_s", 0.001)
        llm = OpenAICompatibleLLM("test-model", base_url=base_url, **kwargs)
        made.append(llm)
        return llm

    yield make
    for llm in made:
        await llm.aclose()


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"  # nothing listens there once the socket is closed


async def fails(llm, **kwargs) -> LLMError:
    kwargs.setdefault("system", "plan")
    kwargs.setdefault("user", "a poster")
    kwargs.setdefault("output", PlanOut)
    with pytest.raises(LLMError) as info:
        await llm.complete(**kwargs)
    return info.value


# -- success paths --------------------------------------------------------------------------------------------


async def test_structured_success_with_usage(fake, make_llm):
    fake.queue(Reply.json(GOOD, usage=(42, 7)))
    llm = make_llm(fake.base_url)
    assert isinstance(llm, StructuredLLM)
    reply = await llm.complete(system="You plan.", user="a poster for the final", output=PlanOut)
    assert isinstance(reply, LLMReply)
    assert reply.output == PlanOut.model_validate(GOOD)
    assert (reply.model, reply.prompt_tokens, reply.completion_tokens, reply.attempts) == ("test-model", 42, 7, 1)
    assert 0 < reply.seconds < 2
    (req,) = fake.chat_requests
    assert req.authorization == f"Bearer {KEY}"
    assert req.model == "test-model"
    assert req.response_format == {
        "type": "json_schema",
        "json_schema": {"name": "PlanOut", "schema": PlanOut.model_json_schema(), "strict": False},
    }
    assert req.schema_name == "PlanOut"
    assert req.system == "You plan." and req.user == "a poster for the final"
    assert req.messages[1]["content"] == "a poster for the final"  # plain string when there are no images


@pytest.mark.parametrize("rejection", [Reply.schema_unsupported(400), Reply.schema_unsupported(422),
                                       Reply.error(400, "Unknown field: json_schema")])
async def test_json_mode_fallback_when_json_schema_is_rejected_and_remembered(fake, make_llm, rejection):
    fake.queue(rejection, GOOD, {"score": 0.5})
    llm = make_llm(fake.base_url)
    reply = await llm.complete(system="You plan.", user="u", output=PlanOut)
    assert reply.output.confidence == 0.8
    assert reply.attempts == 2
    assert llm.json_mode
    second = await llm.complete(system="You judge.", user="u", output=CriticOut)
    assert second.output.score == 0.5 and second.attempts == 1
    kinds = [r.response_format_type for r in fake.chat_requests]
    assert kinds == ["json_schema", "json_object", "json_object"]
    # In JSON mode the schema travels in the system prompt, and the fake can still tell which schema was asked for.
    json_req = fake.chat_requests[1]
    assert json_req.system.startswith("You plan.")
    assert json.dumps(PlanOut.model_json_schema(), separators=(",", ":")) in json_req.system
    assert [r.schema_name for r in fake.chat_requests] == ["PlanOut", "PlanOut", "CriticOut"]


async def test_json_mode_rejected_too_is_an_http_error(fake, make_llm):
    fake.queue(Reply.schema_unsupported(), Reply.error(400, "response_format json_object unsupported"),
               Reply.error(400, "response_format json_object unsupported"))
    err = await fails(make_llm(fake.base_url))
    assert (err.kind, err.retriable) == ("http_error", False)
    # json_schema, then json_object with the schema beside it, then plain json_object.
    assert len(fake.chat_requests) == 3
    assert "schema" in fake.chat_requests[1].response_format and "schema" not in fake.chat_requests[2].response_format


async def test_llama_cpp_servers_500_validation_error_on_json_schema_is_a_rejection(fake, make_llm):
    """llama-cpp-python's server answers json_schema with HTTP 500 and a pydantic error naming response_format."""
    fake.queue(Reply.error(500, "1 validation error: {'type': 'literal_error', 'loc': ('body', 'response_format', "
                                "'type'), 'msg': \"Input should be 'text' or 'json_object'\"}"), GOOD)
    llm = make_llm(fake.base_url)
    reply = await llm.complete(system="You plan.", user="u", output=PlanOut)
    assert reply.output.confidence == 0.8 and llm.json_mode
    second = fake.chat_requests[1].response_format
    assert second["type"] == "json_object" and second["schema"] == PlanOut.model_json_schema()


async def test_a_partly_valid_answer_keeps_its_valid_entries(fake, make_llm):
    from pydantic import BaseModel

    class Entry(BaseModel):
        name: str
        score: float

    class Entries(BaseModel):
        entries: list[Entry]

    fake.queue(Reply.text(json.dumps({"entries": [{"name": "a", "score": 1}, {"name": "b", "score": "high"},
                                                  {"name": "c", "score": 0.5}]})))
    reply = await make_llm(fake.base_url).complete(system="s", user="u", output=Entries)
    assert [e.name for e in reply.output.entries] == ["a", "c"]
    assert len(reply.dropped) == 1 and reply.dropped[0].startswith("entries[1].score")


async def test_max_tokens_bounds_every_answer(fake, make_llm):
    fake.queue(GOOD)
    await make_llm(fake.base_url, max_tokens=333).complete(system="s", user="u", output=PlanOut)
    assert fake.chat_requests[0].body["max_tokens"] == 333


@pytest.mark.parametrize("content", [
    "```json\n" + json.dumps(GOOD) + "\n```",
    "```\n" + json.dumps(GOOD) + "\n```",
    "Sure! Here is the plan:\n" + json.dumps(GOOD) + "\nHope this helps.",
    "Here: " + json.dumps(GOOD) + " and a stray } brace {like this}",
    json.dumps({"PlanOut": GOOD}),  # small models like to wrap the object in its name
])
async def test_fenced_or_chatty_json_is_tolerated(fake, make_llm, content):
    fake.queue(Reply.text(content))
    reply = await make_llm(fake.base_url).complete(system="s", user="u", output=PlanOut)
    assert reply.output == PlanOut.model_validate(GOOD)


async def test_images_are_sent_as_data_urls(fake, make_llm):
    fake.queue({"score": 0.9})
    reply = await make_llm(fake.base_url).complete(system="judge", user="does it match?", output=CriticOut,
                                                   images=[PNG, JPEG])
    assert reply.output.score == 0.9
    (req,) = fake.chat_requests
    assert req.user == "does it match?"
    png_url, jpeg_url = req.images
    assert png_url.startswith("data:image/png;base64,")
    assert base64.b64decode(png_url.split(",", 1)[1]) == PNG
    assert jpeg_url.startswith("data:image/jpeg;base64,")
    assert base64.b64decode(jpeg_url.split(",", 1)[1]) == JPEG


# -- invalid output: not retried ------------------------------------------------------------------------------


async def test_malformed_json_is_invalid_output_and_not_retried(fake, make_llm):
    fake.queue(Reply.text('{"gaps": [{"text": "x", "kind": '), GOOD)
    err = await fails(make_llm(fake.base_url))
    assert (err.kind, err.retriable) == ("invalid_output", False)
    assert "not JSON" in str(err)
    assert len(fake.chat_requests) == 1


async def test_wrong_schema_json_is_invalid_output_with_a_short_reason(fake, make_llm):
    secretish = "a very long model answer " * 40
    fake.queue({"gaps": [{"text": secretish, "kind": "weather"}], "confidence": 3})
    err = await fails(make_llm(fake.base_url))
    assert (err.kind, err.retriable) == ("invalid_output", False)
    assert "PlanOut" in str(err) and "gaps.0.kind" in str(err) and "confidence" in str(err)
    assert secretish not in str(err) and len(str(err)) <= 400
    assert len(fake.chat_requests) == 1


@pytest.mark.parametrize("reply", [
    Reply.text(""), Reply.text("I cannot help with that."), Reply.json([1, 2]),
    Reply.raw(200, "<html>oops</html>"), Reply.raw(200, '{"id": "x"}', "application/json"),
])
async def test_unusable_bodies_are_invalid_output(fake, make_llm, reply):
    fake.queue(reply)
    err = await fails(make_llm(fake.base_url))
    assert (err.kind, err.retriable) == ("invalid_output", False)
    assert len(fake.chat_requests) == 1


# -- retriable failures ---------------------------------------------------------------------------------------


async def test_rate_limited_then_success_is_retried(fake, make_llm):
    fake.queue(Reply.rate_limited(retry_after=0), GOOD)
    reply = await make_llm(fake.base_url).complete(system="s", user="u", output=PlanOut)
    assert reply.attempts == 2
    assert len(fake.chat_requests) == 2


async def test_small_retry_after_is_honoured(fake, make_llm):
    fake.queue(Reply.rate_limited(retry_after=0.3), GOOD)
    reply = await make_llm(fake.base_url, backoff_s=0.0).complete(system="s", user="u", output=PlanOut)
    first, second = fake.chat_requests
    assert second.at - first.at >= 0.25
    assert reply.attempts == 2


async def test_rate_limited_every_time_gives_up(fake, make_llm):
    fake.default = Reply.rate_limited()
    err = await fails(make_llm(fake.base_url, retries=1))
    assert (err.kind, err.retriable) == ("rate_limited", True)
    assert len(fake.chat_requests) == 2


@pytest.mark.parametrize("failure", [Reply.server_error(500), Reply.server_error(503),
                                     Reply.raw(502, "<html>bad gateway</html>")])
async def test_server_errors_are_retried_then_reported(fake, make_llm, failure):
    fake.default = failure
    err = await fails(make_llm(fake.base_url, retries=2))
    assert (err.kind, err.retriable) == ("server_error", True)
    assert len(fake.chat_requests) == 3  # retries + 1


async def test_server_error_then_success(fake, make_llm):
    fake.queue(Reply.server_error(), Reply.server_error(), GOOD)
    reply = await make_llm(fake.base_url, retries=2).complete(system="s", user="u", output=PlanOut)
    assert reply.attempts == 3


async def test_no_retries_configured_means_one_attempt(fake, make_llm):
    fake.default = Reply.server_error()
    err = await fails(make_llm(fake.base_url, retries=0))
    assert err.kind == "server_error"
    assert len(fake.chat_requests) == 1


async def test_other_4xx_are_not_retried(fake, make_llm):
    fake.queue(Reply.error(404, "The model `test-model` does not exist"))
    err = await fails(make_llm(fake.base_url))
    assert (err.kind, err.retriable) == ("http_error", False)
    assert "404" in str(err) and "does not exist" in str(err)
    assert len(fake.chat_requests) == 1


async def test_slow_answer_past_the_timeout_is_a_timeout(fake, make_llm):
    fake.default = Reply.slow(5, GOOD)
    llm = make_llm(fake.base_url, timeout_s=0.3, retries=1)
    started = time.monotonic()
    err = await fails(llm)
    elapsed = time.monotonic() - started
    assert (err.kind, err.retriable) == ("timeout", True)
    assert elapsed < 2 * (0.3 * 1.1 + 0.5) + 0.5  # two bounded attempts, nowhere near the 5 s answer
    assert len(fake.chat_requests) == 2


async def test_slow_then_fast_recovers(fake, make_llm):
    fake.queue(Reply.slow(5, GOOD), GOOD)
    reply = await make_llm(fake.base_url, timeout_s=0.3).complete(system="s", user="u", output=PlanOut)
    assert reply.attempts == 2


async def test_the_wait_for_guard_bounds_a_call_the_client_would_not(make_llm):
    llm = make_llm("http://127.0.0.1:9/v1", timeout_s=0.2, retries=0)

    async def hang(**kwargs):
        await asyncio.sleep(3600)

    llm._client.chat.completions.create = hang  # as if the transport never gave up
    started = time.monotonic()
    err = await fails(llm)
    assert err.kind == "timeout"
    assert time.monotonic() - started < 1.5


async def test_connection_refused_is_unreachable(make_llm):
    llm = make_llm(closed_port_url(), retries=1)
    started = time.monotonic()
    err = await fails(llm)
    assert (err.kind, err.retriable) == ("unreachable", True)
    assert time.monotonic() - started < 2


async def test_dropped_connection_is_unreachable_and_retried(fake, make_llm):
    fake.queue(Reply.drop(), GOOD)
    reply = await make_llm(fake.base_url).complete(system="s", user="u", output=PlanOut)
    assert reply.attempts == 2
    fake.default = Reply.drop()
    err = await fails(make_llm(fake.base_url, retries=1))
    assert (err.kind, err.retriable) == ("unreachable", True)


async def test_wrong_key_is_an_http_error_without_the_key(fake, make_llm):
    fake.require_api_key = "sk-the-right-one"
    err = await fails(make_llm(fake.base_url))
    assert (err.kind, err.retriable) == ("http_error", False)
    assert "401" in str(err)
    assert len(fake.chat_requests) == 1


# -- secrets --------------------------------------------------------------------------------------------------


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def texts(self) -> list[str]:
        out = []
        for record in self.records:
            out.append(self.format(record))  # message, args and any traceback
            out.append(repr(record.args))
            out.append(repr(record.__dict__))
        return out


async def test_the_api_key_never_appears_in_logs_errors_replies_or_metrics(fake, make_llm):
    capture = _Capture()
    root = logging.getLogger()
    noisy = ["", "openai", "openai._base_client", "httpx", "httpx2", "httpcore", "httpcore2", "gapstream",
             "gapstream.llm", "aiohttp", "asyncio"]
    saved = {name: logging.getLogger(name).level for name in noisy}
    root.addHandler(capture)
    for name in noisy:
        logging.getLogger(name).setLevel(logging.DEBUG)
    seen: list[str] = []
    try:
        # The server echoes the key back in error text, as some servers do; the adapter must scrub it.
        echo = f"Incorrect API key provided: {KEY}. Authorization: Bearer {KEY}"
        fake.queue(
            Reply.json(GOOD),  # success
            Reply.schema_unsupported(), GOOD,  # fallback to JSON mode, then success
            Reply.text("not json at all"),  # invalid output
            {"gaps": "wrong"},  # wrong schema
            Reply.rate_limited(), Reply.server_error(), Reply.error(500, echo),  # retried then given up
            Reply.error(401, echo),  # not retried, echoes the key
            Reply.error(400, echo),
            Reply.drop(), Reply.drop(), Reply.drop(),  # unreachable
            Reply.slow(5), Reply.slow(5), Reply.slow(5),  # timeouts
        )
        llm = make_llm(fake.base_url, timeout_s=0.2)
        seen.append(repr(llm))
        for _ in range(9):
            try:
                reply = await llm.complete(system="s", user="u", output=PlanOut, images=[PNG])
                seen += [repr(reply), str(reply)]
            except LLMError as err:
                logging.getLogger("test").exception("call failed")  # as the wiring would log it, traceback too
                seen += [str(err), repr(err), repr(err.args), err.kind]
            if len(fake.queue_left()) == 0:
                break
        unreachable = make_llm(closed_port_url(), retries=0)
        try:
            await unreachable.complete(system="s", user="u", output=PlanOut)
        except LLMError as err:
            logging.getLogger("test").exception("unreachable")
            seen += [str(err), repr(err)]
        metrics.record_llm_calls([LLMCall(stage="planner", model=llm.model, prompt_tokens=3, completion_tokens=2,
                                          seconds=0.1, outcome="fallback: invalid_output")])
        seen.append(generate_latest(REGISTRY).decode())
    finally:
        root.removeHandler(capture)
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)

    # Not vacuous: the key was sent, every path ran, and the logs were captured at DEBUG.
    assert all(r.authorization == f"Bearer {KEY}" for r in fake.chat_requests)
    assert fake.queue_left() == []
    assert any(r.name.startswith("httpcore") and r.levelno == logging.DEBUG for r in capture.records)
    assert any(r.name.startswith("openai") for r in capture.records)
    assert any(r.exc_info for r in capture.records)
    kinds = set(s for s in seen if s in ("invalid_output", "rate_limited", "server_error", "http_error",
                                         "unreachable", "timeout"))
    assert kinds == {"invalid_output", "server_error", "http_error", "unreachable", "timeout"}
    for text in capture.texts() + seen:
        assert KEY not in text
        assert "SECRET" not in text
        assert "Bearer sk" not in text


def test_scrubbing_removes_key_shaped_text():
    llm = OpenAICompatibleLLM("m", base_url="http://user:pw@127.0.0.1:1/v1", api_key="abcd-custom-key-1")
    assert llm._scrub("key abcd-custom-key-1 and sk-proj-abcdef123456 and Bearer xyz.123") == (
        "key *** and *** and Bearer ***"
    )
    assert "pw" not in repr(llm) and "abcd" not in repr(llm)


# -- helpers, settings, metrics -------------------------------------------------------------------------------


@pytest.mark.parametrize("text,expected", [
    ('{"a": 1}', {"a": 1}),
    ('  ```json\n{"a": 1}\n```  ', {"a": 1}),
    ('blah {"a": {"b": 2}} blah', {"a": {"b": 2}}),
    ('first {"a": 1} then {oops}', {"a": 1}),
])
def test_extract_json_object(text, expected):
    assert extract_json_object(text) == expected


@pytest.mark.parametrize("text", ["", "no json", "{broken", "} {"])
def test_extract_json_object_rejects(text):
    with pytest.raises(ValueError):
        extract_json_object(text)


def test_build_llms_from_settings(tmp_path):
    base = Settings.from_env({"GAPSTREAM_HOME": str(tmp_path)})
    assert build_llms(base) == (None, None)
    text, vision = build_llms(base.with_overrides(llm_model="small", openai_api_key=KEY))
    assert isinstance(text, OpenAICompatibleLLM) and vision is None
    assert text.model == "small" and text.base_url is None  # the openai default endpoint
    settings = Settings.from_env({
        "GAPSTREAM_HOME": str(tmp_path), "OPENAI_BASE_URL": "http://127.0.0.1:1/v1", "OPENAI_API_KEY": KEY,
        "GAPSTREAM_LLM_MODEL": "small", "GAPSTREAM_VLM_MODEL": "eyes", "GAPSTREAM_LLM_TIMEOUT_S": "3",
        "GAPSTREAM_LLM_RETRIES": "4",
    })
    text, vision = build_llms(settings)
    assert (text.model, vision.model) == ("small", "eyes")
    assert (text.timeout_s, text.retries, text.base_url) == (3.0, 4, "http://127.0.0.1:1/v1")
    assert KEY not in repr(text) and KEY not in repr(vision) and KEY not in repr(settings)


def _sample(name: str, labels: dict) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_record_llm_calls_counts_calls_tokens_and_time():
    labels = {"stage": "test-critic", "model": "m-metrics"}
    before_ok = _sample("gapstream_llm_calls_total", {**labels, "outcome": "ok"})
    before_fb = _sample("gapstream_llm_calls_total", {**labels, "outcome": "fallback"})
    before_prompt = _sample("gapstream_llm_tokens_total", {**labels, "kind": "prompt"})
    before_completion = _sample("gapstream_llm_tokens_total", {**labels, "kind": "completion"})
    before_count = _sample("gapstream_llm_seconds_count", labels)
    metrics.record_llm_calls([
        LLMCall(stage="test-critic", model="m-metrics", prompt_tokens=100, completion_tokens=20, seconds=0.4),
        LLMCall(stage="test-critic", model="m-metrics", prompt_tokens=50, completion_tokens=0, seconds=2.0,
                attempts=3, outcome="fallback: timeout after 3 attempts"),
    ])
    assert _sample("gapstream_llm_calls_total", {**labels, "outcome": "ok"}) == before_ok + 1
    assert _sample("gapstream_llm_calls_total", {**labels, "outcome": "fallback"}) == before_fb + 1
    assert _sample("gapstream_llm_tokens_total", {**labels, "kind": "prompt"}) == before_prompt + 150
    assert _sample("gapstream_llm_tokens_total", {**labels, "kind": "completion"}) == before_completion + 20
    assert _sample("gapstream_llm_seconds_count", labels) == before_count + 2
    assert metrics.llm_outcome_label("fallback: unreachable (ConnectError)") == "fallback"
    assert metrics.llm_outcome_label("something odd") == "other"
    exposition = generate_latest(REGISTRY).decode()
    assert "timeout after 3 attempts" not in exposition


# -- the fake itself: routing for pipeline tests --------------------------------------------------------------


async def test_fake_routes_by_schema_and_prompt_and_counts_uses(make_llm):
    async with FakeOpenAI() as fake:
        fake.route(schema="PlanOut", reply=GOOD)
        fake.route(system_contains="strict critic", reply=[Reply.server_error(), {"score": 0.25}])
        fake.route(when=lambda req: "again" in req.user, reply=lambda req: {"score": len(req.user) / 100}, times=1)
        llm = make_llm(fake.base_url, api_key=None)
        assert (await llm.complete(system="plan it", user="u", output=PlanOut)).output.confidence == 0.8
        critic = await llm.complete(system="You are a strict critic", user="u", output=CriticOut)
        assert critic.output.score == 0.25 and critic.attempts == 2  # the list is consumed, the last repeats
        assert (await llm.complete(system="x", user="again!", output=CriticOut)).output.score == 0.06
        err = await fails(llm, system="x", user="again!", output=CriticOut)  # times=1 used up: nothing scripted
        assert err.kind == "http_error" and len(fake.unscripted) == 1
        assert fake.chat_requests[0].authorization == "Bearer not-needed"


def test_fake_in_a_thread_serves_sync_clients():
    import openai

    with FakeOpenAI.start_in_thread(default={"score": 1.0}, models=["a", "b"]) as fake:
        client = openai.OpenAI(base_url=fake.base_url, api_key="k", max_retries=0, timeout=5)
        assert [m.id for m in client.models.list()] == ["a", "b"]
        answer = client.chat.completions.create(model="a", messages=[{"role": "user", "content": "hi"}])
        assert json.loads(answer.choices[0].message.content) == {"score": 1.0}
        assert answer.usage.prompt_tokens >= 1
        client.close()
    assert len(fake.requests) == 2
