"""Small numeric helpers shared by the encoder and generation (no recommender knowledge)."""
from __future__ import annotations

import numpy as np


def pca(x: np.ndarray, dim: int) -> np.ndarray:
    """Project rows of ``x`` onto its top ``dim`` principal components (centred, SVD)."""
    if not 0 < dim <= min(x.shape):
        raise ValueError(f"PCA dimension must be in 1..{min(x.shape)}, got {dim}")
    centred = x - x.mean(axis=0, keepdims=True)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    return (centred @ vt[:dim].T).astype(np.float32)


def top_k_cosine(x: np.ndarray, k: int, chunk: int = 1024) -> np.ndarray:
    """``(N, k)``: for every row of ``x``, the ``k`` other rows of highest cosine similarity,
    most similar first (never the row itself). Exact, by blocks of ``chunk`` rows against all
    (``chunk × N`` floats at a time), with torch's matmul and top-k: all Beauty users
    (22k × 384) take seconds on one core, so an approximate index (faiss) would not pay."""
    import torch

    n = x.shape[0]
    if not 0 < k < n:
        raise ValueError(f"k must lie in 1..{n - 1} (the other rows), got {k}")
    t = torch.as_tensor(np.asarray(x, dtype=np.float32))
    t = t / t.norm(dim=1, keepdim=True).clamp(min=1e-12)
    out = np.empty((n, k), dtype=np.int64)
    for lo in range(0, n, chunk):
        sims = t[lo:lo + chunk] @ t.T
        rows = torch.arange(sims.shape[0])
        sims[rows, rows + lo] = float("-inf")  # never the row itself
        out[lo:lo + chunk] = sims.topk(k, dim=1).indices.numpy()
    return out
