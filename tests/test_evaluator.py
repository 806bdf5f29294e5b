"""Full-ranking evaluator against a brute-force reference."""
import math

import numpy as np
import scipy.sparse as sp
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


# ----- protocols for sequences (issue 18) ------------------------------------------------------
def _loo(num_users=12, num_items=25, seed=0):
    from semrec.encoder.sequences import SequenceData

    rng = np.random.default_rng(seed)
    seqs = [rng.choice(num_items, size=5 + u % 4, replace=False).tolist() for u in range(num_users)]
    seq = SequenceData.from_lists(seqs, num_items)
    trn, val, tst = seq.split_matrices()
    return InteractionData(trn, val, tst, sequences=seq), seqs


def test_history_is_what_came_before_the_split():
    data, seqs = _loo()
    got = {}

    def scorer(batch):
        for u, h in zip(batch.users.tolist(), batch.history.tolist()):
            got[u] = [i for i in h if i != data.num_items]
        return torch.zeros(len(batch.users), data.num_items)

    Evaluator(data, ks=[5], metrics=["hit"]).evaluate(scorer, "valid", history_len=50)
    assert got == {u: s[:-2] for u, s in enumerate(seqs)}
    Evaluator(data, ks=[5], metrics=["hit"]).evaluate(scorer, "test", history_len=3)
    assert got == {u: s[-4:-1] for u, s in enumerate(seqs)}


def test_excluding_the_history_and_not():
    data, seqs = _loo()
    # every history item scores above the target, the target above every other item
    score = torch.zeros(data.num_users, data.num_items)
    for u, s in enumerate(seqs):
        score[u, s[:-1]] = 10.0
        score[u, s[-1]] = 5.0
    run = lambda exclude: Evaluator(data, ks=[1, 10], metrics=["hit"], exclude=exclude).evaluate(  # noqa: E731
        lambda b: score[b.users], "test")
    assert run("history") == {"hit@1": 1.0, "hit@10": 1.0}
    assert run("train") == {"hit@1": 0.0, "hit@10": 1.0}  # the validation item (10.0) is still ranked
    assert run("none")["hit@1"] == 0.0


def test_sampled_protocol_fixed_unseen_distinct_candidates():
    data, seqs = _loo()
    ev = Evaluator(data, ks=[1, 5], metrics=["hit", "ndcg"], protocol="sampled", sampled_negatives=10, seed=7)
    cand = ev._split_index("test").candidates
    users = ev._split_index("test").users
    assert cand.shape == (data.num_users, 11)
    for row, u in zip(cand.tolist(), users.tolist()):
        assert row[0] == seqs[u][-1] and len(set(row)) == 11 and not set(row[1:]) & set(seqs[u])
    again = Evaluator(data, ks=[1], metrics=["hit"], protocol="sampled", sampled_negatives=10, seed=7)
    assert torch.equal(again._split_index("test").candidates, cand)  # fixed per seed
    other = Evaluator(data, ks=[1], metrics=["hit"], protocol="sampled", sampled_negatives=10, seed=8)
    assert not torch.equal(other._split_index("test").candidates, cand)
    # the target ranks r-th among its candidates when r - 1 of them score higher
    rank_of = {u: u % 4 for u in range(data.num_users)}  # 0-based

    def scorer(batch):
        s = torch.zeros(len(batch.users), data.num_items)
        for r, u in enumerate(batch.users.tolist()):
            row = cand[users.tolist().index(u)]
            s[r, row[1:]] = -torch.arange(10, dtype=torch.float) - 1  # negatives: -1 > -2 > ...
            s[r, row[0]] = -rank_of[u] - 0.5  # below exactly rank_of[u] negatives
        return s

    res = ev.evaluate(scorer, "test")
    ranks = np.array([rank_of[u] for u in range(data.num_users)])
    assert res["hit@1"] == pytest.approx(np.mean(ranks == 0))
    assert res["ndcg@5"] == pytest.approx(np.mean([1 / math.log2(r + 2) if r < 5 else 0 for r in ranks]))


def test_head_and_tail_groups_by_hand():
    data, seqs = _loo()
    score = torch.zeros(data.num_users, data.num_items)
    hit_users = {0, 3, 4, 9}
    for u, s in enumerate(seqs):
        score[u, s[-1]] = 1.0 if u in hit_users else -1.0
    ev = Evaluator(data, ks=[1], metrics=["hit"], exclude="history", groups=True, head_user_share=0.25,
                   head_item_share=0.2)
    res = ev.evaluate(lambda b: score[b.users], "test")
    lengths = np.array([len(s) - 1 for s in seqs])  # history before the test item
    head = lengths >= np.sort(lengths)[::-1][2]  # the top 25% of 12 users: 3, and any tied with the third
    hits = np.array([u in hit_users for u in range(data.num_users)], dtype=float)
    assert res["head_users/hit@1"] == pytest.approx(hits[head].mean())
    assert res["tail_users/hit@1"] == pytest.approx(hits[~head].mean())
    pop = np.asarray(data.train.sum(0)).ravel()
    head_items = set(np.argsort(-pop, kind="stable")[:5].tolist())  # ceil(0.2 * 25)
    is_head = np.array([s[-1] in head_items for s in seqs])
    assert res["head_items/hit@1"] == pytest.approx(hits[is_head].mean() if is_head.any() else 0.0)
    assert res["tail_items/hit@1"] == pytest.approx(hits[~is_head].mean())


def test_metrics_agree_with_ir_measures():
    """An independent implementation (trec_eval through ir-measures) on random full rankings."""
    ir_measures = pytest.importorskip("ir_measures", reason="pip install ir-measures (a test dependency)")
    from ir_measures import P, R, RR, Success, nDCG

    trn, val, tst = (m.tocsr() for m in random_splits(25, 30, 10, seed=5))
    data = InteractionData(trn, val, tst)
    scores = np.random.default_rng(1).standard_normal((25, 30)).astype(np.float32)
    ev = Evaluator(data, ks=[5, 10], metrics=["recall", "ndcg", "precision", "mrr", "hit"])
    got = ev.evaluate(lambda b: torch.from_numpy(scores)[b.users], "test")
    qrels, run = [], []
    for u in range(25):
        for i in tst[u].indices:
            qrels.append(ir_measures.Qrel(str(u), str(i), 1))
        for i in set(range(30)) - set(trn[u].indices):  # training items are excluded from the ranking
            run.append(ir_measures.ScoredDoc(str(u), str(i), float(scores[u, i])))
    for k in (5, 10):
        want = ir_measures.calc_aggregate([R @ k, nDCG @ k, P @ k, RR @ k, Success @ k], qrels, run)
        assert got[f"recall@{k}"] == pytest.approx(want[R @ k], abs=1e-9)
        assert got[f"ndcg@{k}"] == pytest.approx(want[nDCG @ k], abs=1e-9)
        assert got[f"precision@{k}"] == pytest.approx(want[P @ k], abs=1e-9)
        assert got[f"mrr@{k}"] == pytest.approx(want[RR @ k], abs=1e-9)
        assert got[f"hit@{k}"] == pytest.approx(want[Success @ k], abs=1e-9)


def test_a_subset_of_items_counts_as_the_whole_held_out_set():
    # 2 users, 6 items; test items: user 0 -> {1, 4}, user 1 -> {5}; no training items excluded but item 0
    train = sp.csr_matrix(np.array([[1, 0, 0, 0, 0, 0], [1, 0, 0, 0, 0, 0]], dtype=np.float32))
    test = sp.csr_matrix(np.array([[0, 1, 0, 0, 1, 0], [0, 0, 0, 0, 0, 1]], dtype=np.float32))
    valid = sp.csr_matrix(np.array([[0, 0, 1, 0, 0, 0], [0, 0, 1, 0, 0, 0]], dtype=np.float32))
    data = InteractionData(train, valid, test)
    ev = Evaluator(data, ks=[1, 2], metrics=["recall", "ndcg"])
    # both users rank 4 > 1 > 5 > ...
    scores = torch.tensor([[0.0, 5.0, 0.0, 0.0, 9.0, 1.0]] * 2)
    scorer = lambda batch: scores[batch.users]  # noqa: E731
    full = ev.evaluate(scorer, "test")
    assert full["recall@2"] == pytest.approx((2 / 2 + 0 / 1) / 2)
    # only items {1, 5}: user 0's relevant set is {1} (ranked 2nd, after the out-of-subset 4), user 1's is {5}
    sub = ev.evaluate(scorer, "test", items=np.array([False, True, False, False, False, True]))
    assert sub["recall@1"] == 0.0 and sub["recall@2"] == pytest.approx(0.5)
    assert sub["ndcg@2"] == pytest.approx((1 / np.log2(3)) / 2)
    # only item 4: user 1 has none there and is left out
    assert ev.evaluate(scorer, "test", items=np.eye(6, dtype=bool)[4])["recall@1"] == 1.0
    with pytest.raises(ValueError, match="boolean mask over the 6 items"):
        ev.evaluate(scorer, "test", items=np.array([1, 0, 1]))
