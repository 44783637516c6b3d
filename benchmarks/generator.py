"""`gapstream bench generator`: the same N jobs one request at a time, then micro-batched, on the configured model.

Both modes run the generator's real path (validation, one model call per batch, PNG encoding with metadata, writes
to a throw-away filesystem store), so the ratio is what a worker gains from batching, not a pipeline-only figure.
Each mode runs `--repeats` times, interleaved so a noisy neighbour hurts both alike, and its fastest run counts.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
from typing import Any, Optional

import click

from agents.generator import Generator, plan_batches
from infra.settings import Settings, SettingsError
from schemas.records import EnrichedPromptRecord, GenerationParams, ImageRequest


def bench_records(jobs: int, size: int, steps: int, guidance: float) -> list[EnrichedPromptRecord]:
    """One single-draft request per job, each with its own prompt and seed."""
    records = []
    for i in range(jobs):
        prompt = f"bench image {i}: a lighthouse on a cliff at dusk, oil painting"
        request = ImageRequest(request_id=f"bench-{i}", user_id="bench", prompt=prompt)
        records.append(EnrichedPromptRecord(
            request_id=request.request_id, user_id="bench", round=1, request=request, prompt=prompt,
            params=GenerationParams(width=size, height=size, steps=steps, guidance=guidance, seeds=[1000 + i]),
        ))
    return records


async def _sequential(generator: Generator, records: list[EnrichedPromptRecord]) -> float:
    started = time.perf_counter()
    for record in records:
        await generator.render([record])
    return time.perf_counter() - started


async def _batched(generator: Generator, records: list[EnrichedPromptRecord], max_batch: int) -> float:
    started = time.perf_counter()
    for batch in plan_batches([(r, generator.jobs(r)) for r in records], max_batch):
        await generator.render(batch)
    return time.perf_counter() - started


def run_benchmark(model: Any, *, jobs: int, size: int, steps: int, guidance: float, max_batch: int,
                  repeats: int) -> dict[str, Any]:
    from infra.image_store import FilesystemImageStore

    model.max_batch = max_batch  # the model splits its calls at its own limit; the bench's is the one to use
    records = bench_records(jobs, size, steps, guidance)
    with tempfile.TemporaryDirectory(prefix="gapstream-bench-") as folder:
        generator = Generator(model, FilesystemImageStore(folder))

        async def measure() -> tuple[list[float], list[float]]:
            # Warm-up: the first call pays one-off costs (allocator, kernels, lazy imports) in either mode.
            await _batched(generator, records[: min(len(records), max_batch)], max_batch)
            sequential, batched = [], []
            for _ in range(repeats):
                sequential.append(await _sequential(generator, records))
                batched.append(await _batched(generator, records, max_batch))
            return sequential, batched

        sequential, batched = asyncio.run(measure())
    best_seq, best_batch = min(sequential), min(batched)
    device = getattr(getattr(model, "pipeline", None), "device", "cpu")
    return {
        "model": model.model_name,
        "device": str(device),
        "jobs": jobs,
        "width_px": size,
        "height_px": size,
        "steps": steps,
        "max_batch_images": max_batch,
        "repeats": repeats,
        "seconds_sequential": round(best_seq, 4),
        "seconds_batched": round(best_batch, 4),
        "images_per_s_sequential": round(jobs / best_seq, 3),
        "images_per_s_batched": round(jobs / best_batch, 3),
        "speedup": round(best_seq / best_batch, 3),
    }


@click.command(name="generator")
@click.option("--jobs", "-n", type=click.IntRange(1, 10_000), default=16, show_default=True,
              help="Images to generate in each mode (one single-draft request each).")
@click.option("--size", type=click.IntRange(8, 2048), default=None,
              help="Width and height in pixels (default: GAPSTREAM_DEFAULT_SIZE for the tiny model, else 512).")
@click.option("--steps", type=click.IntRange(1, 150), default=None,
              help="Denoising steps (default: the model's default).")
@click.option("--max-batch", type=click.IntRange(1, 256), default=None,
              help="Images per pipeline call when batched (default: GAPSTREAM_MAX_BATCH).")
@click.option("--repeats", type=click.IntRange(1, 20), default=2, show_default=True,
              help="Runs of each mode; the fastest counts.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object whose keys name their unit.")
def command(jobs: int, size: Optional[int], steps: Optional[int], max_batch: Optional[int], repeats: int,
            as_json: bool) -> None:
    """Images/s one at a time vs micro-batched on the configured model (GAPSTREAM_IMAGE_MODEL; tiny by default)."""
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from None
    if size is not None and size % 8:
        raise click.BadParameter(f"must be a multiple of 8, got {size}", param_hint="--size")
    from streams.backends import load_text_to_image

    try:
        model = load_text_to_image(settings)
    except (ImportError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    defaults = model.defaults
    figures = run_benchmark(
        model, jobs=jobs, size=size or defaults.width, steps=steps or defaults.steps, guidance=defaults.guidance,
        max_batch=max_batch or settings.max_batch, repeats=repeats,
    )
    if as_json:
        json.dump(figures, sys.stdout)
        sys.stdout.write("\n")
        return
    click.echo(f"model {figures['model']} on {figures['device']}: {jobs} images of {figures['width_px']}x"
               f"{figures['height_px']}, {figures['steps']} steps, batches of up to {figures['max_batch_images']}")
    click.echo(f"one at a time  {figures['images_per_s_sequential']:8.2f} images/s  "
               f"({figures['seconds_sequential']:.2f} s)")
    click.echo(f"micro-batched  {figures['images_per_s_batched']:8.2f} images/s  ({figures['seconds_batched']:.2f} s)")
    click.echo(f"speedup        {figures['speedup']:8.2f}x")
