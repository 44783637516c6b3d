"""Device check: sequential vs micro-batched images/s of an SD-Turbo-sized pipeline with random weights.

    python benchmarks/device_check.py                 # CUDA, fp16, 512x512, 1 and 4 steps, batch 8 (no download)
    python benchmarks/device_check.py --tiny --json   # the tiny pipeline on CPU, 64x64 (run by the test suite)

The pipeline is built from config, not downloaded: a Stable Diffusion 2.1-shaped UNet (320/640/1280/1280 channels,
cross-attention 1024, linear projections: ~866 M parameters, as in SD-Turbo), its 4-block VAE and a 23-layer
1024-wide CLIP text encoder, random weights in the chosen dtype. Random weights cost the same FLOPs as trained ones,
so the throughput figures hold; the images are noise. Both modes go through `DiffusersTextToImage.generate`
(per-image seeded generators, PIL output), the same call the worker makes; PNG encoding and storage are left out so
the figures are the device's.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agents.ports import GenerationDefaults, GenerationJob  # noqa: E402
from infra.diffusion import DiffusersTextToImage, _image_extra, _tiny_tokenizer, build_tiny_pipeline  # noqa: E402


def build_sd_turbo_sized_pipeline(device: str, dtype: str, seed: int = 0) -> Any:
    """SD-Turbo's architecture (SD 2.1 base) from config with random weights, built directly on `device`."""
    torch, diffusers, transformers = _image_extra()
    tokenizer = _tiny_tokenizer(transformers)  # byte-level: any prompt, ids well inside the real vocab size
    torch_dtype = getattr(torch, dtype)
    torch.manual_seed(seed)
    with torch.device(device):
        unet = diffusers.UNet2DConditionModel(
            sample_size=64,
            in_channels=4,
            out_channels=4,
            block_out_channels=(320, 640, 1280, 1280),
            layers_per_block=2,
            down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
            cross_attention_dim=1024,
            attention_head_dim=(5, 10, 20, 20),
            use_linear_projection=True,
        )
        vae = diffusers.AutoencoderKL(
            in_channels=3,
            out_channels=3,
            block_out_channels=(128, 256, 512, 512),
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
            latent_channels=4,
            layers_per_block=2,
            sample_size=512,
        )
        text_encoder = transformers.CLIPTextModel(transformers.CLIPTextConfig(
            vocab_size=49408,
            hidden_size=1024,
            intermediate_size=4096,
            num_hidden_layers=23,
            num_attention_heads=16,
            hidden_act="gelu",
            max_position_embeddings=77,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        ))
    # Random fp16 weights can overflow to inf/NaN in the VAE; scaled-down weights keep activations finite without
    # changing the work done.
    with torch.no_grad():
        for module in (unet, vae, text_encoder):
            for param in module.parameters():
                if param.dim() > 1:
                    param.mul_(0.5)
    scheduler = diffusers.EulerDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000,
        timestep_spacing="trailing", prediction_type="v_prediction", steps_offset=1,
    )
    pipe = diffusers.StableDiffusionPipeline(
        vae=vae.to(dtype=torch_dtype).eval(),
        text_encoder=text_encoder.to(dtype=torch_dtype).eval(),
        tokenizer=tokenizer,
        unet=unet.to(dtype=torch_dtype).eval(),
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def parameter_count(pipe: Any) -> int:
    return sum(p.numel() for m in (pipe.unet, pipe.vae, pipe.text_encoder) for p in m.parameters())


def measure(model: DiffusersTextToImage, *, jobs: int, size: int, steps: int, batch: int) -> dict[str, float]:
    work = [GenerationJob(f"device check {i}: a lighthouse at dusk", "", size, size, steps, 0.0, 100 + i)
            for i in range(jobs)]
    model.max_batch = batch
    model.generate(work[:batch])  # warm-up: kernels, allocator, cuDNN autotuning
    started = time.perf_counter()
    for job in work:
        model.generate([job])
    sequential = time.perf_counter() - started
    started = time.perf_counter()
    model.generate(work)  # one call per `batch` images
    batched = time.perf_counter() - started
    return {
        "steps": steps,
        "images_per_s_sequential": round(jobs / sequential, 3),
        "images_per_s_batched": round(jobs / batched, 3),
        "speedup": round(sequential / batched, 3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true", help="the tiny offline pipeline on CPU at 64x64")
    parser.add_argument("--device", default=None, help="default: cuda (cpu with --tiny)")
    parser.add_argument("--dtype", default=None, choices=("float16", "bfloat16", "float32"),
                        help="default: float16 (float32 with --tiny)")
    parser.add_argument("--size", type=int, default=None, help="pixels per side (default 512; 64 with --tiny)")
    parser.add_argument("--steps", default="1,4", help="comma-separated step counts to measure (default 1,4)")
    parser.add_argument("--jobs", type=int, default=16, help="images per mode and step count (default 16)")
    parser.add_argument("--batch", type=int, default=8, help="images per pipeline call when batched (default 8)")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    args = parser.parse_args(argv)
    try:
        steps = [int(s) for s in args.steps.split(",") if s.strip()]
    except ValueError:
        parser.error(f"--steps must be comma-separated integers, got {args.steps!r}")
    if not steps or min(steps) < 1 or args.jobs < 1 or args.batch < 1:
        parser.error("--steps, --jobs and --batch must be positive")
    device = args.device or ("cpu" if args.tiny else "cuda")
    dtype = args.dtype or ("float32" if args.tiny else "float16")
    size = args.size or (64 if args.tiny else 512)
    if size % 8:
        parser.error(f"--size must be a multiple of 8, got {size}")
    torch, _, _ = _image_extra()
    if device.startswith("cuda") and not torch.cuda.is_available():
        print("device_check: no CUDA device here; use --tiny (or --device cpu, very slow at 512x512)",
              file=sys.stderr)
        return 2
    warnings.filterwarnings("ignore", message=".*invalid value encountered.*")

    started = time.perf_counter()
    if args.tiny:
        pipe = build_tiny_pipeline(0).to(device=device, dtype=getattr(torch, dtype))
        name = "tiny-random-sd"
    else:
        pipe = build_sd_turbo_sized_pipeline(device, dtype)
        name = "sd-turbo-sized-random"
    build_s = time.perf_counter() - started
    model = DiffusersTextToImage(pipe, name, GenerationDefaults(size, size, steps[0], 0.0, max(size, 2048)),
                                 max_batch=args.batch)
    rows = []
    with torch.inference_mode():
        for n in steps:
            rows.append(measure(model, jobs=args.jobs, size=size, steps=n, batch=args.batch))
    report = {
        "pipeline": name,
        "parameters": parameter_count(pipe),
        "device": torch.cuda.get_device_name(0) if device.startswith("cuda") else "cpu",
        "dtype": dtype,
        "width_px": size,
        "height_px": size,
        "jobs": args.jobs,
        "batch_images": args.batch,
        "build_seconds": round(build_s, 2),
        "torch_threads": torch.get_num_threads(),
        "results": rows,
    }
    if device.startswith("cuda"):
        report["gpu_memory_peak_bytes"] = torch.cuda.max_memory_allocated()
    if args.json:
        print(json.dumps(report))
        return 0
    print(f"{name}: {report['parameters'] / 1e6:.0f} M parameters, {dtype} on {report['device']}, "
          f"{size}x{size}, {args.jobs} images per mode, batches of {args.batch} (built in {build_s:.1f} s)")
    for row in rows:
        print(f"  {row['steps']} step(s): one at a time {row['images_per_s_sequential']:8.2f} images/s   "
              f"micro-batched {row['images_per_s_batched']:8.2f} images/s   speedup {row['speedup']:.2f}x")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
