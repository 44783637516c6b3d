"""Simulated backends for benchmarks: they cost what a real one costs in wall time (a sleep) and nothing else.

- `SimulatedTextToImage`: a no-op generator that sleeps like a GPU (0: instant) and returns 1×1 images: one call
  costs `seconds_per_image` for its first image and `seconds_per_batched_image` for each further one (default: the
  same, i.e. no batching gain; a real GPU renders a batch in less than the sum of its images), so the rest of the
  stage (PNG encoding, the image store, the critic reading it back) still runs for real.
  `gapstream bench scaleout` runs it in its generator worker processes (`benchmarks.sim_worker`): on a 2-CPU
  machine a sleep is the only way to measure how a GPU group scales without the workers competing for the same
  cores.
- `SimulatedSearch`: a search backend that waits `latency_s` and finds nothing.
- `SimulatedLLM`: a model that waits `latency_s` and then declines to answer (`LLMError`, not retriable), so the
  model-backed stage makes exactly one call of that latency per round and its heuristic fallback does the work.

The `simulated` label is in every trace (search backend, LLM call model, image model) so a result produced by them
is never mistaken for a real one. The benchmarks hand them to the pipeline as `streams.backends.BackendOverrides`
(`simulated_backends`); no setting switches them on, so a deployment never runs one by mistake.
"""

from __future__ import annotations

import asyncio
import time
from typing import Sequence

from typing import Optional

from agents.ports import GenerationDefaults, GenerationJob, LLMError, LLMReply
from schemas.records import Hit
from streams.backends import BackendOverrides

SIMULATED = "simulated"


class SimulatedTextToImage:
    """`agents.ports.TextToImage` that sleeps like a GPU and draws a 1×1 grey pixel per job."""

    model_name = f"{SIMULATED}-generator"

    def __init__(self, seconds_per_image: float = 0.0, defaults: GenerationDefaults | None = None,
                 seconds_per_batched_image: float | None = None) -> None:
        if seconds_per_image < 0:
            raise ValueError(f"seconds_per_image must be >= 0, got {seconds_per_image}")
        if seconds_per_batched_image is not None and seconds_per_batched_image < 0:
            raise ValueError(f"seconds_per_batched_image must be >= 0, got {seconds_per_batched_image}")
        self.seconds_per_image = seconds_per_image
        self.seconds_per_batched_image = (seconds_per_image if seconds_per_batched_image is None
                                          else seconds_per_batched_image)
        self.defaults = defaults or GenerationDefaults(width=64, height=64, steps=4, guidance=7.5, max_side=2048)
        self.images_made = 0

    def generate(self, jobs: Sequence[GenerationJob]) -> list:
        from PIL import Image

        # Blocking on purpose: callers run `generate` off the event loop, exactly as with a real pipeline.
        if jobs and (self.seconds_per_image or self.seconds_per_batched_image):
            time.sleep(self.seconds_per_image + self.seconds_per_batched_image * (len(jobs) - 1))
        self.images_made += len(jobs)
        return [Image.new("RGB", (1, 1), (128, 128, 128)) for _ in jobs]

    def __repr__(self) -> str:
        return (f"SimulatedTextToImage(seconds_per_image={self.seconds_per_image}, "
                f"seconds_per_batched_image={self.seconds_per_batched_image})")


class SimulatedSearch:
    """`agents.ports.SearchBackend` that answers after `latency_s` with no hits."""

    name = SIMULATED

    def __init__(self, latency_s: float = 0.0) -> None:
        if latency_s < 0:
            raise ValueError(f"latency_s must be >= 0, got {latency_s}")
        self.latency_s = latency_s
        self.calls = 0

    async def search(self, query: str, limit: int = 5) -> list[Hit]:
        self.calls += 1
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        return []


class SimulatedLLM:
    """`agents.ports.StructuredLLM` that waits `latency_s`, then declines: the stage falls back to its heuristic."""

    model = f"{SIMULATED}-llm"

    def __init__(self, latency_s: float = 0.0) -> None:
        if latency_s < 0:
            raise ValueError(f"latency_s must be >= 0, got {latency_s}")
        self.latency_s = latency_s
        self.calls = 0

    async def complete(self, *, system: str, user: str, output: type, images: Sequence[bytes] = ()) -> LLMReply:
        self.calls += 1
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        raise LLMError("simulated model: latency only, no answer", retriable=False, kind="unreachable")


def simulated_backends(seconds_per_image: Optional[float] = None, seconds_per_batched_image: Optional[float] = None,
                       llm_s: Optional[float] = None, search_s: Optional[float] = None) -> BackendOverrides:
    """Fresh simulated backends for one run; a latency left at None keeps what the settings choose for that part.
    One model serves planner, enricher and critic, as one model endpoint would."""
    model = None if llm_s is None else SimulatedLLM(llm_s)
    generator = (None if seconds_per_image is None
                 else SimulatedTextToImage(seconds_per_image, seconds_per_batched_image=seconds_per_batched_image))
    return BackendOverrides(
        text_to_image=generator,
        llm=model,
        vlm=model,
        search=None if search_s is None else [SimulatedSearch(search_s)],
    )
