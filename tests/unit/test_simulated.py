"""Simulated backends: they cost their configured time and nothing else; a benchmark injects them in place of what
the settings would build (`streams.backends.BackendOverrides`, tested in test_backends)."""

import asyncio
import time

import pytest

from agents.ports import GenerationJob, LLMError, SearchBackend, StructuredLLM, TextToImage
from benchmarks.simulated import SimulatedLLM, SimulatedSearch, SimulatedTextToImage, simulated_backends


def _job(seed: int) -> GenerationJob:
    return GenerationJob(prompt="a fox", negative_prompt="", width=64, height=64, steps=4, guidance=7.5, seed=seed)


def test_generator_sleeps_per_image_and_returns_one_pixel_images():
    model = SimulatedTextToImage(seconds_per_image=0.02)
    assert isinstance(model, TextToImage)
    started = time.perf_counter()
    images = model.generate([_job(1), _job(2), _job(3)])
    assert time.perf_counter() - started >= 0.06  # a sleep cannot end early
    assert [image.size for image in images] == [(1, 1)] * 3
    assert model.images_made == 3 and "simulated" in model.model_name


def test_a_batched_call_costs_its_first_image_plus_the_further_ones():
    model = SimulatedTextToImage(seconds_per_image=0.05, seconds_per_batched_image=0.01)
    started = time.perf_counter()
    assert len(model.generate([_job(i) for i in range(4)])) == 4
    elapsed = time.perf_counter() - started
    assert elapsed >= 0.05 + 3 * 0.01
    assert elapsed < 4 * 0.05  # cheaper than four calls of one: the batching gain the model stands for
    with pytest.raises(ValueError, match="seconds_per_batched_image"):
        SimulatedTextToImage(0.1, seconds_per_batched_image=-1)


def test_search_waits_and_finds_nothing():
    search = SimulatedSearch(latency_s=0.01)
    assert isinstance(search, SearchBackend)
    assert asyncio.run(search.search("this year's Lantern Fair")) == []
    assert search.calls == 1


def test_llm_waits_then_declines_so_the_stage_falls_back():
    llm = SimulatedLLM(latency_s=0.01)
    assert isinstance(llm, StructuredLLM)
    with pytest.raises(LLMError) as caught:
        asyncio.run(llm.complete(system="s", user="u", output=dict))
    assert caught.value.retriable is False and llm.calls == 1


def test_negative_latencies_are_refused():
    for make in (SimulatedTextToImage, SimulatedSearch, SimulatedLLM):
        with pytest.raises(ValueError):
            make(-1)


def test_simulated_backends_are_fresh_per_run_and_only_what_was_asked_for():
    first, second = simulated_backends(0.1, 0.05, llm_s=0.2, search_s=0.3), simulated_backends(0.1)
    assert first.text_to_image is not second.text_to_image  # counters of one run never include another's
    assert (first.text_to_image.seconds_per_image, first.text_to_image.seconds_per_batched_image) == (0.1, 0.05)
    assert first.llm is first.vlm and first.llm.latency_s == 0.2  # one model endpoint for every stage
    assert [type(b) for b in first.search] == [SimulatedSearch] and first.search[0].latency_s == 0.3
    assert (second.llm, second.vlm, second.search) == (None, None, None)  # left to the settings
