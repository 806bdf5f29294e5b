"""Normalised adjacency, edge dropout and the sparse product with its gradient."""
import numpy as np
import pytest
import scipy.sparse as sp
import torch

from semrec.encoder.graph import SparseGraph, normalized_adjacency


def dense_reference(r: np.ndarray, self_loops: bool) -> np.ndarray:
    u, i = r.shape
    a = np.zeros((u + i, u + i))
    a[:u, u:] = r
    a[u:, :u] = r.T
    if self_loops:
        a += np.eye(u + i)
    d = a.sum(1)
    inv = np.where(d > 0, d ** -0.5, 0) if d.all() else np.array([x ** -0.5 if x else 0 for x in d])
    return inv[:, None] * a * inv[None, :]


@pytest.mark.parametrize("self_loops", [False, True])
def test_normalized_adjacency(self_loops):
    r = (np.random.default_rng(0).random((6, 5)) < 0.4).astype(float)
    r[0] = 0  # an isolated user keeps a zero row
    got = normalized_adjacency(sp.csr_matrix(r), self_loops).toarray()
    np.testing.assert_allclose(got, dense_reference(r, self_loops), rtol=1e-6)


def test_propagate_and_gradient_match_dense_with_dropout():
    r = sp.random(20, 15, density=0.3, random_state=1, format="csr")
    g = SparseGraph(normalized_adjacency(r))
    torch.manual_seed(0)
    a, a_t = g.matrices(keep_rate=0.5)
    dense = a.to_dense()
    np.testing.assert_allclose(a_t.to_dense().numpy(), dense.t().numpy())  # transpose stays exact
    x = torch.randn(35, 4, requires_grad=True)
    w = torch.randn(35, 4)
    (g.propagate(x, (a, a_t)) * w).sum().backward()
    x2 = x.detach().clone().requires_grad_()
    (dense @ x2 * w).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), x2.grad.numpy(), rtol=1e-5, atol=1e-6)


def test_edge_dropout_keeps_the_configured_fraction():
    r = sp.random(300, 300, density=0.05, random_state=2, format="csr")
    g = SparseGraph(normalized_adjacency(r))
    torch.manual_seed(1)
    kept = [float((g.matrices(keep_rate=0.8)[0].values() != 0).float().mean()) for _ in range(20)]
    assert abs(np.mean(kept) - 0.8) < 0.01
    full = g.matrices(1.0)[0]
    assert full.values().numel() == g.nnz
    # kept entries keep their values (RLMRec does not rescale)
    dropped = g.matrices(keep_rate=0.5)[0].to_dense()
    mask = dropped != 0
    assert torch.equal(dropped[mask], full.to_dense()[mask])
