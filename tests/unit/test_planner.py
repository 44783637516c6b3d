"""The heuristic planner: knowledge, memory and preference gaps, the checklist, and memory reads and writes."""

from __future__ import annotations

from datetime import date

import pytest

from agents.memory import items_from_user_text
from agents.planner import HeuristicPlanner
from schemas.records import ImageRequest
from tests.unit.fakes import FakeMemoryStore

TODAY = date(2026, 11, 26)


def request(prompt: str, user: str = "alice") -> ImageRequest:
    return ImageRequest(request_id="r-1", user_id=user, prompt=prompt)


async def plan(prompt: str, memory: FakeMemoryStore | None = None, user: str = "alice", today: date = TODAY):
    store = memory or FakeMemoryStore()
    return await HeuristicPlanner(store, today=lambda: today)(request(prompt, user))


async def remember(store: FakeMemoryStore, user: str, *texts: str) -> None:
    for text in texts:
        await store.add(user, items_from_user_text(text))


def by_kind(record, kind):
    return [g for g in record.gaps if g.kind == kind]


async def test_this_years_event_is_a_time_sensitive_search_with_the_current_year():
    record = await plan("a poster for this year's Lantern Fair")
    [gap] = by_kind(record, "knowledge")
    assert (gap.strategy, gap.subject, gap.query, gap.time_sensitive) == ("search", "Lantern Fair",
                                                                          "Lantern Fair 2026", True)
    assert gap.status == "open"
    assert (await plan("a poster for this year's Lantern Fair", today=date(2031, 1, 1))).gaps[0].query.endswith("2031")


async def test_latest_product_and_explicit_year():
    [gap] = by_kind(await plan("a studio shot of the latest Orbit kettle"), "knowledge")
    assert (gap.query, gap.time_sensitive) == ("Orbit kettle 2026", True)
    [gap] = by_kind(await plan("the 2024 Lantern Fair at night"), "knowledge")
    assert gap.query == "Lantern Fair 2024"
    [gap] = by_kind(await plan("a picnic near the Eiffel Tower"), "knowledge")
    assert (gap.query, gap.time_sensitive) == ("Eiffel Tower", False)


async def test_temporal_cue_without_a_name_searches_the_noun_phrase():
    [gap] = by_kind(await plan("the latest smartphone design on a desk"), "knowledge")
    assert gap.query == "smartphone design 2026" and gap.time_sensitive


async def test_occasions_become_searches():
    [gap] = by_kind(await plan("friends celebrating hanami"), "knowledge")
    assert (gap.strategy, gap.query, gap.time_sensitive) == ("search", "hanami", False)
    subjects = {g.subject for g in by_kind(await plan("a card for Mother's Day during Diwali"), "knowledge")}
    assert subjects == {"Mother's Day", "Diwali"}


@pytest.mark.parametrize(
    "prompt",
    [
        "a bowl of lemons on a marble counter, soft daylight",
        "A new puppy asleep on a rug",
        "Pixel sleeping on a bookshelf",
        "Friends having a picnic",
    ],
)
async def test_plain_prompts_need_no_search(prompt):
    assert by_kind(await plan(prompt), "knowledge") == []


async def test_remembered_name_fills_a_memory_gap_for_its_owner_only():
    store = FakeMemoryStore()
    await remember(store, "ex-1", "my cat Pixel is a grey sphynx")
    record = await plan("Pixel sleeping on a bookshelf", store, user="ex-1")
    [gap] = by_kind(record, "memory")
    item = store.data["ex-1"][next(iter(store.data["ex-1"]))]
    assert (gap.strategy, gap.status, gap.source) == ("memory", "filled", f"memory:{item.id}")
    assert "sphynx" in gap.value and [i.id for i in record.memory_used] == [item.id]
    other = await plan("Pixel sleeping on a bookshelf", store, user="ex-8")
    assert by_kind(other, "memory") == [] and other.memory_used == []
    assert "sphynx" not in other.model_dump_json()


async def test_usual_style_comes_from_the_newest_preference():
    store = FakeMemoryStore()
    await remember(store, "bob", "I like charcoal sketches", "I now prefer gouache")
    record = await plan("a fox in my usual style", store, user="bob")
    [gap] = by_kind(record, "memory")
    assert (gap.subject, gap.status, gap.value) == ("style", "filled", "gouache")
    assert [i.value for i in record.memory_used] == ["gouache"]
    assert not [g for g in record.gaps if g.subject == "style" and g.kind == "preference"]


async def test_missing_memory_is_an_unfilled_gap_with_a_reason():
    record = await plan("draw our logo on a mug")
    [gap] = by_kind(record, "memory")
    assert (gap.subject, gap.status) == ("logo", "unfilled")
    assert "our logo" in gap.reason
    [style] = by_kind(await plan("a harbour in my usual style"), "memory")
    assert style.status == "unfilled" and "style" in style.reason


async def test_possessive_reference_finds_the_fact_and_statements_in_the_prompt_are_written():
    store = FakeMemoryStore()
    planner = HeuristicPlanner(store, today=lambda: TODAY)
    delivered = request("my dog Max is a corgi; draw my dog at the beach", "alice")
    record = await planner(delivered)
    assert [i.text for i in record.memory_written] == ["my dog Max is a corgi"]
    assert [i.subject for i in store.data["alice"].values()] == ["max"]
    [gap] = by_kind(record, "memory")
    assert gap.status == "filled" and "corgi" in gap.value
    # A redelivery of the same request writes nothing new and yields the same record.
    again = await planner(delivered)
    assert len(store.data["alice"]) == 1 and again.memory_written == record.memory_written
    assert again.gaps == record.gaps and again.checklist == record.checklist


async def test_missing_style_setting_composition_lighting_get_defaults_or_memory():
    record = await plan("a fox")
    prefs = {g.subject: g for g in by_kind(record, "preference")}
    assert set(prefs) == {"style", "setting", "composition", "lighting"}
    assert all(g.status == "filled" and g.source == "default" for g in prefs.values())
    store = FakeMemoryStore()
    await remember(store, "alice", "I love watercolour")
    style = [g for g in (await plan("a fox", store)).gaps if g.subject == "style"][0]
    assert (style.strategy, style.value) == ("memory", "watercolour") and style.source.startswith("memory:")
    described = await plan("an oil painting of a fox in a forest, close-up, golden hour")
    assert by_kind(described, "preference") == []


async def test_checklist_covers_filled_gaps_and_explicit_requirements():
    record = await plan('two red apples on a table with the text "HELLO", pixel art, for the Lantern Fair')
    terms = [tuple(c.terms) for c in record.checklist]
    assert ("two", "apples") in terms and ("HELLO",) in terms and ("red",) in terms
    assert ("pixel art",) in terms and ("Lantern Fair",) in terms
    gap_items = {c.gap_id for c in record.checklist if c.gap_id}
    assert gap_items == {g.id for g in record.gaps if g.status == "filled"}
    assert [c.id for c in record.checklist] == [f"c{i}" for i in range(1, len(record.checklist) + 1)]
    assert [g.id for g in record.gaps] == [f"g{i}" for i in range(1, len(record.gaps) + 1)]
    assert record.round == 0


@pytest.mark.parametrize("error", [ConnectionError("refused"), TimeoutError("slow"), OSError("no route")])
async def test_unreachable_memory_degrades_instead_of_failing(error):
    record = await plan("my dog Max is a corgi, in my usual style", FakeMemoryStore(fail=error))
    assert any(d.detail.startswith("memory unavailable") for d in record.degraded)
    assert record.memory_written == []
    # Only what the prompt itself stated can be used; nothing was read from the store.
    assert [i.text for i in record.memory_used] == ["my dog Max is a corgi"]
    assert [g.status for g in record.gaps if g.subject == "style" and g.kind == "memory"] == ["unfilled"]


async def test_other_memory_errors_are_bugs_and_propagate():
    with pytest.raises(KeyError):
        await plan("a fox", FakeMemoryStore(fail=KeyError("bug")))


async def test_rejects_non_requests():
    with pytest.raises(ValueError):
        await HeuristicPlanner(FakeMemoryStore())({"prompt": "a fox"})
