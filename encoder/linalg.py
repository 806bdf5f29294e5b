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
