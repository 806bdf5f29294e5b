"""Baselines on hand-made matrices, against their formulas; and as CLI runs (solved once, no epochs)."""
import json

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from semrec.encoder.batches import EvalBatch
from semrec.encoder.models.baselines import EASE, ItemKNN, Markov, Popularity
from semrec.encoder.sequences import SequenceData
from semrec.encoder.train_encoder import main as train

X = np.array([[1, 1, 0, 0, 1],
              [1, 0, 1, 0, 0],
              [0, 1, 1, 1, 0],
              [1, 1, 1, 0, 0],
              [0, 0, 1, 1, 1],
              [1, 0, 0, 1, 0]], dtype=np.float32)
USERS = EvalBatch(torch.arange(6))


def scores(model):
    return model.scorer()(USERS).numpy()


def test_ease_is_ridge_regression_of_each_item_on_the_others():
    m = EASE(sp.csr_matrix(X), reg=2.0)
    m.fit(lambda: {}, "recall@20")
    b = m.B.numpy()
    assert np.allclose(np.diag(b), 0)
    for j in range(X.shape[1]):  # the zero-diagonal constraint: column j regressed on the other columns
        others = [i for i in range(X.shape[1]) if i != j]
        xo = X[:, others].astype(np.float64)
        coef = np.linalg.solve(xo.T @ xo + 2.0 * np.eye(len(others)), xo.T @ X[:, j])
        assert np.allclose(b[others, j], coef, atol=1e-5)
    assert np.allclose(scores(m), X @ b, atol=1e-5)


def test_ease_picks_its_lambda_on_validation():
    m = EASE(sp.csr_matrix(X), reg_grid=[1.0, 10.0, 100.0])
    seen = []

    def validate():
        seen.append(float(m.B[0, 1]))
        return {"ndcg@10": {0: 0.1, 1: 0.3, 2: 0.2}[len(seen) - 1]}

    info = m.fit(validate, "ndcg@10")
    assert info["reg"] == 10.0 and m.chosen_reg == 10.0 and len(seen) == 3
    assert float(m.B[0, 1]) == pytest.approx(seen[1])
    with pytest.raises(ValueError, match="every reg_grid value must be > 0"):
        EASE(sp.csr_matrix(X), reg_grid=[0.0])


def test_itemknn_cosine_with_shrinkage_and_k_neighbours():
    shrink, k = 0.5, 2
    m = ItemKNN(sp.csr_matrix(X), k=k, shrink=shrink)
    m.fit(lambda: {}, "recall@20")
    norms = np.sqrt(X.sum(0))
    sim = (X.T @ X) / (np.outer(norms, norms) + shrink)
    np.fill_diagonal(sim, 0)
    # each item j keeps its k most similar items; a user scores j by the ones of those they hold
    expected = np.zeros_like(sim)
    for j in range(X.shape[1]):
        top = np.argsort(-sim[j], kind="stable")[:k]
        expected[top, j] = sim[j, top]
    assert np.allclose(scores(m), X @ expected, atol=1e-6)


def test_popularity_and_markov_on_hand_cases():
    m = Popularity(sp.csr_matrix(X))
    m.fit(lambda: {}, "recall@20")
    assert np.allclose(scores(m), np.tile(X.sum(0), (6, 1)))
    # sequences (the last two items of each are valid / test): transitions 0->1, 1->2, 0->1, 0->2
    seq = SequenceData(np.array([0, 5, 9, 13]), np.array([0, 1, 2, 3, 3, 0, 1, 3, 3, 0, 2, 3, 3]), num_items=4)
    train_mat = sp.csr_matrix(([1, 1, 1, 1, 1, 1, 1], ([0, 0, 0, 1, 1, 2, 2], [0, 1, 2, 0, 1, 0, 2])), shape=(3, 4))
    mk = Markov(train_mat, seq, pop_weight=0.0)
    mk.fit(lambda: {}, "ndcg@10")
    t = mk.T.numpy()
    assert t[0, 1] == pytest.approx(2 / 3) and t[0, 2] == pytest.approx(1 / 3) and t[1, 2] == pytest.approx(1.0)
    hist = EvalBatch(torch.arange(2), torch.tensor([[4, 0], [0, 1]]))  # 4 is the padding id here
    assert np.allclose(mk.scorer()(hist).numpy(), t[[0, 1]])


@pytest.mark.parametrize("model", ["pop", "itemknn", "ease"])
def test_closed_form_runs_write_a_run_and_evaluate_again(tmp_path, monkeypatch, model):
    monkeypatch.setenv("SEMREC_HOME", str(tmp_path))
    out = tmp_path / model
    assert train(["--model", model, "--dataset", "demo", "--out", str(out), "--quiet"]) == 0
    res = json.loads((out / "results.json").read_text())
    hist = [json.loads(x) for x in (out / "history.jsonl").read_text().splitlines()]
    assert res["best_epoch"] == 0 and res["last_epoch"] == 0 and len(hist) == 1 and "fit" in hist[0]
    assert res["test"]["recall@20"] > 0.1  # above random on the demo (60 items in 1,000 would be 0.02)
    if model == "ease":
        assert hist[0]["fit"]["reg"] in [10.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0]
    assert train(["--evaluate", str(out), "--set", "eval.exclude=none", "--quiet"]) == 0
    again = json.loads((out / "eval-full-none.json").read_text())
    assert again["test"]["recall@20"] <= res["test"]["recall@20"] + 1e-9  # seen items back in the ranking
