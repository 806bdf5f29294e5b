"""LLM-ESR: neighbour retrieval, the two views, causal cross-attention, self-distillation, ablations."""
import json
import pickle

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from helpers import random_sequences, write_sequences
from semrec.common.linalg import pca, top_k_cosine
from semrec.encoder.models import LLMESR

N_ITEMS, N_USERS = 40, 30


def _text(rows, width=24, seed=1):
    return np.random.default_rng(seed).standard_normal((rows, width)).astype(np.float32)


def _histories(seqs, max_len=6):
    from semrec.encoder.sequences import SequenceData

    return SequenceData.from_lists(seqs, N_ITEMS).histories(np.arange(len(seqs)), "train", max_len, pad=N_ITEMS)


def _model(**kw):
    torch.manual_seed(0)
    seqs = random_sequences(num_users=N_USERS, num_items=N_ITEMS)
    args = dict(dim=8, max_len=6, heads=2, dropout=0.0, neighbors=3, text_emb=_text(N_ITEMS),
                user_emb=_text(N_USERS, seed=2), histories=_histories(seqs))
    return LLMESR(N_ITEMS, **{**args, **kw}).eval()


@pytest.fixture
def folder(tmp_path):
    f = tmp_path / "seq"
    write_sequences(f, random_sequences(num_users=N_USERS, num_items=N_ITEMS), N_ITEMS)
    for name, arr in (("itm_emb_np.pkl", _text(N_ITEMS)), ("usr_emb_np.pkl", _text(N_USERS, seed=2))):
        with open(f / name, "wb") as fh:
            pickle.dump(arr, fh)
    return f


def test_similar_users_are_the_hand_computed_top_k_and_never_the_user():
    x = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [-1.0, 0.0], [0.7, 0.7]])
    # cosine with row 0: 1, 0.994, 0, -1, 0.707; row 2: 0, 0.110, 1, 0, 0.707
    got = top_k_cosine(x, 2, chunk=2)  # blocks smaller than the table: self excluded in every block
    assert got[0].tolist() == [1, 4] and got[2].tolist() == [4, 1] and got[3].tolist() == [2, 4]
    assert all(u not in row for u, row in enumerate(top_k_cosine(x, 4)))
    with pytest.raises(ValueError, match="k must lie in 1..4"):
        top_k_cosine(x, 5)


def test_the_collaborative_view_starts_from_the_pca_of_the_llm_embeddings():
    m = _model(init_std=0.05)
    text = _text(N_ITEMS)
    expected = pca(text, 8)
    assert np.allclose(m.items.item_emb.weight[:N_ITEMS].detach().numpy(), expected * (0.05 / expected.std()), atol=1e-6)


def test_the_semantic_view_is_frozen_and_items_have_both_views():
    m = _model().train()
    assert "sem_text" not in m.state_dict() and not any(p is m.sem.text for p in m.parameters())
    assert m.item_table().shape == (N_ITEMS, 16)
    before = m.sem.text.clone()
    opt = torch.optim.Adam(m.parameters(), lr=0.1)
    items = torch.tensor([[N_ITEMS, 3, 7, 1], [5, 2, 9, 4]])
    loss = m.encode(items).sum() + m.item_table().sum()
    loss.backward()
    opt.step()
    assert torch.equal(m.sem.text, before) and m.sem.adapter.inner.weight.grad.abs().sum() > 0


def test_the_linear_adapter_is_its_two_layers_one_after_the_other():
    """The product form gives the same vectors and the same gradients as the reference code's
    two linear layers applied in turn."""
    from semrec.encoder.models.sequential.item_table import LinearAdapter

    torch.manual_seed(0)
    adapter = LinearAdapter(24, 12, 8)
    with torch.no_grad():
        adapter.inner.bias.normal_()
        adapter.outer.bias.normal_()
    x, g = torch.randn(40, 24), torch.randn(40, 8)
    (adapter(x) * g).sum().backward()
    product = [p.grad.clone() for p in adapter.parameters()]
    adapter.zero_grad()
    in_turn = adapter.outer(adapter.inner(x))
    (in_turn * g).sum().backward()
    assert torch.allclose(adapter(x), in_turn, atol=1e-5)
    assert all(torch.allclose(a, p.grad, atol=1e-4) for a, p in zip(product, adapter.parameters()))
    assert adapter.inner.out_features == 12 and _model().sem.adapter.inner.out_features == 12  # s/2 of 24-wide text
    mlp = _model(adapter="mlp").sem.adapter
    assert isinstance(mlp[1], torch.nn.GELU) and mlp[0].out_features == (24 + 8) // 2


def test_the_views_reach_the_encoder_at_the_scale_of_their_items():
    """The adapter and the cross-attention start Xavier-normal: a semantic item keeps the size of
    its text vector's projection, and the cross-attention output is of the size of its inputs
    (N(0, 0.02) there shrank them ~40-fold, below the position embeddings)."""
    m = _model()
    items = torch.tensor([[3, 7, 1, 9, 4, 2]])
    x_id, x_sem = (torch.nn.functional.embedding(items, t) for t in m.view_tables())
    valid = items != m.pad
    crossed = m._cross(x_id, x_sem, valid, m.cross["to_sem"])
    assert 0.2 < crossed.std() / x_sem.std() < 5
    assert x_sem.std() > 0.1  # text vectors of norm ~5 (24 N(0, 1) entries) through gain-1 layers


def test_residual_cross_attention_adds_to_the_items_and_replace_drops_them():
    """``residual`` with a silent cross-attention (zero output projection) is the model without
    cross-attention; ``replace`` then has nothing left of the items (every state is the same)."""
    items = torch.tensor([[3, 7, 1, 9, 4, 8], [5, 2, 9, 4, 11, 12]])
    plain = _model(cross_attention="none")
    for mode in ("residual", "replace"):
        m = _model(cross_attention=mode)
        m.load_state_dict(plain.state_dict(), strict=False)  # same tables, encoder and heads
        with torch.no_grad():
            for attn in m.cross.values():
                attn.out_proj.weight.zero_()
                attn.out_proj.bias.zero_()
        got = m.encode(items)
        if mode == "residual":
            assert torch.allclose(got, plain.encode(items), atol=1e-6)
        else:  # the encoder reads positions only: the same states for both users
            assert torch.allclose(got[0], got[1], atol=1e-5)


@pytest.mark.parametrize("encoder", ["sasrec", "gru4rec"])
def test_cross_attention_never_sees_later_items(encoder):
    """The reference code's cross-attention lets a position see later items of the other view
    (its own target among them); here a causal encoder's states do not change when later items do."""
    m = _model(encoder=encoder, init_std=0.5)  # a wide start: later items visibly move later states
    items = torch.tensor([[N_ITEMS, 3, 7, 1, 9, 4]])
    changed = items.clone()
    changed[0, 4:] = torch.tensor([11, 12])
    a, b = m.encode(items), m.encode(changed)
    assert torch.allclose(a[0, :4], b[0, :4], atol=1e-6)
    assert not torch.allclose(a[0, 4:], b[0, 4:], atol=1e-4)


def test_padding_changes_nothing():
    m = _model()
    short = torch.tensor([[3, 7, 1], [N_ITEMS, 5, 2]])
    long = torch.cat([torch.full((2, 3), N_ITEMS), short], dim=1)
    real = short != N_ITEMS
    assert torch.allclose(m.encode(short)[real], m.encode(long)[:, 3:][real], atol=1e-5)


@pytest.mark.parametrize("kw", [{}, {"user_heads": True, "tail_len": 3}, {"encoder": "bert4rec"},
                                {"cross_attention": "replace", "share_encoder": False}])
def test_length_groups_give_the_states_of_one_call(kw):
    """128 histories of mixed lengths, the views' cross-attention and encoder run on groups of
    similar length (each cut to its longest): the states of one call over the whole batch."""
    grouped, whole = _model(max_len=30, **kw), _model(max_len=30, length_groups=1, **kw)
    whole.load_state_dict(grouped.state_dict())
    gen = torch.Generator().manual_seed(3)
    lengths = torch.cat([torch.randint(1, 5, (96,), generator=gen), torch.randint(5, 31, (32,), generator=gen)])
    items = torch.randint(0, N_ITEMS, (128, 30), generator=gen)
    items[torch.arange(30)[None, :] < 30 - lengths[:, None]] = N_ITEMS
    real = items != N_ITEMS
    with torch.no_grad():
        a, b = grouped.encode(items), whole.encode(items)
    assert torch.allclose(a[real], b[real], atol=1e-5) and (a[~real] == 0).all()


@pytest.mark.parametrize("teacher", ["epoch", "step"])
def test_distillation_gradients_do_not_flow_into_the_teacher(teacher):
    """The teacher is a constant: the distillation gradient equals the one against a detached
    copy of it (were it not detached, the teachers' encodings would add gradient)."""
    m = _model(teacher=teacher).train()
    m.start_epoch(0)
    users = torch.tensor([0, 4, 7])
    inputs = torch.from_numpy(_histories(random_sequences(num_users=N_USERS, num_items=N_ITEMS)))[users]

    def grads(teacher_fn):
        m.zero_grad()
        F.mse_loss(m.encode(inputs)[:, -1], teacher_fn(users)).backward()
        return [p.grad.clone() if p.grad is not None else torch.zeros_like(p) for p in m.parameters()]

    g_model = grads(m.teacher_of)
    g_const = grads(lambda u: m.teacher_of(u).detach().clone())
    assert all(torch.allclose(a, b, atol=1e-7) for a, b in zip(g_model, g_const))
    assert not m.teacher_of(users).requires_grad


def test_the_teacher_is_the_mean_of_the_similar_users_representations():
    m = _model(teacher="step")
    users = torch.tensor([2, 5])
    near = m.similar[users]
    assert not (near == users[:, None]).any()
    with torch.no_grad():
        reps = m.encode(m.histories)[:, -1]
    assert torch.allclose(m.teacher_of(users), reps[near].mean(1), atol=1e-6)
    epoch = _model(teacher="epoch")
    epoch.start_epoch(0)
    assert torch.allclose(epoch.teacher_of(users), reps[near].mean(1), atol=1e-6)  # same weights, eval mode


@pytest.mark.parametrize("settings", [
    ["model.encoder=sasrec"],
    ["model.encoder=gru4rec", "model.teacher=step"],
    ["model.encoder=bert4rec"],
    ["model.views=collaborative", "model.distill_weight=0"],
    ["model.views=semantic", "model.text_shuffle=true"],
    ["model.cross_attention=none", "model.share_encoder=false", "model.id_init=random"],
    ["model.cross_attention=replace"],
    ["model.text_shuffle=true", "model.loss=bce", "model.negatives=1"],
    ["model.user_heads=true", "model.tail_len=5", "model.distill_head_users=false"],
])
def test_llmesr_and_its_ablations_train_from_the_cli(folder, tmp_path, settings):
    from semrec.encoder.train_encoder import main

    out = tmp_path / "run"
    extra = [x for s in settings for x in ("--set", s)]
    assert main(["--model", "llmesr", "--dataset", "seq", "--data-dir", str(folder), "--out", str(out), "--device", "cpu",
                 "--quiet", "--set", "train.epochs=1", "--set", "model.dim=16", "--set", "model.max_len=8", *extra]) == 0
    res = json.loads((out / "results.json").read_text())
    assert 0 <= res["test"]["ndcg@10"] <= 1
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert ("distill" in history[0]) == ("model.distill_weight=0" not in settings)


def test_missing_user_embeddings_are_a_clear_error(folder, tmp_path, capsys):
    from semrec.encoder.train_encoder import main

    (folder / "usr_emb_np.pkl").unlink()
    args = ["--model", "llmesr", "--dataset", "seq", "--data-dir", str(folder), "--device", "cpu", "--quiet",
            "--set", "train.epochs=1", "--set", "model.dim=16"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 2
    assert "needs LLM user embeddings (usr_emb_np.pkl" in capsys.readouterr().err
    assert main([*args, "--out", str(tmp_path / "b"), "--set", "model.distill_weight=0"]) == 0


def test_head_and_tail_users_are_routed_to_their_heads():
    """tail_len 2: a row with at most 2 real items is a tail user. With the tail head set to zero
    and the head head to the identity, a tail row's state is (1 - w) x shared and a head row's
    the shared state itself."""
    plain = _model(distill_weight=0.0)
    m = _model(distill_weight=0.0, user_heads=True, tail_len=2, head_weight=0.25)
    m.load_state_dict(plain.state_dict(), strict=False)
    items = torch.tensor([[N_ITEMS, N_ITEMS, N_ITEMS, N_ITEMS, 3, 7], [N_ITEMS, N_ITEMS, 5, 2, 9, 4]])
    assert m.is_tail(items).tolist() == [True, False]
    assert torch.allclose(m.encode(items), plain.encode(items), atol=1e-6)  # heads start as the identity
    with torch.no_grad():
        m.group_heads["tail"].weight.zero_()
    shared = plain.encode(items)
    out = m.encode(items)
    assert torch.allclose(out[0], 0.75 * shared[0], atol=1e-6) and torch.allclose(out[1], shared[1], atol=1e-6)


def test_separate_head_loss_trains_the_shared_state_and_each_users_head():
    """``head_loss=separate``: the loss is the mean of the shared state's and the group head's
    next-item CE (each row through its own group's head); ranking still reads the fused state.
    ``fused`` trains the fused state alone, a different loss on the same weights."""
    from semrec.encoder.batches import SeqBatch

    sep = _model(distill_weight=0.0, user_heads=True, tail_len=3, head_loss="separate")
    fused = _model(distill_weight=0.0, user_heads=True, tail_len=3, head_loss="fused")
    with torch.no_grad():
        for head in sep.group_heads.values():
            head.weight.add_(0.3 * torch.randn_like(head.weight))
    fused.load_state_dict(sep.state_dict())
    inputs = torch.tensor([[N_ITEMS, N_ITEMS, N_ITEMS, 1, 2, 3], [4, 5, 6, 7, 8, 9]])  # a tail user, a head user
    targets = torch.tensor([[N_ITEMS, N_ITEMS, N_ITEMS, 2, 3, 11], [5, 6, 7, 8, 9, 12]])
    batch = SeqBatch(torch.tensor([0, 1]), inputs, targets, torch.full((2, 6, 0), N_ITEMS))
    with torch.no_grad():
        loss, _ = sep.loss(batch)
        shared = sep.encode(inputs, fuse=False)
        group = torch.stack([sep.group_heads["tail"](shared[0]), sep.group_heads["head"](shared[1])])
        table = sep.item_table()
        scored = targets != N_ITEMS

        def ce(states):
            return F.cross_entropy(states[scored] @ table.T, targets[scored])

        assert float(loss) == pytest.approx(float(ce(shared) + ce(group)) / 2, rel=1e-5)
        mix = 0.5 * shared + 0.5 * group
        assert torch.allclose(sep.encode(inputs)[scored], mix[scored], atol=1e-6)
        assert float(fused.loss(batch)[0]) == pytest.approx(float(ce(mix)), rel=1e-5)
        assert abs(float(fused.loss(batch)[0]) - float(loss)) > 1e-3


def test_separate_head_loss_distils_the_shared_state():
    """The teachers (each user's newest state, encoded at the start of an epoch) are the shared
    states under ``head_loss=separate``, the fused ones under ``fused``."""
    for head_loss, fuse in (("separate", False), ("fused", True)):
        m = _model(user_heads=True, tail_len=3, head_loss=head_loss)
        with torch.no_grad():
            m.group_heads["head"].weight.mul_(2.0)  # fused and shared states differ for head users
        m.start_epoch(0)
        expected = m.encode(m.histories, fuse=fuse)[:, -1]
        assert torch.allclose(m.teachers, expected, atol=1e-5), head_loss
    assert not torch.allclose(m.encode(m.histories, fuse=False)[:, -1], expected, atol=1e-3)


def test_head_users_can_skip_distillation():
    m = _model(user_heads=True, tail_len=3, distill_head_users=False).train()
    m.start_epoch(0)
    from semrec.encoder.batches import SeqBatch

    inputs = torch.tensor([[N_ITEMS, N_ITEMS, N_ITEMS, 1, 2, 3], [4, 5, 6, 7, 8, 9]])  # a tail user, a head user
    targets = torch.roll(inputs, -1, 1)
    neg = torch.full((2, 6, 0), N_ITEMS)
    with torch.no_grad():
        _, both = m.loss(SeqBatch(torch.tensor([0, 1]), inputs, targets, neg))
        _, tail_only = m.loss(SeqBatch(torch.tensor([0]), inputs[:1], targets[:1], neg[:1]))
        _, head_only = m.loss(SeqBatch(torch.tensor([1]), inputs[1:], targets[1:], neg[1:]))
    assert float(head_only["distill"]) == 0.0 and float(tail_only["distill"]) > 0
    assert float(both["distill"]) == pytest.approx(float(tail_only["distill"]) / 2, rel=1e-5)


def test_the_running_teacher_table_takes_each_steps_representations():
    """``teacher=running``: the first table is the users' encoding (as ``epoch``); a step's loss
    reads the neighbours from the table, then writes its own users' representations into it."""
    from semrec.encoder.batches import SeqBatch

    m = _model(teacher="running", dropout=0.0).train()
    m.start_epoch(0)
    first = m.teachers.clone()
    reference = _model(teacher="epoch")
    reference.start_epoch(0)
    assert torch.allclose(first, reference.teachers, atol=1e-6)  # same weights: the same start
    m.start_epoch(1)
    assert torch.equal(m.teachers, first)  # no re-encoding after the first table
    users = torch.tensor([2, 5])
    inputs = torch.tensor([[N_ITEMS, N_ITEMS, 1, 2, 3, 4], [4, 5, 6, 7, 8, 9]])
    targets = torch.roll(inputs, -1, 1)
    expected_teacher = first[m.similar[users]].mean(1)
    loss, parts = m.loss(SeqBatch(users, inputs, targets, torch.full((2, 6, 0), N_ITEMS)))
    state = m.encode(inputs)[:, -1].detach()
    assert float(parts["distill"].detach()) == pytest.approx(
        float(0.1 * (state - expected_teacher).pow(2).mean(1).mean()), rel=1e-5)
    others = torch.ones(N_USERS, dtype=torch.bool)
    others[users] = False
    assert torch.allclose(m.teachers[users], state, atol=1e-6) and torch.equal(m.teachers[others], first[others])
    assert not m.teachers.requires_grad
    loss.backward()  # the write after the read leaves the graph intact
    with torch.autocast("cpu", dtype=torch.bfloat16):  # mixed precision: the table stays float32
        m.loss(SeqBatch(users, inputs, targets, torch.full((2, 6, 0), N_ITEMS)))
    assert m.teachers.dtype == torch.float32
