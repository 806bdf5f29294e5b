"""Cross-view alignment: losses against RLMRec's formulas, composition, semantics inputs, controls."""
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
import yaml

from helpers import write_dataset
from semrec.encoder.align import (AlignTarget, ContrastiveAlignment, GenerativeAlignment, aligned_model_class,
                                  semantic_tables)
from semrec.encoder.config import ConfigError, resolve_config
from semrec.encoder.dataset import DataError, load_dataset
from semrec.encoder.graph import split_nodes
from semrec.encoder.losses import info_nce
from semrec.encoder.models import GraphOutput, PairBatch
from semrec.encoder.models.base import AlignableBackbone
from semrec.encoder.registry import available_models, get_model_class
from semrec.encoder.train_encoder import main


def rlmrec_infonce(e1, e2, all2, temp):
    """RLMRec's cal_infonce_loss, written out: sum over rows."""
    n1 = e1 / torch.sqrt(1e-8 + e1.square().sum(-1, keepdim=True))
    n2 = e2 / torch.sqrt(1e-8 + e2.square().sum(-1, keepdim=True))
    na = all2 / torch.sqrt(1e-8 + all2.square().sum(-1, keepdim=True))
    return (-(n1 * n2 / temp).sum(-1) + torch.log(torch.exp(n1 @ na.T / temp).sum(-1))).sum()


@pytest.mark.parametrize("user_negatives", ["all", "batch"])
def test_contrastive_loss_matches_rlmrec(user_negatives):
    torch.manual_seed(0)
    us, its = np.random.default_rng(0).standard_normal((12, 10)), np.random.default_rng(1).standard_normal((9, 10))
    al = ContrastiveAlignment(us, its, collab_dim=4, kd_weight=0.5, kd_temperature=0.3, user_negatives=user_negatives)
    out = GraphOutput(torch.randn(12, 4), torch.randn(9, 4), x0=torch.zeros(1))
    batch = PairBatch(torch.tensor([1, 1, 5, 7, 1]), torch.tensor([2, 3, 2, 8, 0]), torch.tensor([4, 4, 6, 1, 2]))
    got = al.loss([AlignTarget("user", out.users, batch.users), AlignTarget("item", out.items, batch.pos),
                   AlignTarget("item", out.items, batch.neg)])["align"]
    pu, pi = al.mlp(al.user_sem), al.mlp(al.item_sem)
    user_cands = pu if user_negatives == "all" else pu[torch.unique(batch.users)]
    want = (rlmrec_infonce(out.users[batch.users], pu[batch.users], user_cands, 0.3)
            + rlmrec_infonce(out.items[batch.pos], pi[batch.pos], pi[batch.pos], 0.3)
            + rlmrec_infonce(out.items[batch.neg], pi[batch.neg], pi[batch.neg], 0.3)) / 5 * 0.5
    assert float(got.detach()) == pytest.approx(float(want.detach()), rel=1e-4)


def test_grouped_negatives_cut_the_in_batch_candidates():
    """``negatives=K``: with a group larger than the batch, users are the exact in-batch loss and
    the positive and negative items one pool; with small groups every row keeps its positive
    and loses candidates, so the loss is lower but not below zero."""
    torch.manual_seed(0)
    us, its = np.random.default_rng(0).standard_normal((40, 10)), np.random.default_rng(1).standard_normal((30, 10))
    out = GraphOutput(torch.randn(40, 4), torch.randn(30, 4), x0=torch.zeros(1))
    gen = torch.Generator().manual_seed(5)
    batch = PairBatch(*(torch.randint(0, n, (64,), generator=gen) for n in (40, 30, 30)))
    targets = [AlignTarget("user", out.users, batch.users), AlignTarget("item", out.items, batch.pos),
               AlignTarget("item", out.items, batch.neg)]

    def loss(negatives):
        torch.manual_seed(0)  # same MLP weights
        al = ContrastiveAlignment(us, its, collab_dim=4, kd_weight=0.5, kd_temperature=0.3,
                                  user_negatives="batch", negatives=negatives)
        return al, float(al.loss(targets)["align"].detach())

    al, whole = loss(1000)
    pu, pi = al.mlp(al.user_sem), al.mlp(al.item_sem)
    items = torch.cat([batch.pos, batch.neg])
    want = (rlmrec_infonce(out.users[batch.users], pu[batch.users], pu[torch.unique(batch.users)], 0.3)
            + rlmrec_infonce(out.items[items], pi[items], pi[items], 0.3)) / 64 * 0.5
    assert whole == pytest.approx(float(want.detach()), rel=1e-5)
    small = loss(3)[1]
    assert 0 < small < whole
    with pytest.raises(ValueError, match="set user_negatives=batch"):
        ContrastiveAlignment(us, its, collab_dim=4, negatives=3)
    with pytest.raises(ValueError, match="negatives must be 0"):
        GenerativeAlignment(us, its, collab_dim=4, input_dim=4, negatives=-1)


def test_max_rows_samples_rows_without_changing_the_expected_loss():
    """``max_rows=M``: a step aligns M of the batch's distinct users (gradients reach exactly M
    rows), weighted up so that over many steps the mean loss is that of ``negatives`` alone
    (exactly so when the row counts are whole groups, as here)."""
    us, its = np.random.default_rng(0).standard_normal((40, 10)), np.random.default_rng(1).standard_normal((30, 10))
    # 32 distinct users, 28 distinct items (some repeated): whole groups of 4 with or without sampling
    batch = PairBatch(torch.arange(64) % 32, torch.arange(64) % 24, 4 + torch.arange(64) % 24)
    users, items = torch.randn(40, 4, requires_grad=True), torch.randn(30, 4)
    targets = [AlignTarget("user", users, batch.users), AlignTarget("item", items, batch.pos),
               AlignTarget("item", items, batch.neg)]
    torch.manual_seed(0)
    every = ContrastiveAlignment(us, its, collab_dim=4, user_negatives="batch", negatives=3)
    sampled = ContrastiveAlignment(us, its, collab_dim=4, user_negatives="batch", negatives=3, max_rows=8)
    sampled.load_state_dict(every.state_dict())
    sampled.loss(targets)["align"].backward()
    assert int((users.grad.abs().sum(1) > 0).sum()) == 8 < len(torch.unique(batch.users))
    with torch.no_grad():
        torch.manual_seed(1)
        means = [np.mean([float(al.loss(targets)["align"]) for _ in range(3000)]) for al in (every, sampled)]
        sd = np.std([float(sampled.loss(targets)["align"]) for _ in range(300)]) / np.sqrt(3000)
    assert abs(means[1] - means[0]) < 4 * sd, (means, sd)
    # a sample as large as the batch is every row
    sampled.max_rows = 1000
    torch.manual_seed(2)
    whole = float(every.loss(targets)["align"].detach())
    torch.manual_seed(2)
    assert float(sampled.loss(targets)["align"].detach()) == pytest.approx(whole, rel=1e-6)
    with pytest.raises(ValueError, match="set negatives as well"):
        ContrastiveAlignment(us, its, collab_dim=4, user_negatives="batch", max_rows=8)
    with pytest.raises(ValueError, match="larger than negatives"):
        ContrastiveAlignment(us, its, collab_dim=4, user_negatives="batch", negatives=7, max_rows=7)


def test_generative_grouped_negatives():
    """``negatives=K`` for ``_gene``: the masked nodes (already in random order) in consecutive
    groups of at most K + 1, each an InfoNCE of its own; a group holding them all is the exact loss."""
    torch.manual_seed(0)
    us, its = np.random.default_rng(0).standard_normal((30, 6)), np.random.default_rng(1).standard_normal((20, 6))
    nodes, seeds = torch.randn(50, 4), torch.randperm(50)[:10]
    exact = GenerativeAlignment(us, its, collab_dim=4, input_dim=4, recon_weight=2.0, re_temperature=0.5)
    grouped = GenerativeAlignment(us, its, collab_dim=4, input_dim=4, recon_weight=2.0, re_temperature=0.5, negatives=4)
    grouped.load_state_dict(exact.state_dict())
    x, y = exact.mlp(nodes[seeds]), exact.sem[seeds]
    want = sum(info_nce(x[lo:hi], y[lo:hi], y[lo:hi], 0.5).sum() for lo, hi in [(0, 5), (5, 10)]) / 10 * 2.0
    assert float(grouped.loss(nodes[seeds], seeds)["recon"].detach()) == pytest.approx(float(want.detach()), rel=1e-5)
    grouped.negatives = 9
    assert float(grouped.loss(nodes[seeds], seeds)["recon"].detach()) == pytest.approx(
        float(exact.loss(nodes[seeds], seeds)["recon"].detach()), rel=1e-5)


def test_per_row_targets_equal_table_targets():
    """A sequence encoder gives one row per occurrence; where those rows are the table's rows
    the loss and its gradients are those of the table reading (which computes repeats once)."""
    torch.manual_seed(0)
    al = ContrastiveAlignment(np.random.default_rng(0).standard_normal((12, 10)),
                              np.random.default_rng(1).standard_normal((9, 10)), collab_dim=4)
    users, items = torch.randn(12, 4, requires_grad=True), torch.randn(9, 4, requires_grad=True)
    u, i = torch.tensor([1, 1, 5, 7, 1]), torch.tensor([2, 3, 2, 8, 0])
    table = al.loss([AlignTarget("user", users, u), AlignTarget("item", items, i)])["align"]
    g_table = torch.autograd.grad(table, [users, items])
    rows = al.loss([AlignTarget("user", users[u], u, per_row=True), AlignTarget("item", items[i], i, per_row=True)])
    g_rows = torch.autograd.grad(rows["align"], [users, items])
    assert float(rows["align"].detach()) == pytest.approx(float(table.detach()), rel=1e-5)
    for a, b in zip(g_rows, g_table):
        assert torch.allclose(a, b, atol=1e-6)
    with pytest.raises(ValueError, match="'user' or 'item'"):
        al.loss([AlignTarget("session", users, u)])


class MeanOfHistory(nn.Module):
    """Not a graph: a user is the mean embedding of the items in their history, trained with
    softmax cross-entropy on the next item. Stands for a sequence encoder: its layer-0 table
    holds items only, each item's output mixes in another item's input (its context, so a
    masked item's output is not the bare mask token), and user states are one row per sequence."""

    batch_kind, registered_name, data_args = "sequence", "mean_of_history", ()
    node_kinds, fresh_inputs = ("item",), False

    def mask_candidates(self, batch):
        return None

    def __init__(self, num_items: int, dim: int = 8):
        super().__init__()
        self.dim = self.out_dim = dim
        self.item_emb = nn.Parameter(torch.randn(num_items, dim) * 0.1)

    def input_embeddings(self):
        return self.item_emb

    def forward_train(self, x0, batch):
        return 0.5 * (x0 + x0.roll(1, 0))

    def states(self, items, history):
        return items[history].mean(1)

    def loss(self, batch, items):
        ce = F.cross_entropy(self.states(items, batch.history) @ items.T, batch.target)
        return ce, {"ce": ce}

    def node_outputs(self, items, ids):
        return items[ids]

    def align_targets(self, items, batch):
        return [AlignTarget("user", self.states(items, batch.history), batch.users, per_row=True),
                AlignTarget("item", items, batch.target)]


@pytest.mark.parametrize("kind, negatives", [("plus", 0), ("gene", 0), ("plus", 2), ("gene", 2)])
def test_alignment_composes_with_a_non_graph_encoder(kind, negatives):
    from collections import namedtuple

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    user_sem, item_sem = rng.standard_normal((6, 5)), rng.standard_normal((15, 5))
    cls = aligned_model_class(MeanOfHistory, kind)
    backbone = MeanOfHistory(15)
    assert isinstance(backbone, AlignableBackbone)  # the contract, and all the alignment needs
    given = {"user_sem": user_sem, "item_sem": item_sem, "collab_dim": 8, "input_dim": 8, "node_kinds": ("item",)}
    settings = {"mask_ratio": 0.4} if kind == "gene" else {"user_negatives": "batch"}  # 6 masked items
    settings["negatives"] = negatives
    alignment = cls.alignment_cls(**{k: given[k] for k in cls.alignment_cls.data_args}, **settings)
    model = cls(backbone, alignment)
    if kind == "gene":  # the masked rows are items, so the targets are the item table alone
        assert torch.equal(alignment.sem, torch.as_tensor(item_sem, dtype=torch.float32))
    Batch = namedtuple("Batch", "users history target")
    batch = Batch(torch.tensor([0, 3, 5]), torch.tensor([[1, 2, 3], [4, 4, 9], [0, 14, 7]]), torch.tensor([4, 1, 2]))
    loss, parts = model.loss(batch)
    loss.backward()
    assert set(parts) == {"ce", "align" if kind == "plus" else "recon"} and torch.isfinite(loss)
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in alignment.mlp.parameters())
    assert backbone.item_emb.grad.abs().sum() > 0
    if kind == "gene":  # told the rows are users and items, it refuses a table of items only
        wrong = GenerativeAlignment(user_sem, item_sem, collab_dim=8, input_dim=8, node_kinds=("user", "item"))
        with pytest.raises(ValueError, match="15 rows, the semantic tables of its node kinds 21"):
            wrong.prepare(backbone.input_embeddings())


def test_generative_masks_and_reconstructs():
    torch.manual_seed(0)
    us, its = np.random.default_rng(0).standard_normal((30, 6)), np.random.default_rng(1).standard_normal((20, 6))
    al = GenerativeAlignment(us, its, collab_dim=4, input_dim=4, mask_ratio=0.1, recon_weight=2.0, re_temperature=0.5)
    with torch.no_grad():
        al.mask_token.fill_(7.0)
    x0 = torch.randn(50, 4)
    masked, seeds = al.prepare(x0)
    assert seeds.numel() == 5 and len(set(seeds.tolist())) == 5
    assert (masked[seeds] == 7.0).all()
    rest = torch.ones(50, dtype=torch.bool); rest[seeds] = False
    assert torch.equal(masked[rest], x0[rest])
    out = GraphOutput(torch.randn(30, 4), torch.randn(20, 4), x0=masked)
    got = al.loss(torch.cat([out.users, out.items])[seeds], seeds)["recon"]
    x = F.normalize(al.mlp(torch.cat([out.users, out.items])[seeds]))
    y = F.normalize(al.sem[seeds])
    want = -torch.log(torch.exp((x * y).sum(1) / 0.5) / torch.exp(x @ y.T / 0.5).sum(1)).mean() * 2.0
    assert float(got.detach()) == pytest.approx(float(want.detach()), rel=1e-5)


def test_generative_masking_leaves_the_embeddings_alone():
    """A fresh layer-0 table (a graph's cat of users and items) is masked in place, a parameter
    passed as the table out of place: either way the parameter keeps its values, the masked
    rows get no gradient through the table and the mask token gets theirs."""
    torch.manual_seed(0)
    us, its = np.random.default_rng(0).standard_normal((30, 6)), np.random.default_rng(1).standard_normal((20, 6))
    al = GenerativeAlignment(us, its, collab_dim=4, input_dim=4, mask_ratio=0.2)
    emb = nn.Parameter(torch.randn(50, 4))
    before, w = emb.detach().clone(), torch.randn(50, 4)
    for table, fresh in ((lambda: torch.cat([emb[:30], emb[30:]]), True), (lambda: emb, False)):
        emb.grad = al.mask_token.grad = None
        masked, seeds = al.prepare(table(), in_place=fresh)
        assert torch.equal(emb.detach(), before) and torch.equal(masked[seeds], al.mask_token.expand(10, -1))
        (masked * w).sum().backward()
        rest = torch.ones(50, dtype=torch.bool)
        rest[seeds] = False
        assert torch.equal(emb.grad[rest], w[rest]) and not emb.grad[seeds].any()
        assert torch.allclose(al.mask_token.grad[0], w[seeds].sum(0))


@pytest.mark.parametrize("parts", ["tensors", "split_nodes"])
def test_graph_node_outputs_pick_users_and_items_in_order(tiny_data, parts):
    model = get_model_class("lightgcn").from_data(tiny_data)
    u, i = model.num_users, model.num_items
    nodes = torch.randn(u + i, 4, requires_grad=True)
    if parts == "split_nodes":  # what a backbone's forward gives: rows pass back sparse gradients
        out = GraphOutput(*split_nodes(nodes, u), x0=torch.zeros(1))
    else:
        out = GraphOutput(*(t.detach().requires_grad_() for t in nodes.split([u, i])), x0=torch.zeros(1))
    ids = torch.tensor([u + 3, 0, u, 5, u + 3, u - 1])
    rows = model.node_outputs(out, ids)
    assert torch.equal(rows, nodes[ids])
    weights = torch.arange(1.0, 7.0)[:, None]  # row k's gradient is k + 1: a mixed-up order shows
    (rows * weights).sum().backward()
    want = torch.zeros(u + i).index_add_(0, ids, weights[:, 0])[:, None].expand(u + i, 4)
    got = nodes.grad if parts == "split_nodes" else torch.cat([out.users.grad, out.items.grad])
    assert torch.equal(got, want)


def test_every_backbone_has_both_alignments():
    names = available_models()
    for backbone in ["gccf", "lightgcn", "sgl", "simgcl", "dccf", "autocf"]:
        assert {f"{backbone}_plus", f"{backbone}_gene"} <= set(names)
    cls = get_model_class("sgl_plus")
    assert cls.backbone_cls is get_model_class("sgl") and cls.alignment_cls is ContrastiveAlignment
    assert get_model_class("sgl_plus") is cls  # one class per name


def test_aligned_config_layers_backbone_then_own_file():
    cfg = resolve_config("lightgcn_plus", "yelp", get_model_class("lightgcn_plus"))
    assert cfg.model["reg_weight"] == 1e-7 and cfg.model["keep_rate"] == 0.8  # own file, then lightgcn.yaml
    assert cfg.align == {"kd_weight": 1e-2, "kd_temperature": 0.2, "user_negatives": "all", "negatives": 0,
                         "max_rows": 0, "shuffle": False, "sem_dim": 0}
    cfg = resolve_config("gccf_gene", "yelp", get_model_class("gccf_gene"), ["align.mask_ratio=0.3"])
    assert cfg.model["layers"] == 2 and cfg.align["mask_ratio"] == 0.3
    valid = "valid keys: kd_weight, kd_temperature, user_negatives, negatives, max_rows, shuffle, sem_dim"
    with pytest.raises(ConfigError, match=valid):
        resolve_config("lightgcn_plus", "yelp", get_model_class("lightgcn_plus"), ["align.mask_ratio=0.3"])
    with pytest.raises(ConfigError, match="lightgcn has no alignment"):
        resolve_config("lightgcn", "yelp", get_model_class("lightgcn"), ["align.shuffle=true"])


def test_missing_or_mismatched_semantics(tmp_path, capsys):
    bare = write_dataset(tmp_path / "bare")
    code = main(["--model", "lightgcn_plus", "--dataset", "bare", "--data-dir", str(bare), "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2 and "missing usr_emb_np.pkl, itm_emb_np.pkl" in err and "generate_emb.py --dataset bare" in err
    wide = write_dataset(tmp_path / "wide", user_emb=np.ones((30, 8)), item_emb=np.ones((40, 9)))
    with pytest.raises(DataError, match="differ in width \\(8 vs 9\\)"):
        semantic_tables(load_dataset(wide), shuffle=False)


def test_shuffle_control_permutes_owners(tiny_data):
    plain_u, plain_i = semantic_tables(tiny_data, shuffle=False)
    mixed_u, mixed_i = semantic_tables(tiny_data, shuffle=True)
    assert not np.array_equal(plain_u, mixed_u)
    assert sorted(map(tuple, plain_u)) == sorted(map(tuple, mixed_u))  # same vectors, other owners


def test_vanishing_components_are_zeros_in_the_semantic_tables(tmp_path):
    """A bfloat16 encoder writes components of about 1e-37; their products with the InfoNCE's
    gradients are subnormal floats (a `_gene` step 6x slower on a CPU). The alignment reads them as
    zeros, every other value as written; the data itself (and so its fingerprint) is unchanged."""
    rng = np.random.default_rng(0)
    its = rng.standard_normal((40, 8)).astype(np.float32)
    its[:, 3] = 8.3e-38 * np.sign(its[:, 3])
    its[5, 0] = 1e-9  # small but a real value
    data = load_dataset(write_dataset(tmp_path / "d", user_emb=rng.standard_normal((30, 8)), item_emb=its))
    before = data.fingerprint()
    users, items = semantic_tables(data)
    assert np.all(items[:, 3] == 0) and np.array_equal(users, data.user_emb)
    kept = np.delete(np.arange(8), 3)
    assert np.array_equal(items[:, kept], its[:, kept]) and items[5, 0] == np.float32(1e-9)
    assert data.item_emb[0, 3] != 0 and data.fingerprint() == before
    prods = np.abs(np.float32(1e-2) * items)  # a small gradient against the table: no subnormal product
    assert not np.any((prods > 0) & (prods < np.finfo(np.float32).tiny))


def test_sem_dim_reduces_both_tables_with_one_pca(tmp_path):
    rng = np.random.default_rng(0)
    # users and items share a 3-d subspace of a 50-d space, plus a little noise
    basis = rng.standard_normal((3, 50))
    us = rng.standard_normal((30, 3)) @ basis + 0.01 * rng.standard_normal((30, 50))
    its = rng.standard_normal((40, 3)) @ basis + 0.01 * rng.standard_normal((40, 50))
    data = load_dataset(write_dataset(tmp_path / "d", user_emb=us, item_emb=its))
    ru, ri = semantic_tables(data, sem_dim=3)
    assert ru.shape == (30, 3) and ri.shape == (40, 3)
    # the reduction keeps the geometry: pairwise distances across users and items are preserved
    full = np.concatenate([us, its])
    small = np.concatenate([ru, ri])
    d_full = np.linalg.norm(full[:, None] - full[None], axis=-1)
    d_small = np.linalg.norm(small[:, None] - small[None], axis=-1)
    assert np.abs(d_full - d_small).max() < 0.1 * d_full.max()
    model = get_model_class("lightgcn_plus").from_data(data, align={"sem_dim": 3})
    assert model.alignment.mlp[0].in_features == 3
    with pytest.raises(ValueError, match="align.sem_dim must be in 1..50"):
        semantic_tables(data, sem_dim=51)


@pytest.mark.parametrize("name, sem_dim, extra", [
    ("lightgcn_plus", 0, []), ("gccf_gene", 0, []), ("lightgcn_plus", 16, []),
    ("lightgcn_plus", 16, ["align.user_negatives=batch", "align.negatives=7", "align.max_rows=12"]),
    ("lightgcn_gene", 16, ["align.negatives=7"])])
def test_aligned_cli_run_with_any_semantic_width(name, sem_dim, extra, tmp_path):
    rng = np.random.default_rng(0)
    folder = write_dataset(tmp_path / "d", user_emb=rng.standard_normal((30, 1536)), item_emb=rng.standard_normal((40, 1536)))
    out = tmp_path / "run"
    sets = [x for kv in extra for x in ("--set", kv)]
    assert main(["--model", name, "--dataset", "d", "--data-dir", str(folder), "--out", str(out),
                 "--set", "train.epochs=1", "--set", "align.shuffle=true", "--set", f"align.sem_dim={sem_dim}",
                 *sets, "--quiet"]) == 0
    resolved = yaml.safe_load((out / "config.yaml").read_text())["config"]["align"]
    assert resolved["sem_dim"] == sem_dim and resolved["negatives"] == (7 if extra else 0)
    assert resolved.get("max_rows", 0) == (12 if "align.max_rows=12" in extra else 0)
    hist = [json.loads(x) for x in (out / "history.jsonl").read_text().splitlines()]
    assert ("align" if name.endswith("plus") else "recon") in hist[0]


def test_alignment_helps_on_the_demo_and_the_shuffled_control_does_not(tmp_path):
    """The demo's semantic embeddings carry real signal: aligning with them beats the base model,
    aligning with shuffled ones does not."""
    from semrec.common.demo import make_demo

    data = make_demo(tmp_path / "demo")
    recall = {}
    for tag, model, extra in [("base", "lightgcn", []), ("plus", "lightgcn_plus", []),
                              ("shuffled", "lightgcn_plus", ["--set", "align.shuffle=true"])]:
        out = tmp_path / tag
        assert main(["--model", model, "--dataset", "demo", "--data-dir", str(data), "--out", str(out),
                     "--quiet", *extra]) == 0
        recall[tag] = json.loads((out / "results.json").read_text())["test"]["recall@20"]
    assert recall["plus"] > recall["base"] > recall["shuffled"]


def test_semantic_tables_move_with_the_model_but_stay_out_of_checkpoints(tiny_data):
    model = get_model_class("lightgcn_gene").from_data(tiny_data)
    assert not any("sem" in k for k in model.state_dict())
    model = model.to(torch.float64)
    assert model.alignment.sem.dtype == torch.float64
