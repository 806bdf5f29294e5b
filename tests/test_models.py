"""Every registered model: finite loss, gradients everywhere, scorer shape; LightGCN vs a dense reference."""
import numpy as np
import pytest
import torch

from semrec.encoder.config import resolve_config
from semrec.encoder.batches import EvalBatch
from semrec.encoder.sampling import make_sampler
from semrec.encoder.models import GCCF, LightGCN, PairBatch
from semrec.encoder.registry import available_models, build_model, get_model_class, register


# AutoCF's default 100 seeds would mask every edge of a 70-node graph; gSASRec's 256 negatives
# per position exceed the 40 items
TINY_SETTINGS = {"autocf": ["model.seed_num=5"], "gsasrec": ["model.negatives=8"],
                 "llmesr": ["model.dim=16"],  # its ID view starts from the PCA of 16-wide item embeddings
                 "sear": ["model.dim=8", "model.heads=2"]}  # its output rows: the PCA of the text, 2 x dim wide


def batch_for(data, n=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    users, items = data.train_pairs()
    idx = torch.randperm(users.numel(), generator=g)[:n]
    return PairBatch(users[idx], items[idx], data.sample_negatives(users[idx], g))


@pytest.mark.parametrize("name", available_models())
def test_every_model_trains(name, tiny_data):
    torch.manual_seed(0)
    cls = get_model_class(name)
    cfg = resolve_config(name, "tiny", cls, TINY_SETTINGS.get(name.split("_")[0], []))
    model = build_model(name, tiny_data, cfg.model, cfg.align)
    model.train()
    if getattr(model, "closed_form", False):  # the baselines solved once (their formulas: test_baselines.py)
        model.fit(lambda: {"recall@20": 0.0}, "recall@20")
    else:
        batch = batch_for(tiny_data) if model.batch_kind == "pairwise" else \
            next(iter(make_sampler(model, tiny_data, 16, torch.Generator().manual_seed(0))))
        loss, parts = model.loss(batch)
        assert torch.isfinite(loss) and len(parts) >= 1
        assert float(loss.detach()) == pytest.approx(float(sum(parts.values()).detach()), rel=1e-5)
        loss.backward()
        for pname, p in model.named_parameters():
            assert p.grad is not None and p.grad.abs().sum() > 0, f"no gradient reaches {pname}"
    model.eval()
    users = np.array([0, 3, 5])
    history = torch.from_numpy(tiny_data.sequences.histories(users, "test", model.history_len, tiny_data.num_items)) \
        if model.history_len else None
    scores = model.scorer()(EvalBatch(torch.from_numpy(users), history))
    assert scores.shape == (3, tiny_data.num_items) and torch.isfinite(scores).all()


def test_lightgcn_matches_dense_propagation(tiny_data):
    torch.manual_seed(0)
    m = LightGCN(tiny_data.train, dim=8, layers=2, keep_rate=1.0, layer_agg="mean").eval()
    adj = m.graph.to_dense()
    x0 = m.input_embeddings().detach()
    ref = (x0 + adj @ x0 + adj @ adj @ x0) / 3
    users, items = m.encode()
    np.testing.assert_allclose(torch.cat([users, items]).detach().numpy(), ref.numpy(), atol=1e-6)


def test_gccf_concatenates_layers_over_self_loops(tiny_data):
    m = GCCF(tiny_data.train, dim=4, layers=2).eval()
    users, items = m.encode()
    assert users.shape == (tiny_data.num_users, 12)
    adj = m.graph.to_dense()
    assert torch.allclose(torch.diagonal(adj)[:3], 1.0 / (torch.from_numpy(
        np.asarray(tiny_data.train.sum(1)).ravel()[:3]).float() + 1))


def test_edge_dropout_only_in_training(tiny_data):
    torch.manual_seed(0)
    m = LightGCN(tiny_data.train, keep_rate=0.5)
    m.eval()
    a, b = m.encode()[0], m.encode()[0]
    assert torch.equal(a, b)
    m.train()
    assert not torch.equal(m.encode()[0], m.encode()[0])


def test_models_move_with_to(tiny_data):
    m = LightGCN(tiny_data.train).to(torch.float64)
    assert m.graph.val.dtype == torch.float64 and m.user_emb.dtype == torch.float64
    m.eval()
    assert m.scorer()(EvalBatch(torch.tensor([0]))).dtype == torch.float64


def test_user_registered_model_and_duplicate_names():
    @register("tiny_lightgcn_variant")
    class Variant(LightGCN):
        pass

    assert get_model_class("tiny_lightgcn_variant") is Variant
    assert "tiny_lightgcn_variant" in available_models()
    with pytest.raises(ValueError, match="already registered"):
        register("lightgcn")(Variant)
    with pytest.raises(KeyError, match="valid models: .*gccf.*lightgcn.*lightgcn_plus"):
        get_model_class("lightgnc")
