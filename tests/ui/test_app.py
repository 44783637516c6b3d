"""The web page's ASGI app through Starlette's test client, against fake services: form validation, escaping,
tokens, user isolation, and images served only from the image store."""

from __future__ import annotations

import io
import os
import re

import pytest
from PIL import Image
from starlette.testclient import TestClient

from schemas.records import MemoryItem, ResultRecord
from streams.dlq import Letter
from schemas.records import DeadLetter
from tests.ui.fakes import FakeServices
from ui.app import build_app
from ui.auth import user_token
from ui.services import image_url

EVIL = '<script>alert("x")</script><img src=x onerror=alert(1)>'


def png_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 40, 40)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def services(tmp_path):
    root = tmp_path / "images"
    (root / "req1").mkdir(parents=True)
    (root / "req1" / "r0-d0.png").write_bytes(png_bytes())
    (root / "req1" / "page.html").write_text("<script>alert(1)</script>")
    (tmp_path / "secret.png").write_bytes(png_bytes())
    os.symlink(tmp_path / "secret.png", root / "req1" / "link.png")
    return FakeServices(root)


def client_for(services, token=None, **kwargs) -> TestClient:
    app = build_app(services, token=token, extra_hosts=("testserver",))
    return TestClient(app, follow_redirects=False, **kwargs)


@pytest.fixture
def client(services):
    return client_for(services)


def a_result(services, user="alice", request_id="req1", prompt="a lighthouse", **extra) -> ResultRecord:
    uri = (services.images.root / "req1" / "r0-d0.png").as_uri()
    image = {"uri": uri, "sha256": "0" * 64, "width": 8, "height": 8, "seed": 1}
    data = {
        "request_id": request_id, "user_id": user, "status": "completed", "prompt": f"{prompt}, watercolor",
        "images": [image], "best_image": image, "score": 0.8, "rounds": 1,
        "request": {"request_id": request_id, "user_id": user, "prompt": prompt},
        "gaps": [{"id": "g1", "kind": "knowledge", "description": "where it is", "strategy": "search",
                  "status": "filled", "value": "Lisbon", "source": "https://example.org/fair"},
                 {"id": "g2", "kind": "preference", "description": "style", "strategy": "memory",
                  "status": "filled", "value": EVIL, "source": "memory:m-1"}],
        "checklist": [{"id": "c1", "text": "shows Lisbon", "gap_id": "g1"},
                      {"id": "c2", "text": "watercolor style", "gap_id": "g2"}],
        "searches": [{"gap_id": "g1", "query": "lantern fair venue", "backend": "corpus", "seconds": 0.01,
                      "hits": [{"source": "javascript:alert(1)", "text": "held in Lisbon", "title": EVIL}]}],
        "critiques": [{"round": 0, "verdict": "accept", "score": 0.8, "prompt": f"{prompt}, watercolor",
                       "checks": [{"item_id": "c1", "passed": True}, {"item_id": "c2", "passed": False,
                                                                        "reason": "no watercolor term"}],
                       "drafts": [{"uri": uri, "score": 0.8}]}],
        "timings": [{"stage": "planner", "round": 0, "seconds": 0.01}, {"stage": "generator", "round": 0,
                                                                        "seconds": 0.2}],
        "degraded": ["search: corpus slow"],
        **extra,
    }
    result = ResultRecord.model_validate(data)
    services.results[request_id] = result
    return result


# Submit -------------------------------------------------------------------------------------------------------

def test_submit_publishes_a_valid_request_with_its_options(client, services):
    response = client.post("/submit", data={"prompt": "a red kite", "user_id": "alice", "drafts": "2",
                                            "max_rounds": "3", "width": "64", "height": "64", "seed": "7",
                                            "steps": "4", "negative_prompt": "blur", "allow_clarification": "1"})
    assert response.status_code == 303
    [request] = services.submitted
    assert response.headers["location"] == f"/u/alice/r/{request.request_id}"
    assert (request.drafts, request.max_rounds, request.width, request.seed, request.steps) == (2, 3, 64, 7, 4)
    assert request.negative_prompt == "blur" and request.allow_clarification is True


@pytest.mark.parametrize("field, value, message", [
    ("drafts", "99", "less than or equal to 8"),
    ("drafts", "two", "whole number"),
    ("width", "65", "multiple of 8"),
    ("user_id", "no spaces allowed", "letters, digits"),
    ("prompt", "   ", "prompt is blank"),
    ("max_rounds", "0", "greater than or equal to 1"),
    ("parent_request_id", "bad id!", "an earlier request"),
])
def test_a_bad_value_is_shown_next_to_its_field(client, services, field, value, message):
    form = {"prompt": "a red kite", "user_id": "alice", field: value}
    response = client.post("/submit", data=form)
    assert response.status_code == 400
    assert not services.submitted
    error = re.search(rf'<span class="field-error" id="error-{field}">([^<]*)</span>', response.text)
    assert error and message in error.group(1), response.text
    # The form keeps what was typed.
    assert (value if field != "prompt" else "alice") in response.text


def test_typed_markup_comes_back_escaped(client):
    response = client.post("/submit", data={"prompt": EVIL, "user_id": "alice", "drafts": "99"})
    assert response.status_code == 400
    assert "<script>alert" not in response.text
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in response.text


# Result page --------------------------------------------------------------------------------------------------

def test_result_page_shows_image_rounds_checklist_gaps_and_escapes_untrusted_text(client, services):
    a_result(services, prompt=EVIL)
    page = client.get("/u/alice/r/req1")
    assert page.status_code == 200
    html = page.text
    assert "<script>alert" not in html and "<img src=x" not in html
    assert "&lt;script&gt;" in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    assert 'id="final-image"' in html and image_url(services.results["req1"].best_image.uri) in html.replace("&amp;", "&")
    assert "no watercolor term" in html and "✗ fail" in html and "✓ pass" in html
    assert '<a href="https://example.org/fair"' in html  # a web page source is a link
    assert 'href="javascript:' not in html  # anything else is text, never a link
    assert "<ins>, watercolor</ins>" in html
    assert "search: corpus slow" in html and "lantern fair venue" in html
    assert "default-src 'self'" in page.headers["content-security-policy"]


def test_needs_clarification_shows_the_question_and_takes_an_answer(client, services):
    a_result(services, status="needs_clarification", question="What is your logo?", critiques=[], images=[],
             best_image=None, expires_at="2999-01-01T00:00:00+00:00")
    services.questions["req1"] = ("waiting", "alice")
    page = client.get("/u/alice/r/req1")
    assert "What is your logo?" in page.text and 'id="answer-form"' in page.text
    blank = client.post("/u/alice/r/req1/answer", data={"answer": "  "})
    assert blank.status_code == 400 and "answer is blank" in blank.text
    sent = client.post("/u/alice/r/req1/answer", data={"answer": "a red fox"})
    assert sent.status_code == 303 and sent.headers["location"] == "/u/alice/r/req1?watch=1"
    assert services.answers[0].answer == "a red fox"
    # While the request resumes, its address shows the live page rather than the old question.
    assert 'id="live"' in client.get("/u/alice/r/req1").text


def test_events_of_a_finished_request_say_where_its_result_is(client, services):
    a_result(services)
    with client.stream("GET", "/u/alice/r/req1/events") as response:
        body = "".join(response.iter_text())
    assert "event: result" in body and '"url": "/u/alice/r/req1"' in body


async def _filled_channel(services, user):
    channel = await services.follow("req7")
    await channel.add({"stage": "enricher", "text": "alice's private prompt", "user": user})
    await channel.add({"stage": "result", "status": "completed", "url": "/u/alice/r/req7", "user": user}, done=True)


def test_live_stages_of_a_request_reach_only_its_users_address(client, services):
    import asyncio

    asyncio.run(_filled_channel(services, "alice"))
    with client.stream("GET", "/u/bob/r/req7/events") as response:
        bob = "".join(response.iter_text())
    assert "private prompt" not in bob and "event: stage" not in bob
    with client.stream("GET", "/u/alice/r/req7/events") as response:
        alice = "".join(response.iter_text())
    assert "private prompt" in alice and "event: result" in alice


def test_failed_request_says_what_went_wrong(client, services):
    a_result(services, status="failed", error="planner: ParentNotFound: parent request x not found",
             critiques=[], images=[], best_image=None)
    html = client.get("/u/alice/r/req1").text
    assert 'id="failure"' in html and "ParentNotFound" in html and 'id="final-image"' not in html


# One user's records are never shown under another user's id ------------------------------------------------

def test_another_users_result_is_not_shown_under_my_id(client, services):
    a_result(services, user="alice", prompt="alice's secret garden")
    for path in ("/u/bob/r/req1", "/api/u/bob/r/req1"):
        response = client.get(path)
        assert response.status_code == 404 and "secret garden" not in response.text
    assert "secret garden" not in client.get("/u/bob/history").text
    assert "secret garden" in client.get("/u/alice/history").text


def test_history_is_newest_first_and_paginated(client, services):
    for n in range(14):
        a_result(services, request_id=f"r{n:02d}", prompt=f"picture {n:02d}",
                 finished_at=f"2026-01-01T00:00:{n:02d}+00:00")
    first = client.get("/u/alice/history").text
    assert first.index("picture 13") < first.index("picture 02") and "picture 01" not in first
    assert "page 1 of 2" in first
    second = client.get("/u/alice/history?page=2").text
    assert "picture 01" in second and "picture 00" in second and "picture 13" not in second


def test_memory_items_are_listed_and_removable_and_forget_everything_needs_confirmation(client, services):
    services.memory_store["alice"] = [MemoryItem(id="m1", kind="fact", text="my dog Max is a corgi", subject="dog",
                                                 source="user"),
                                      MemoryItem(id="m2", kind="preference", text=EVIL, source="learned:r1")]
    html = client.get("/u/alice/memory").text
    assert "my dog Max is a corgi" in html and "learned:r1" in html and "<script>alert" not in html
    removed = client.post("/u/alice/memory/forget", data={"item_id": "m1"})
    assert removed.status_code == 303 and [i.id for i in services.memory_store["alice"]] == ["m2"]
    unconfirmed = client.post("/u/alice/memory/forget", data={})
    assert unconfirmed.status_code == 400 and services.memory_store["alice"]
    confirmed = client.post("/u/alice/memory/forget", data={"confirm": "yes"})
    assert confirmed.status_code == 303 and services.memory_store["alice"] == []


def test_dead_letters_are_listed_and_replayed(client, services):
    record = DeadLetter(stage="planner", error_class="ParentNotFound", error=EVIL, topic="gapstream.requests",
                        request_id="req9", payload='{"prompt": "x"}')
    services.letters = [Letter(1, 5, record, b"")]
    html = client.get("/dead-letters").text
    assert "1:5" in html and "ParentNotFound" in html and "<script>alert" not in html
    response = client.post("/dead-letters/replay", data={"letter_id": "1:5"})
    assert response.status_code == 303 and services.replayed == ["1:5"]
    assert "replayed" in client.get(response.headers["location"]).text


# Images only from the image store ----------------------------------------------------------------------------

def test_images_are_served_from_the_store_root_only(client, services, tmp_path):
    inside = (services.images.root / "req1" / "r0-d0.png").as_uri()
    ok = client.get(image_url(inside))
    assert ok.status_code == 200 and ok.headers["content-type"] == "image/png" and ok.content[:4] == b"\x89PNG"
    refused = [
        (tmp_path / "secret.png").as_uri(),                      # outside the root
        f"{services.images.root}/../secret.png",                 # climbing out
        "req1/../../secret.png",
        (services.images.root / "req1" / "link.png").as_uri(),   # a symlink inside that points outside
        (services.images.root / "req1" / "page.html").as_uri(),  # inside, but not a picture
        "file://otherhost/etc/passwd.png",
        "/etc/passwd",
        "",
    ]
    for uri in refused:
        response = client.get(image_url(uri))
        assert response.status_code == 404, uri
        assert response.content != png_bytes()


# Tokens, hosts and other sites -------------------------------------------------------------------------------

def test_with_a_token_every_page_and_call_needs_it(services):
    a_result(services)
    client = client_for(services, token="s3cret")
    for method, path in [("GET", "/"), ("GET", "/u/alice/r/req1"), ("GET", "/u/alice/r/req1/events"),
                         ("GET", "/api/u/alice/r/req1"), ("GET", "/u/alice/history"), ("GET", "/u/alice/memory"),
                         ("GET", "/dead-letters"), ("GET", "/image?uri=x.png"), ("GET", "/static/app.css"),
                         ("POST", "/submit"), ("POST", "/u/alice/memory/forget")]:
        assert client.request(method, path).status_code == 401, path
        assert client.request(method, path, headers={"authorization": "Bearer wrong"}).status_code == 401, path
    assert client.get("/healthz").status_code == 200
    assert client.get("/", headers={"authorization": "Bearer s3cret"}).status_code == 200
    # Once in the address, then a cookie, and the address loses it.
    visit = client.get("/u/alice/history?token=s3cret&page=1")
    assert visit.status_code == 303 and visit.headers["location"] == "/u/alice/history?page=1"
    assert "HttpOnly" in visit.headers["set-cookie"] and "SameSite=Strict" in visit.headers["set-cookie"]
    client.cookies.set("gs_token", "s3cret")
    assert client.get("/u/alice/r/req1").status_code == 200


def test_a_user_token_opens_only_that_users_pages(services):
    a_result(services, user="alice")
    a_result(services, user="bob", request_id="req2", prompt="bob's boat")
    client = client_for(services, token="s3cret")
    alice = {"authorization": f"Bearer {user_token('s3cret', 'alice')}"}
    assert client.get("/u/alice/r/req1", headers=alice).status_code == 200
    for path in ("/u/bob/r/req2", "/u/bob/history", "/u/bob/memory", "/api/u/bob/r/req2", "/dead-letters"):
        response = client.get(path, headers=alice)
        assert response.status_code == 403 and "bob's boat" not in response.text, path
    as_bob = client.post("/submit", data={"prompt": "x", "user_id": "bob"}, headers=alice)
    assert as_bob.status_code == 400 and not services.submitted
    forged = f"u.bob.{user_token('s3cret', 'alice').rsplit('.', 1)[1]}"
    assert client.get("/u/bob/history", headers={"authorization": f"Bearer {forged}"}).status_code == 401
    # The operator's token opens every user's pages.
    operator = {"authorization": "Bearer s3cret"}
    assert "bob&#39;s boat" in client.get("/u/bob/history", headers=operator).text


def test_without_a_token_only_loopback_host_names_are_answered(services):
    app = build_app(services)
    assert TestClient(app, base_url="http://127.0.0.1:8080").get("/").status_code == 200
    assert TestClient(app, base_url="http://localhost:8080").get("/").status_code == 200
    # DNS rebinding: a page on another site whose name now points at 127.0.0.1.
    assert TestClient(app, base_url="http://attacker.example").get("/").status_code == 403


def test_a_form_posted_from_another_site_is_refused(client, services):
    response = client.post("/submit", data={"prompt": "x", "user_id": "alice"},
                           headers={"origin": "http://attacker.example"})
    assert response.status_code == 403 and not services.submitted
    same = client.post("/submit", data={"prompt": "x", "user_id": "alice"}, headers={"origin": "http://testserver"})
    assert same.status_code == 303
