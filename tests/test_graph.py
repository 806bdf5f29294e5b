"""Normalised adjacency, edge dropout, the sparse product with its gradient, and node tables
whose gathered rows pass sparse gradients."""
import numpy as np
import pytest
import scipy.sparse as sp
import torch

from semrec.encoder.graph import SparseGraph, gather_rows, normalized_adjacency, split_nodes


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


@pytest.mark.parametrize("use", ["both", "users only", "items only", "dense and sparse"])
def test_split_nodes_and_gather_rows_give_the_plain_gradients(use):
    """Rows gathered from split_nodes' parts (repeats included) and whole-part reads give the
    node table the gradient plain slicing and indexing give; an unused part gets zeros."""
    torch.manual_seed(0)
    w = torch.randn(9, 3, requires_grad=True)
    users_ids, items_ids = torch.tensor([0, 3, 3, 1]), torch.tensor([4, 0, 4, 4, 2])
    coef_u, coef_i = torch.randn(4, 3), torch.randn(5, 3)

    def run(split, gather):
        nodes = torch.tanh(w) * 2  # a non-leaf table, as a backbone's output
        users, items = split(nodes)
        loss = torch.zeros(())
        if use != "items only":
            loss = loss + (gather(users, users_ids) * coef_u).sum()
        if use != "users only":
            loss = loss + (gather(items, items_ids) * coef_i).sum()
        if use == "dense and sparse":
            loss = loss + (users ** 2).sum() + items.sum()
        (grad,) = torch.autograd.grad(loss, w)
        return loss.detach(), grad

    got = run(lambda t: split_nodes(t, 4), gather_rows)
    want = run(lambda t: (t[:4], t[4:]), lambda t, i: t[i])
    torch.testing.assert_close(got, want)


def test_gather_rows_leaves_other_tables_dense():
    """Only split_nodes' parts get sparse row gradients: a parameter's .grad stays dense (an
    optimizer like Adam rejects sparse ones), and without autograd the parts are plain views."""
    p = torch.nn.Parameter(torch.randn(5, 2))
    gather_rows(p, torch.tensor([1, 1, 3])).sum().backward()
    assert p.grad.layout == torch.strided
    torch.testing.assert_close(p.grad[:, 0], torch.tensor([0.0, 2.0, 0.0, 1.0, 0.0]))
    with torch.no_grad():
        users, items = split_nodes(p * 1, 2)
    assert users.grad_fn is None and items.shape == (3, 2)
