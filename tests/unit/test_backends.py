"""The one place that chooses backends: only what a worker's stages need is built, overrides replace the choice,
and every Redis adapter shares the deployment's namespace."""

from __future__ import annotations

import subprocess
import sys

import pytest

from infra.settings import Settings
from streams.backends import BackendOverrides, open_backends

# Nothing listens here: building the Redis client connects to nothing until a command is sent.
REDIS_URL = "redis://127.0.0.1:9/0"


def settings(tmp_path, **changes) -> Settings:
    return Settings(home=tmp_path, kafka_bootstrap=None, redis_url=None, semantic_matching=False).with_overrides(
        image_store=str(tmp_path / "images"), **changes)


class Model:
    model_name = "injected"


async def test_a_cpu_stage_builds_no_model(tmp_path):
    backends = await open_backends(settings(tmp_path), REDIS_URL, frozenset())
    try:
        assert backends.text_to_image is None and backends.llm is None and backends.vlm is None
        assert backends.search == [] and backends.embedder is None
        assert backends.image_store.put(b"x", "a/b.png").startswith("file://")
    finally:
        await backends.aclose()


async def test_models_are_kept_only_for_stages_that_use_them(tmp_path):
    configured = settings(tmp_path, llm_model="m", vlm_model="v", openai_api_key="sk-test")
    backends = await open_backends(configured, REDIS_URL, frozenset({"llm"}))
    try:
        assert backends.llm is not None and backends.llm.model == "m"
        assert backends.vlm is None  # no critic here
    finally:
        await backends.aclose()


async def test_overrides_replace_what_the_settings_would_choose(tmp_path):
    model, llm, search = Model(), object(), [object()]
    overrides = BackendOverrides(text_to_image=model, llm=llm, vlm=llm, search=search)
    backends = await open_backends(settings(tmp_path), REDIS_URL, frozenset({"text_to_image", "llm", "search"}),
                                   overrides)
    try:
        assert backends.text_to_image is model and backends.llm is llm and backends.search is search
        assert backends.vlm is None  # overridden, but no stage here needs it
    finally:
        await backends.aclose()


async def test_every_redis_adapter_is_under_the_deployments_namespace(tmp_path):
    backends = await open_backends(settings(tmp_path, app_id="dep1"), REDIS_URL, frozenset())
    try:
        namespace = "dep1:"
        assert backends.pending.prefix == namespace and backends.dedupe.prefix == namespace
        assert backends.claims.prefix == namespace
        assert all(key.startswith(namespace) for key in backends.memory.keys("ann"))  # through the outage wrapper
    finally:
        await backends.aclose()


async def test_an_unknown_need_is_a_wiring_error(tmp_path):
    with pytest.raises(ValueError, match="unknown backend need.*gpu"):
        await open_backends(settings(tmp_path), REDIS_URL, frozenset({"gpu"}))


def test_choosing_backends_imports_no_model_library():
    code = "import streams.backends, streams.topology, sys; print(sorted(m for m in ('torch', 'diffusers', " \
           "'transformers', 'openai') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
