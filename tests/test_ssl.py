"""The self-supervised backbones: their augmentations and losses do what they promise."""
import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from semrec.encoder.graph import SparseGraph, normalized_adjacency
from semrec.encoder.losses import info_nce
from semrec.encoder.models import SGL, AutoCF, DCCF, PairBatch
from semrec.encoder.models.graph.autocf import gumbel_noise
from semrec.encoder.models.graph.simgcl import uniform_noise
from semrec.encoder.models.graph.ssl import view_contrast


def test_info_nce_hand_computed():
    a = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    p = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    c = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    t = 0.5
    # anchor 0: cos with p = 1, with candidates (1, 0, -1); anchor 1: cos with p = 1/sqrt2, candidates (0, 1, 0)
    want0 = -1 / t + math.log(math.exp(2) + math.exp(0) + math.exp(-2))
    want1 = -(1 / math.sqrt(2)) / t + math.log(1 + math.exp(2) + 1)
    assert info_nce(a, p, c, t).tolist() == pytest.approx([want0, want1], rel=1e-6)


@pytest.mark.parametrize("negatives", ["all", "batch"])
def test_view_contrast_counts_duplicates_exactly(negatives):
    torch.manual_seed(0)
    v1, v2 = torch.randn(10, 4), torch.randn(10, 4)
    nodes = torch.tensor([3, 3, 5, 1, 3, 5])
    got = view_contrast(v1, v2, nodes, temperature=0.3, negatives=negatives)
    cand = v2 if negatives == "all" else v2[torch.tensor([1, 3, 5])]
    want = info_nce(v1[nodes], v2[nodes], cand, 0.3).sum()
    assert float(got) == pytest.approx(float(want), rel=1e-6)


@pytest.mark.parametrize("negatives", ["all", "batch"])
def test_view_contrast_of_two_groups_is_the_sum_of_their_losses(negatives):
    """Positive and negative items share one call; a node in both groups counts in both."""
    torch.manual_seed(1)
    v1, v2 = torch.randn(10, 4, requires_grad=True), torch.randn(10, 4)
    pos, neg = torch.tensor([2, 7, 7, 4]), torch.tensor([7, 9, 0, 2])
    got = view_contrast(v1, v2, pos, neg, temperature=0.2, negatives=negatives)
    want = sum(view_contrast(v1, v2, g, temperature=0.2, negatives=negatives) for g in (pos, neg))
    assert got.item() == pytest.approx(want.item(), rel=1e-6)
    g_got, = torch.autograd.grad(got, v1)
    g_want, = torch.autograd.grad(want, v1)
    assert torch.allclose(g_got, g_want, atol=1e-6)


@pytest.mark.parametrize("with_bias", [False, True])
def test_weighted_logsumexp_value_and_gradients_match_torch(with_bias):
    """The fused kernel (gradients found in the forward pass) against plain autograd."""
    from semrec.encoder.losses import weighted_logsumexp_similarity

    torch.manual_seed(2)
    a = torch.randn(300, 8, dtype=torch.float64, requires_grad=True)
    c = torch.randn(50, 8, dtype=torch.float64, requires_grad=True)
    w = torch.randint(1, 4, (300,)).double()
    bias = torch.randn(50, dtype=torch.float64) if with_bias else None
    got = weighted_logsumexp_similarity(a, c, w, 2.5, bias, chunk=64) * 3.0
    logits = 2.5 * a @ c.t() + (bias if with_bias else 0)
    want = (torch.logsumexp(logits, 1) * w).sum() * 3.0
    assert got.item() == pytest.approx(want.item(), rel=1e-10)
    ga, gc = torch.autograd.grad(got, (a, c))
    wa, wc = torch.autograd.grad(want, (a, c))
    assert torch.allclose(ga, wa, atol=1e-10) and torch.allclose(gc, wc, atol=1e-10)
    with torch.no_grad():  # evaluation: the value alone
        assert float(weighted_logsumexp_similarity(a, c, w, 2.5, bias)) == pytest.approx(float(want) / 3, rel=1e-10)


def test_grouped_info_nce_is_info_nce_within_each_group():
    """Ten rows in two segments (users, items: never in one group) of 4 and 6 rows, groups of
    three: rows 0-2, 3, 4-6, 7-9, each its own InfoNCE; value and gradients (through the
    cosine's normalisation) against plain autograd."""
    from semrec.encoder.losses import grouped_info_nce

    torch.manual_seed(3)
    a = torch.randn(10, 4, dtype=torch.float64, requires_grad=True)
    p = torch.randn(10, 4, dtype=torch.float64, requires_grad=True)
    bias, w = torch.rand(10, dtype=torch.float64).log(), torch.arange(1.0, 11.0, dtype=torch.float64)
    got = grouped_info_nce(a, p, 0.3, 3, bias, w, segments=[4, 6])
    want = sum((info_nce(a[lo:hi], p[lo:hi], p[lo:hi], 0.3, bias[lo:hi]) * w[lo:hi]).sum()
               for lo, hi in [(0, 3), (3, 4), (4, 7), (7, 10)])
    assert got.item() == pytest.approx(want.item(), rel=1e-12)
    for g, h in zip(torch.autograd.grad(got, (a, p)), torch.autograd.grad(want, (a, p))):
        assert torch.allclose(g, h, atol=1e-12)
    # one group holding every row is plain in-batch InfoNCE; a group of one has nothing to contrast
    assert grouped_info_nce(a, p, 0.3, 64).item() == pytest.approx(info_nce(a, p, p, 0.3).sum().item(), rel=1e-12)
    assert grouped_info_nce(a, p, 0.3, 1).item() == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="group must be at least 1"):
        grouped_info_nce(a, p, 0.3, 0)
    with pytest.raises(ValueError, match="summing to 10"):
        grouped_info_nce(a, p, 0.3, 3, segments=[4, 5])


def test_simgcl_noise_has_the_configured_norm_and_sign():
    x = torch.randn(50, 16)
    noise = uniform_noise(x, 0.3)
    assert torch.allclose(noise.norm(dim=1), torch.full((50,), 0.3), atol=1e-6)
    assert ((noise * x) >= 0).all()  # same orthant as the embedding


def test_sgl_views(tiny_data):
    torch.manual_seed(0)
    m = SGL(tiny_data.train, keep_rate=0.5, augmentation="node_drop").train()
    assert not torch.equal(m.augmented_view(), m.augmented_view())
    clean1, clean2 = m.encode(), m.encode()
    assert torch.equal(clean1[0], clean2[0])  # the BPR view is not augmented
    # random walk: each layer its own dropout, so the view differs from a fixed-dropout one with the same seed
    rw = SGL(tiny_data.train, keep_rate=0.5, augmentation="random_walk")
    ed = SGL(tiny_data.train, keep_rate=0.5, augmentation="edge_drop")
    ed.load_state_dict(rw.state_dict())
    torch.manual_seed(1); a = rw.augmented_view()
    torch.manual_seed(1); b = ed.augmented_view()
    assert not torch.allclose(a, b)
    with pytest.raises(ValueError, match="augmentation must be one of edge_drop, node_drop, random_walk"):
        SGL(tiny_data.train, augmentation="mix")


def test_weighted_propagate_gradients_match_dense():
    r = sp.random(12, 9, density=0.4, random_state=0, format="csr")
    g = SparseGraph(normalized_adjacency(r))
    torch.manual_seed(0)
    w = torch.rand(g.nnz, requires_grad=True)
    x = torch.randn(21, 3, requires_grad=True)
    (g.weighted_propagate(w, x) ** 2).sum().backward()
    dense = torch.zeros(21, 21).index_put((g.row, g.col), w.detach())
    w2, x2 = w.detach().clone().requires_grad_(), x.detach().clone().requires_grad_()
    ((torch.zeros(21, 21).index_put((g.row, g.col), w2) @ x2) ** 2).sum().backward()
    assert torch.allclose(w.grad, w2.grad, atol=1e-5) and torch.allclose(x.grad, x2.grad, atol=1e-5)
    assert torch.allclose(g.row_sum(w.detach()), dense.sum(1))


def test_dccf_adaptive_graph_is_row_stochastic(tiny_data):
    m = DCCF(tiny_data.train, intents=8)
    ones = torch.ones(m.graph.num_nodes, 1)
    out = m._adaptive(torch.randn(m.graph.num_nodes, m.dim), ones)
    deg = np.asarray((tiny_data.train.sum(1))).ravel()
    assert torch.allclose(out[: tiny_data.num_users].squeeze(1)[deg > 0], torch.ones(int((deg > 0).sum())))


def test_autocf_mask_and_schedule(tiny_data):
    torch.manual_seed(0)
    m = AutoCF(tiny_data.train, seed_num=3, mask_depth=1, fix_steps=2)
    _, seeds = m.seed_scores()
    enc, dec = m.mask(seeds)
    rows, cols = dec.row, dec.col
    a = enc.matrices()[0].to_dense()
    assert (a[seeds] == 0).all() and (a[:, seeds] == 0).all()  # every edge touching a seed is masked
    assert enc.nnz < m.graph.nnz
    n = m.graph.num_nodes
    edges = set(zip(rows.tolist(), cols.tolist()))
    assert all((v, v) in edges for v in range(n))  # decoder has self-loops
    kept_r, kept_c = a.nonzero(as_tuple=True)
    assert all((r, c) in edges for r, c in zip(kept_r.tolist(), kept_c.tolist()))
    # the mask is redrawn on steps 0, 2, 4, ... of every epoch (the infomax term marks a redraw)
    users, items = tiny_data.train_pairs()
    batch = PairBatch(users[:8], items[:8], items[8:16])
    m.train()
    redraws = []
    for epoch in range(2):
        m.start_epoch(epoch)
        redraws += ["infomax" in m.loss(batch)[1] for _ in range(3)]
    assert redraws == [True, False, True, True, False, True]


def test_autocf_gumbel_noise_is_finite_and_standard():
    # a uniform draw of exactly 0 once made the infomax loss infinite mid-run (Yelp, seed 2025)
    edge = gumbel_noise(torch.tensor([0.0, 0.5, 1.0 - 2.0 ** -24]))
    assert torch.isfinite(edge).all() and edge[1] == pytest.approx(-math.log(math.log(2.0)))
    g = gumbel_noise(torch.rand(200_000, generator=torch.Generator().manual_seed(0)))
    assert float(g.mean()) == pytest.approx(0.5772, abs=0.01)  # Euler–Mascheroni
    assert float(g.var()) == pytest.approx(math.pi ** 2 / 6, rel=0.02)


def test_autocf_infomax_is_the_mean_log_score(tiny_data):
    torch.manual_seed(0)
    m = AutoCF(tiny_data.train, seed_num=3)
    log_scores, seeds = m.seed_scores()
    assert (log_scores < 0).all() and seeds.numel() == 3
    users, items = tiny_data.train_pairs()
    m.train()
    parts = m.loss(PairBatch(users[:8], items[:8], items[8:16]))[1]
    torch.manual_seed(0)
    assert float(parts["infomax"].detach()) == pytest.approx(-float(m.seed_scores()[0].mean().detach()), rel=1e-5)


def test_edge_dot_matches_gather_and_its_gradient():
    r = sp.random(10, 8, density=0.4, random_state=3, format="csr")
    g = SparseGraph(normalized_adjacency(r))
    x = torch.randn(18, 5, dtype=torch.float64, requires_grad=True)
    y = torch.randn(18, 5, dtype=torch.float64, requires_grad=True)
    g = g.to(torch.float64)
    assert torch.autograd.gradcheck(lambda a, b: g.edge_dot(a, b), (x, y))
    assert torch.allclose(g.edge_dot(x, y), (x[g.row] * y[g.col]).sum(-1))


def test_graph_transformer_layer_matches_dense_attention():
    from semrec.encoder.models.graph.autocf import GraphTransformerLayer

    torch.manual_seed(0)
    r = sp.random(6, 5, density=0.5, random_state=4, format="csr")
    g = SparseGraph(normalized_adjacency(r, self_loops=True))
    layer = GraphTransformerLayer(8, heads=2)
    x = torch.randn(11, 8)
    got = layer(x, g)
    mask = g.to_dense() != 0
    q, k, v = x @ layer.q, x @ layer.k, x @ layer.v
    want = []
    for sl in (slice(0, 4), slice(4, 8)):
        att = torch.exp((q[:, sl] @ k[:, sl].T).clamp(-10, 10)) * mask
        want.append(att / (att.sum(1, keepdim=True) + 1e-8) @ v[:, sl])
    assert torch.allclose(got, torch.cat(want, 1), atol=1e-5)
