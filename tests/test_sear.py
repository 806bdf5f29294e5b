"""SEAR: soft labels over the next items, its loss, the streams, and a run that says the rating stream is off."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from semrec.encoder.batches import SeqBatch
from semrec.encoder.models import SEAR

N_ITEMS, PAD = 30, 30


def _model(**kw) -> SEAR:
    torch.manual_seed(0)
    text = np.random.default_rng(0).standard_normal((N_ITEMS, 24)).astype(np.float32)
    return SEAR(N_ITEMS, dim=4, heads=2, state=4, max_len=6, dropout=0.0, text_emb=text, **kw).eval()


def test_the_soft_label_weighs_the_next_items_by_distance():
    """k = 3, λ = 1: a position's next items weigh 1, e^-1, e^-2, normalised over those the
    training sequence still has."""
    m = _model(soft_targets=3, decay=1.0)
    targets = torch.tensor([[PAD, 7, 8, 9]])
    ahead, weights = m.soft_labels(targets)
    assert ahead.tolist() == [[[PAD, 7, 8], [7, 8, 9], [8, 9, PAD], [9, PAD, PAD]]]
    z = 1 + math.exp(-1) + math.exp(-2)
    assert torch.allclose(weights[0, 1], torch.tensor([1 / z, math.exp(-1) / z, math.exp(-2) / z]))
    assert torch.allclose(weights[0, 2], torch.tensor([1 / (1 + math.exp(-1)), math.exp(-1) / (1 + math.exp(-1)), 0]))
    assert torch.allclose(weights[0, 3], torch.tensor([1.0, 0.0, 0.0]))


def test_the_loss_is_the_kl_divergence_to_the_soft_label():
    m = _model(soft_targets=3, decay=2.0)
    inputs = torch.tensor([[PAD, 3, 5, 3], [1, 2, 4, 2]])
    targets = torch.tensor([[PAD, 5, 3, 8], [2, 4, 2, 7]])  # item 2 twice within a label: its weights add
    batch = SeqBatch(torch.tensor([0, 1]), inputs, targets, torch.full((2, 4, 0), PAD))
    loss, parts = m.loss(batch)
    states = m.encode(inputs)
    w = torch.tensor([1.0, math.exp(-2.0), math.exp(-4.0)])
    want = []
    for b in range(2):
        for t in range(4):
            if targets[b, t] == PAD:
                continue
            nxt = [int(i) for i in targets[b, t:t + 3] if i != PAD]
            label = torch.zeros(N_ITEMS)
            for j, item in enumerate(nxt):
                label[item] += (w[j] / w[: len(nxt)].sum())
            log_q = F.log_softmax(states[b, t] @ m.item_table().t(), dim=-1)
            want.append((torch.xlogy(label, label) - label * log_q).sum())
    assert parts["soft"].item() == pytest.approx(torch.stack(want).mean().item(), rel=1e-5)
    assert loss.item() == parts["soft"].item() and loss.item() > 0


def test_the_loss_and_its_gradients_match_the_full_log_softmax():
    """The loss never holds the (positions x items) log-probabilities: its value and gradients
    are those of the plain formula (log-softmax over every item, gathered at the label)."""
    m = _model(soft_targets=3, decay=2.0).train()
    inputs = torch.tensor([[PAD, 3, 5, 3], [1, 2, 4, 2]])
    targets = torch.tensor([[PAD, 5, 3, 8], [2, 4, 2, 7]])
    batch = SeqBatch(torch.tensor([0, 1]), inputs, targets, torch.full((2, 4, 0), PAD))
    m.token_dropout.p = 0.0
    loss, _ = m.loss(batch)
    got = torch.autograd.grad(loss, [m.output, m.items.item_emb.weight])
    states = m.encode(inputs)
    scored = targets != PAD
    ahead, weights = m.soft_labels(targets)
    ahead, weights = ahead[scored], weights[scored]
    ahead = torch.where(ahead == PAD, torch.zeros_like(ahead), ahead)
    label = torch.zeros(len(ahead), N_ITEMS).scatter_add_(1, ahead, weights)
    log_q = F.log_softmax(states[scored] @ m.output.t(), dim=-1)
    plain = (torch.xlogy(label, label) - label * log_q).sum(-1).mean()
    want = torch.autograd.grad(plain, [m.output, m.items.item_emb.weight])
    assert loss.item() == pytest.approx(plain.item(), rel=1e-5)
    for g, w in zip(got, want):
        assert torch.allclose(g, w, atol=1e-6, rtol=1e-4)


def test_ce_is_the_next_item_alone():
    m = _model(loss="ce")
    inputs = torch.tensor([[PAD, 3, 5, 3]])
    targets = torch.tensor([[PAD, 5, 3, 8]])
    loss, _ = m.loss(SeqBatch(torch.tensor([0]), inputs, targets, torch.full((1, 4, 0), PAD)))
    logits = m.encode(inputs)[0, 1:] @ m.item_table().t()
    assert loss.item() == pytest.approx(F.cross_entropy(logits, targets[0, 1:]).item(), rel=1e-5)


def test_the_streams_and_the_output_rows():
    m = _model()
    tokens = m.tokens(torch.tensor([[PAD, 3, 5]]))
    assert tokens.shape == (1, 3, 2, 4)  # semantic and collaborative, no ratings
    states = m.encode(torch.tensor([[PAD, 3, 5]]))
    assert states.shape == (1, 3, 8) and states[0, 0].abs().max() == 0  # padding: zero
    assert m.item_table().shape == (N_ITEMS, 8)  # untied: two streams wide
    scores = m.scorer()(__import__("semrec.encoder.batches", fromlist=["EvalBatch"]).EvalBatch(
        torch.tensor([0]), torch.tensor([[PAD, 3, 5]])))
    assert scores.shape == (1, N_ITEMS) and torch.isfinite(scores).all()
    with pytest.raises(ValueError, match="dim must be at most 12"):
        SEAR(N_ITEMS, dim=16, heads=2, text_emb=np.ones((N_ITEMS, 24), dtype=np.float32))


def test_a_run_says_the_rating_stream_is_off(tiny_dir, tmp_path, capsys):
    from semrec.encoder.train_encoder import main

    out = tmp_path / "run"
    assert main(["--model", "sear", "--dataset", "tiny", "--data-dir", str(tiny_dir), "--out", str(out), "--device",
                 "cpu", "--set", "model.dim=8", "--set", "model.heads=2", "--set", "train.epochs=1"]) == 0
    assert "the rating stream is off" in capsys.readouterr().err + (out / "log.txt").read_text()


def test_rows_grouped_by_length_give_the_states_of_one_call():
    """The Mamba blocks ignore left padding, so encoding a batch in groups of similar length (each cut
    to its own longest history) gives every real position the state of one call over the batch."""
    grouped, whole = _model(length_groups=8), _model(length_groups=1)
    whole.load_state_dict(grouped.state_dict())
    gen = torch.Generator().manual_seed(3)
    lengths = torch.cat([torch.randint(1, 3, (64,), generator=gen), torch.randint(4, 7, (64,), generator=gen)])
    items = torch.randint(0, N_ITEMS, (128, 6), generator=gen)
    items[torch.arange(6)[None, :] < 6 - lengths[:, None]] = PAD
    a, b = grouped.encode(items), whole.encode(items)
    real = items != PAD
    assert torch.allclose(a[real], b[real], atol=1e-5) and a[~real].abs().max() == 0


@pytest.fixture
def rated_dir(tmp_path):
    """The tiny dataset's sequences with a rating per interaction, and 16-wide item text."""
    import json

    from helpers import random_sequences, write_dataset

    rng = np.random.default_rng(0)
    folder = tmp_path / "rated"
    folder.mkdir()
    seqs = random_sequences()
    rows = [{"uid": u, "items": s, "ratings": [float(r) for r in rng.integers(1, 6, len(s))]} for u, s in enumerate(seqs)]
    (folder / "sequences.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return write_dataset(folder, mats=[], item_emb=rng.standard_normal((40, 16)))


def test_the_rating_stream_reads_each_interactions_rating(rated_dir):
    from semrec.encoder.batches import EvalBatch
    from semrec.encoder.dataset import load_dataset
    from semrec.encoder.sampling import make_sampler

    data = load_dataset(rated_dir)
    torch.manual_seed(0)
    m = SEAR.from_data(data, dim=4, heads=2, state=4, dropout=0.0).eval()
    assert m.streams == 3 and m.history_ratings and m.item_table().shape == (40, 12)
    batch = next(iter(make_sampler(m, data, 8, torch.Generator().manual_seed(0))))
    assert batch.ratings is not None and batch.ratings.shape == batch.inputs.shape
    assert ((batch.ratings > 0) == (batch.inputs != 40)).all()  # a rating where an item is, 0 at padding
    seq = data.sequences
    u = int(batch.users[0])
    row = batch.inputs[0][batch.inputs[0] != 40].tolist()
    start = int(seq.ptr[u])
    assert row == seq.items[start:start + len(row)].tolist()
    assert batch.ratings[0][batch.inputs[0] != 40].tolist() == seq.ratings[start:start + len(row)].tolist()
    loss, _ = m.loss(batch)
    assert torch.isfinite(loss)
    history = torch.tensor([[40, 3, 5]])
    with torch.no_grad():  # the token is the layer norm of w r + b: it sees r only through a bias, 0 at the start
        m.rating_proj.bias.normal_()
    scores = m.scorer()
    low = scores(EvalBatch(torch.tensor([0]), history, torch.tensor([[0.0, 1.0, 1.0]])))
    high = scores(EvalBatch(torch.tensor([0]), history, torch.tensor([[0.0, 5.0, 5.0]])))
    assert not torch.allclose(low, high)  # the same items rated otherwise rank otherwise
    assert SEAR.from_data(data, dim=4, heads=2, ratings=False).streams == 2


def test_a_run_with_ratings_trains_three_streams(rated_dir, tmp_path, capsys):
    from semrec.encoder.train_encoder import main

    out = tmp_path / "run"
    assert main(["--model", "sear", "--dataset", "tiny", "--data-dir", str(rated_dir), "--out", str(out), "--device",
                 "cpu", "--set", "model.dim=4", "--set", "model.heads=2", "--set", "train.epochs=1"]) == 0
    captured = capsys.readouterr()
    assert "best epoch 0" in captured.out
    assert "rating stream is off" not in captured.err + (out / "log.txt").read_text()
    from semrec.encoder.train_encoder import load_run

    _, trainer = load_run(out)
    assert trainer.model.streams == 3 and trainer.model.rating_proj is not None
