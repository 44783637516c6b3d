"""The page helpers: prompt diffs, ages, sources; and a live channel's replay-then-wait."""

import asyncio
from datetime import datetime, timezone

from ui.live import Channel, details
from ui.views import age, diff_words, source_of


def test_diff_marks_what_a_round_added_and_removed():
    runs = diff_words("a fox, watercolor", "a fox, oil painting, at dusk")
    assert ("watercolor", "removed") in runs
    assert "".join(t for t, op in runs if op != "removed") == "a fox, oil painting, at dusk"
    assert any(op == "added" and "oil" in t for t, op in runs)
    assert diff_words("same words", "same words") == [("same words", "same")]


def test_age_reads_like_a_person_says_it():
    now = datetime(2026, 1, 2, tzinfo=timezone.utc)
    assert age("2026-01-01T23:59:50+00:00", now) == "just now"
    assert age("2026-01-01T23:55:00+00:00", now) == "5 min ago"
    assert age("2026-01-01T21:00:00+00:00", now) == "3 h ago"
    assert age("2025-12-20T00:00:00+00:00", now) == "13 days ago"
    assert age("2026-01-05T00:00:00+00:00", now) == "in 3 days"
    assert age("not a time", now) == "not a time" and age(None) == ""


def test_sources_are_named_and_only_web_pages_are_links():
    assert source_of("https://example.org/a")["href"] == "https://example.org/a"
    assert source_of("javascript:alert(1)")["href"] is None
    assert source_of("memory:m-1")["kind"] == "memory item"
    assert source_of("default")["kind"] == "default"
    assert source_of("llm:small")["kind"] == "model"
    assert source_of("lantern-fair.md")["kind"] == "corpus file"


def test_live_details_carry_image_addresses_of_the_store_route_only():
    record = {"round": 1, "images": [{"uri": "file:///x/a.png"}], "prompt": "p"}
    out = details("images", record, lambda uri: "/image?uri=" + uri)
    assert out == {"round": 1, "images": ["/image?uri=file:///x/a.png"]}


async def test_a_channel_replays_then_waits_then_ends_after_the_result():
    channel = Channel("r1")
    await channel.add({"stage": "planner", "text": "2 gaps"})
    seen = []

    async def read():
        async for event in channel.follow(keepalive_s=0.05):
            seen.append(event and event["stage"])

    reader = asyncio.create_task(read())
    await asyncio.sleep(0.12)
    await channel.add({"stage": "critic", "text": "accept"})
    await channel.add({"stage": "result", "status": "completed"}, done=True)
    await asyncio.wait_for(reader, 2)
    stages = [s for s in seen if s]
    assert stages == ["planner", "critic", "result"] and None in seen  # keep-alives while waiting
    # A reader that reconnects after event 0 gets only what came after it.
    assert [e["stage"] async for e in channel.follow(after=0)] == ["critic", "result"]
