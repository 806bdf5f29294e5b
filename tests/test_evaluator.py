"""Full-ranking evaluator against a brute-force reference."""
import math

import numpy as np
import pytest
import torch

from semrec.encoder.dataset import InteractionData
from semrec.encoder.evaluator import Evaluator
from helpers import random_splits


def reference(scores, train, heldout, k, exclude_extra=None):
    """Per-user recall/ndcg computed the slow, obvious way."""
    rec, nd = [], []
    for u in range(scores.shape[0]):
        rel = set(heldout[u].indices)
        if not rel:
            continue
        s = scores[u].copy()
        s[train[u].indices] = -np.inf
        if exclude_extra is not None:
            s[exclude_extra[u].indices] = -np.inf
        top = np.argsort(-s, kind="stable")[:k]
        hits = [i in rel for i in top]
        rec.append(sum(hits) / len(rel))
        dcg = sum(h / math.log2(r + 2) for r, h in enumerate(hits))
        idcg = sum(1 / math.log2(r + 2) for r in range(min(k, len(rel))))
        nd.append(dcg / idcg)
    return np.mean(rec), np.mean(nd)


@pytest.mark.parametrize("batch_size", [1, 7, 1024])
def test_matches_bruteforce(batch_size):
    trn, val, tst = (m.tocsr() for m in random_splits(25, 30, 10, seed=3))
    # drop the held-out items of two users: they must be skipped, not count as zero
    val = val.tolil(); val[3, :] = 0; val[11, :] = 0; val = val.tocsr(); val.eliminate_zeros()
    data = InteractionData(trn, val, tst)
    scores = np.random.default_rng(0).standard_normal((25, 30)).astype(np.float32)
    ev = Evaluator(data, ks=[3, 5], metrics=["recall", "ndcg"], batch_size=batch_size)
    got = ev.evaluate(lambda b: torch.from_numpy(scores)[b.users], "valid")
    for k in (3, 5):
        r, n = reference(scores, trn, val, k)
        assert got[f"recall@{k}"] == pytest.approx(r)
        assert got[f"ndcg@{k}"] == pytest.approx(n)


def test_training_items_are_never_recommended():
    trn, val, tst = (m.tocsr() for m in random_splits(10, 20, 8, seed=1))
    data = InteractionData(trn, val, tst)
    # scores that put every training item first: a correct evaluator still finds nothing of them
    score = torch.from_numpy(trn.toarray() * 100.0 + tst.toarray() * 10.0).float()
    res = Evaluator(data, ks=[2], metrics=["recall", "precision"]).evaluate(lambda b: score[b.users], "test")
    assert res["recall@2"] == pytest.approx(1.0)
    assert res["precision@2"] == pytest.approx(1.0)


def test_exclude_history_at_test():
    trn, val, tst = (m.tocsr() for m in random_splits(10, 20, 8, seed=2))
    data = InteractionData(trn, val, tst)
    score = torch.from_numpy(val.toarray() * 100.0 + tst.toarray() * 10.0).float()
    plain = Evaluator(data, ks=[2], metrics=["recall"]).evaluate(lambda b: score[b.users], "test")
    masked = Evaluator(data, ks=[2], metrics=["recall"], exclude="history").evaluate(
        lambda b: score[b.users], "test")
    assert plain["recall@2"] == 0.0  # validation items crowd the top-2
    assert masked["recall@2"] == pytest.approx(1.0)
    scores = score.numpy()
    assert masked["recall@2"] == pytest.approx(reference(scores, trn, tst, 2, exclude_extra=val)[0])
