"""The diffusers adapter behind `agents.ports.TextToImage`, and the tiny offline pipeline tests and local runs use.

torch, diffusers and transformers belong to the optional `image` extra, so they are imported inside the functions
that need them: importing this module must not require them.
"""

from __future__ import annotations

import threading
from itertools import groupby
from typing import TYPE_CHECKING, Any, Optional, Sequence

from agents.ports import GenerationDefaults, GenerationJob
from infra.settings import Settings
from schemas.records import MAX_STEPS

if TYPE_CHECKING:
    import PIL.Image

TINY_MODEL_NAME = "gapstream/tiny-random-sd"
_TINY_ALIASES = ("", "tiny", TINY_MODEL_NAME)
_TINY_MAX_SIDE = 256
_MAX_SEED = 2**64 - 1
_DTYPES = ("float32", "float16", "bfloat16")
# Distilled models are trained for a handful of steps without classifier-free guidance; 25 steps would only blur.
_FEW_STEP_MARKERS = ("turbo", "lightning", "lcm", "schnell", "hyper")


# diffusers and transformers resolve their classes lazily on first access, and two threads doing that at once can
# see a half-made module (seen: "module 'diffusers' has no attribute 'UNet2DConditionModel'" when two workers in
# one process built their pipelines together): the first import and resolution happen under one lock.
_IMPORT_LOCK = threading.Lock()


def _image_extra() -> tuple[Any, Any, Any]:
    with _IMPORT_LOCK:
        try:
            import diffusers
            import torch
            import transformers

            for name in ("UNet2DConditionModel", "AutoencoderKL", "EulerDiscreteScheduler", "StableDiffusionPipeline",
                         "AutoPipelineForText2Image"):
                getattr(diffusers, name)  # resolved here, under the lock
            for name in ("CLIPTextConfig", "CLIPTextModel", "CLIPTokenizer"):
                getattr(transformers, name)
        except ImportError as exc:
            raise ImportError(
                f"image generation needs the optional dependencies of the image extra ({exc.name} is missing): "
                "pip install 'gapstream[image]'"
            ) from exc
    return torch, diffusers, transformers


def _tiny_tokenizer(transformers: Any) -> Any:
    from tokenizers.pre_tokenizers import ByteLevel

    # Every byte has a token (and an end-of-word twin, which CLIP's BPE asks for on a word's last symbol), so any
    # prompt in any script tokenizes without unknowns and without merges; sorted for a stable id assignment.
    alphabet = sorted(ByteLevel.alphabet())
    vocab = {symbol: i for i, symbol in enumerate(alphabet)}
    vocab.update({symbol + "</w>": len(alphabet) + i for i, symbol in enumerate(alphabet)})
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    return transformers.CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77)


def build_tiny_pipeline(seed: int = 0) -> Any:
    """A StableDiffusionPipeline with random weights built from config: offline, ~3 M parameters, 64×64 in ~0.1 s.

    The weights depend only on `seed`, so two builds with the same seed produce the same images.
    """
    torch, diffusers, transformers = _image_extra()
    tokenizer = _tiny_tokenizer(transformers)
    # fork_rng: seeding the global generator to make the weights deterministic must not change the caller's stream.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = diffusers.UNet2DConditionModel(
            block_out_channels=(32, 64),
            layers_per_block=2,
            sample_size=32,
            in_channels=4,
            out_channels=4,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            cross_attention_dim=32,
            norm_num_groups=32,
        )
        torch.manual_seed(seed + 1)
        vae = diffusers.AutoencoderKL(
            block_out_channels=(32, 64),
            in_channels=3,
            out_channels=3,
            down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
            up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
            latent_channels=4,
            norm_num_groups=32,
            sample_size=64,
        )
        torch.manual_seed(seed + 2)
        text_encoder = transformers.CLIPTextModel(
            transformers.CLIPTextConfig(
                vocab_size=len(tokenizer),
                hidden_size=32,
                intermediate_size=64,
                num_hidden_layers=2,
                num_attention_heads=4,
                max_position_embeddings=tokenizer.model_max_length,
                bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id,
            )
        )
    scheduler = diffusers.EulerDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        num_train_timesteps=1000,
        steps_offset=1,
    )
    pipe = diffusers.StableDiffusionPipeline(
        vae=vae.eval(),
        text_encoder=text_encoder.eval(),
        tokenizer=tokenizer,
        unet=unet.eval(),
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _native_side(pipe: Any) -> Optional[int]:
    scale = getattr(pipe, "vae_scale_factor", None)
    sample = getattr(pipe, "default_sample_size", None)
    if sample is None and getattr(pipe, "unet", None) is not None:
        sample = pipe.unet.config.get("sample_size")
    if isinstance(scale, int) and isinstance(sample, int) and sample * scale % 8 == 0:
        return sample * scale
    return None


def default_generation(model: str, pipe: Any = None) -> GenerationDefaults:
    """Sensible defaults for a real model: its native resolution, 25 steps, or 4 steps and no guidance if distilled."""
    name = model.lower()
    few_steps = any(marker in name for marker in _FEW_STEP_MARKERS)
    side = (_native_side(pipe) if pipe is not None else None) or (1024 if "xl" in name else 512)
    guidance = 0.0 if few_steps else (5.0 if "xl" in name else 7.5)
    return GenerationDefaults(width=side, height=side, steps=4 if few_steps else 25, guidance=guidance, max_side=2048)


class DiffusersTextToImage:
    """`TextToImage` over a diffusers text-to-image pipeline, micro-batching jobs that share `batch_key()`.

    `pipeline` is any callable taking `prompt`, `negative_prompt` (lists), `width`, `height`, `num_inference_steps`,
    `guidance_scale`, `generator` (one seeded `torch.Generator` per image) and `output_type="pil"`, and returning
    the images (a list, or an object with `.images` as diffusers pipelines do): another backend with that shape
    plugs in here.

    Each image gets its own `torch.Generator` seeded with the job's seed, so an image depends on its prompt, seed and
    model only, not on which other jobs shared its batch.
    """

    def __init__(
        self, pipeline: Any, model_name: str, defaults: GenerationDefaults, *, max_batch: int = 8
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        self.pipeline = pipeline
        self.model_name = model_name
        self.defaults = defaults
        self.max_batch = max_batch
        # Schedulers keep per-call state (timesteps, step index): two threads in one pipeline would corrupt it.
        self._lock = threading.Lock()

    @classmethod
    def tiny(
        cls, seed: int = 0, *, size: int = 64, steps: int = 4, guidance: float = 1.0, device: str = "cpu",
        max_batch: int = 8,
    ) -> "DiffusersTextToImage":
        """The offline random-weight model; guidance 1.0 skips classifier-free guidance, halving the work."""
        pipe = build_tiny_pipeline(seed)
        if device != "cpu":
            pipe = pipe.to(device)
        defaults = GenerationDefaults(
            width=size, height=size, steps=steps, guidance=guidance, max_side=max(_TINY_MAX_SIDE, size)
        )
        return cls(pipe, TINY_MODEL_NAME, defaults, max_batch=max_batch)

    @classmethod
    def from_pretrained(
        cls,
        model: str,
        device: str = "cpu",
        dtype: str = "float32",
        *,
        defaults: Optional[GenerationDefaults] = None,
        max_batch: int = 8,
        attention_slicing: bool = False,
        cpu_offload: bool = False,
    ) -> "DiffusersTextToImage":
        """Load any diffusers text-to-image model by hub id or local directory (a hub id may download weights).

        `cpu_offload` keeps each sub-model on the CPU until it runs (less GPU memory, slower); it needs a CUDA
        device and accelerate. `attention_slicing` computes attention in slices (less peak memory, slower).
        """
        if dtype not in _DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(_DTYPES)}, got {dtype!r}")
        if cpu_offload and not str(device).startswith("cuda"):
            raise ValueError(f"CPU offload moves sub-models to a CUDA device as they run; device is {device!r}")
        torch, diffusers, _ = _image_extra()
        try:
            pipe = diffusers.AutoPipelineForText2Image.from_pretrained(model, torch_dtype=getattr(torch, dtype))
        except (OSError, ValueError) as exc:
            # Hub ids and paths fail with long, nested messages; say which setting to look at first.
            raise ValueError(
                f"could not load the diffusers text-to-image model {model!r} (GAPSTREAM_IMAGE_MODEL): "
                f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            ) from exc
        if cpu_offload:
            pipe.enable_model_cpu_offload(device=device)
        else:
            pipe = pipe.to(device)
        if attention_slicing:
            pipe.enable_attention_slicing()
        pipe.set_progress_bar_config(disable=True)
        return cls(pipe, model, defaults or default_generation(model, pipe), max_batch=max_batch)

    def validate(self, jobs: Sequence[GenerationJob]) -> None:
        """Raise ValueError naming the job and the limit when a job is outside what this model accepts."""
        self._check(jobs)

    def _check(self, jobs: Sequence[GenerationJob]) -> None:
        limit = self.defaults.max_side
        for i, job in enumerate(jobs):
            if not isinstance(job, GenerationJob):
                raise ValueError(f"job {i} is a {type(job).__name__}, not a GenerationJob")
            for side in ("width", "height"):
                value = getattr(job, side)
                if not isinstance(value, int) or value < 8 or value % 8 or value > limit:
                    raise ValueError(f"job {i}: {side} must be a multiple of 8 between 8 and {limit}, got {value!r}")
            if not isinstance(job.steps, int) or not 1 <= job.steps <= MAX_STEPS:
                raise ValueError(f"job {i}: steps must be between 1 and {MAX_STEPS}, got {job.steps!r}")
            if not job.guidance >= 0.0:
                raise ValueError(f"job {i}: guidance must be >= 0, got {job.guidance!r}")
            if not isinstance(job.seed, int) or not 0 <= job.seed <= _MAX_SEED:
                raise ValueError(f"job {i}: seed must be an integer between 0 and 2**64-1, got {job.seed!r}")
            if not isinstance(job.prompt, str) or not isinstance(job.negative_prompt, str):
                raise ValueError(f"job {i}: prompt and negative_prompt must be strings")

    def generate(self, jobs: Sequence[GenerationJob]) -> list["PIL.Image.Image"]:
        """Blocking: run the jobs, one pipeline call per batch key (up to `max_batch`), images in input order."""
        jobs = list(jobs)
        self._check(jobs)
        if not jobs:
            return []
        torch, _, _ = _image_extra()
        gen_device = _generator_device(self.pipeline)
        order = sorted(range(len(jobs)), key=lambda i: (jobs[i].batch_key(), i))
        images: list[Any] = [None] * len(jobs)
        for key, group in groupby(order, key=lambda i: jobs[i].batch_key()):
            indices = list(group)
            width, height, steps, guidance = key
            for start in range(0, len(indices), self.max_batch):
                chunk = indices[start : start + self.max_batch]
                generators = [torch.Generator(gen_device).manual_seed(jobs[i].seed) for i in chunk]
                with self._lock, torch.inference_mode():
                    out = self.pipeline(
                        prompt=[jobs[i].prompt for i in chunk],
                        negative_prompt=[jobs[i].negative_prompt for i in chunk],
                        width=width,
                        height=height,
                        num_inference_steps=steps,
                        guidance_scale=guidance,
                        generator=generators,
                        output_type="pil",
                    )
                produced = list(getattr(out, "images", out))
                if len(produced) != len(chunk):
                    raise RuntimeError(f"{self.model_name} returned {len(produced)} images for {len(chunk)} prompts")
                for i, image in zip(chunk, produced):
                    images[i] = image
        return images

    def __repr__(self) -> str:
        return f"DiffusersTextToImage({self.model_name!r}, device={str(getattr(self.pipeline, 'device', 'cpu'))!r})"


def _generator_device(pipeline: Any) -> Any:
    """Where the per-image torch generators live: the pipeline's execution device (CPU for plug-in callables).

    With model CPU offload the weights sit on the CPU between calls but run on CUDA, and the noise must be drawn
    where the UNet runs for a seed to give the same image with and without offload.
    """
    device = getattr(pipeline, "_execution_device", None) or getattr(pipeline, "device", None) or "cpu"
    kind = getattr(device, "type", str(device))
    # MPS has no seedable device generators; CPU ones give the same noise there anyway.
    return "cpu" if kind in ("mps", "meta") else device


def is_tiny(model: Optional[str]) -> bool:
    return model is None or model in _TINY_ALIASES


def generation_defaults(settings: Settings) -> GenerationDefaults:
    """The defaults the generator will apply, known without loading the model (the enricher runs without it)."""
    if is_tiny(settings.image_model):
        size = settings.default_size
        return GenerationDefaults(width=size, height=size, steps=settings.default_steps, guidance=1.0,
                                  max_side=max(_TINY_MAX_SIDE, size))
    return default_generation(settings.image_model or "")
