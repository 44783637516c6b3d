"""Simulated backends: they cost their configured time and nothing else, and a benchmark injects them in place of
what the settings would build (`streams.backends.BackendOverrides`)."""

import asyncio
import time

import pytest

from agents.ports import GenerationJob, LLMError, SearchBackend, StructuredLLM, TextToImage
from infra.settings import Settings, SettingsError
from benchmarks.simulated import SimulatedLLM, SimulatedSearch, SimulatedTextToImage, simulated_backends
from streams.backends import STAGES, open_backends


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


def test_settings_switch_simulated_backends_on(tmp_path):
    off = Settings.from_env({"GAPSTREAM_HOME": str(tmp_path)})
    assert (off.simulated_seconds_per_image, off.simulated_search_s, off.simulated_llm_s) == (None, None, None)
    on = Settings.from_env({"GAPSTREAM_HOME": str(tmp_path), "GAPSTREAM_SIMULATED_SECONDS_PER_IMAGE": "0.2",
                            "GAPSTREAM_SIMULATED_SEARCH_S": "0", "GAPSTREAM_SIMULATED_LLM_S": "0.3"})
    assert (on.simulated_seconds_per_image, on.simulated_search_s, on.simulated_llm_s) == (0.2, 0.0, 0.3)
    assert on.simulated_seconds_per_batched_image is None  # unset: each image costs the same
    batched = Settings.from_env({"GAPSTREAM_HOME": str(tmp_path), "GAPSTREAM_SIMULATED_SECONDS_PER_IMAGE": "0.2",
                                 "GAPSTREAM_SIMULATED_SECONDS_PER_BATCHED_IMAGE": "0.05"})
    assert batched.simulated_seconds_per_batched_image == 0.05
    with pytest.raises(SettingsError, match="GAPSTREAM_SIMULATED_SECONDS_PER_IMAGE"):
        Settings.from_env({"GAPSTREAM_HOME": str(tmp_path), "GAPSTREAM_SIMULATED_SECONDS_PER_IMAGE": "fast"})


# Never reached: building Backends opens no connection, and these tests close them before using Redis.
UNUSED_REDIS = "redis://127.0.0.1:9/0"


def _settings(tmp_path, **env):
    return Settings.from_env({"GAPSTREAM_HOME": str(tmp_path), "GAPSTREAM_SEMANTIC_MATCHING": "0", **env})


async def test_overrides_replace_what_the_settings_would_build(tmp_path, monkeypatch):
    import infra.diffusion

    def no_diffusers(settings):
        raise AssertionError("an overridden generator must not load a diffusion model")

    monkeypatch.setattr(infra.diffusion, "load_text_to_image", no_diffusers)
    settings = _settings(tmp_path, SERPAPI_API_KEY="k")
    overrides = simulated_backends(0.0, llm_s=0.0, search_s=0.0)
    backends = await open_backends(settings, UNUSED_REDIS, STAGES, overrides)
    try:
        assert backends.text_to_image is overrides.text_to_image
        assert backends.llm is overrides.llm and backends.vlm is overrides.vlm
        assert backends.search == overrides.search and isinstance(backends.search[0], SimulatedSearch)
    finally:
        await backends.aclose()
    chosen = await open_backends(settings, UNUSED_REDIS, ("searcher",))  # without overrides: the settings' choice
    try:
        assert [type(b).__name__ for b in chosen.search] == ["CachedSearch"]
    finally:
        await chosen.aclose()


async def test_overrides_still_go_only_to_the_stages_that_run_here(tmp_path):
    overrides = simulated_backends(0.0, llm_s=0.0, search_s=0.0)
    backends = await open_backends(_settings(tmp_path), UNUSED_REDIS, ("generator",), overrides)
    try:
        assert backends.text_to_image is overrides.text_to_image
        assert (backends.llm, backends.vlm, backends.search) == (None, None, [])
    finally:
        await backends.aclose()
    critic = await open_backends(_settings(tmp_path), UNUSED_REDIS, ("critic",), overrides)
    try:
        assert critic.vlm is overrides.vlm and (critic.llm, critic.text_to_image) == (None, None)
    finally:
        await critic.aclose()
