"""benchmarks/device_check.py runs end to end on CPU with --tiny (the GPU run uses the same code at SD-Turbo size)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_device_check_tiny_prints_sequential_and_batched_figures():
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "device_check.py"), "--tiny", "--json", "--jobs", "2",
         "--steps", "1,2", "--batch", "2"],
        capture_output=True, text=True, timeout=600, cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    assert (report["pipeline"], report["device"], report["width_px"], report["batch_images"]) == (
        "tiny-random-sd", "cpu", 64, 2)
    assert [row["steps"] for row in report["results"]] == [1, 2]
    for row in report["results"]:
        assert row["images_per_s_sequential"] > 0 and row["images_per_s_batched"] > 0 and row["speedup"] > 0


def test_device_check_says_when_there_is_no_gpu_and_rejects_bad_options():
    import torch

    if not torch.cuda.is_available():
        done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "device_check.py")],
                              capture_output=True, text=True, timeout=300, cwd=ROOT)
        assert done.returncode == 2 and "no CUDA device" in done.stderr and "--tiny" in done.stderr
    bad = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "device_check.py"), "--tiny", "--steps", "x"],
                         capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert bad.returncode == 2 and "--steps" in bad.stderr


def test_the_gpu_pipeline_has_sd_turbo_scale():
    """The script's full-size pipeline, built on the meta device (shapes, no memory): SD 2.1's ~866 M-parameter
    UNet and ~1.29 B parameters in all, in the requested dtype."""
    sys.path.insert(0, str(ROOT))
    from benchmarks.device_check import build_sd_turbo_sized_pipeline, parameter_count

    pipe = build_sd_turbo_sized_pipeline("meta", "float16")
    assert 850e6 < sum(p.numel() for p in pipe.unet.parameters()) < 880e6
    assert 1.2e9 < parameter_count(pipe) < 1.4e9
    assert str(pipe.unet.dtype) == "torch.float16" and pipe.unet.config.cross_attention_dim == 1024
