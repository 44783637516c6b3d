"""Loading the configured model: settings for batching and memory, local paths through AutoPipelineForText2Image,
clear errors for a model that is not there or options the device cannot use."""

from __future__ import annotations

import pytest

from infra.diffusion import DiffusersTextToImage
from streams.backends import load_text_to_image
from infra.settings import Settings, SettingsError


def test_generator_settings_parse_and_reject_bad_values(tmp_path):
    settings = Settings.from_env({
        "GAPSTREAM_HOME": str(tmp_path), "GAPSTREAM_BATCH_WAIT_MS": "120", "GAPSTREAM_MAX_BATCH": "4",
        "GAPSTREAM_ATTENTION_SLICING": "true", "GAPSTREAM_CPU_OFFLOAD": "0",
        "GAPSTREAM_S3_ENDPOINT_URL": "http://127.0.0.1:9000",
    })
    assert (settings.batch_wait_ms, settings.max_batch, settings.attention_slicing, settings.cpu_offload) == (
        120, 4, True, False)
    assert settings.s3_endpoint_url == "http://127.0.0.1:9000"
    defaults = Settings.from_env({"GAPSTREAM_HOME": str(tmp_path)})
    assert (defaults.batch_wait_ms, defaults.max_batch, defaults.s3_endpoint_url) == (0, 8, None)
    for name, value in (("GAPSTREAM_MAX_BATCH", "0"), ("GAPSTREAM_BATCH_WAIT_MS", "soon"),
                        ("GAPSTREAM_CPU_OFFLOAD", "maybe")):
        with pytest.raises(SettingsError, match=name):
            Settings.from_env({"GAPSTREAM_HOME": str(tmp_path), name: value})


def test_tiny_model_takes_max_batch_from_settings(tmp_path):
    model = load_text_to_image(Settings(home=tmp_path, kafka_bootstrap=None, redis_url=None, max_batch=3))
    assert model.max_batch == 3


def test_a_local_path_loads_with_memory_options(tmp_path):
    target = tmp_path / "tiny-sd"
    DiffusersTextToImage.tiny(seed=3).pipeline.save_pretrained(target)
    settings = Settings(home=tmp_path, kafka_bootstrap=None, redis_url=None, image_model=str(target),
                        attention_slicing=True, max_batch=2)
    model = load_text_to_image(settings)
    assert model.max_batch == 2 and model.model_name == str(target)
    # Attention slicing sets a slice size on every attention processor of the UNet.
    processors = model.pipeline.unet.attn_processors.values()
    assert processors and all(type(p).__name__ == "SlicedAttnProcessor" for p in processors)


def test_a_missing_model_names_the_setting(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # never reach the network from tests
    with pytest.raises(ValueError, match="GAPSTREAM_IMAGE_MODEL"):
        DiffusersTextToImage.from_pretrained(str(tmp_path / "no-such-model"))


def test_cpu_offload_needs_a_cuda_device(tmp_path):
    with pytest.raises(ValueError, match="CUDA"):
        DiffusersTextToImage.from_pretrained(str(tmp_path), device="cpu", cpu_offload=True)
