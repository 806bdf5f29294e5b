"""Metric definitions on hand-computed cases."""
import math

import pytest
import torch

from semrec.encoder import metrics

# user 0: hits at ranks 1 and 3, 4 held-out items; user 1: no hit; user 2: hit at rank 2 of 1 item
HITS = torch.tensor([[1, 0, 1, 0], [0, 0, 0, 0], [0, 1, 0, 0]], dtype=torch.bool)
NREL = torch.tensor([4, 2, 1])


def test_recall_divides_by_heldout_size():
    assert metrics.recall(HITS, NREL, 3).tolist() == [2 / 4, 0.0, 1.0]
    assert metrics.recall(HITS, NREL, 1).tolist() == [1 / 4, 0.0, 0.0]


def test_precision_divides_by_k():
    assert metrics.precision(HITS, NREL, 4).tolist() == [2 / 4, 0.0, 1 / 4]


def test_ndcg_ideal_over_min_k_and_heldout():
    d = [1 / math.log2(r + 1) for r in range(1, 5)]
    got = metrics.ndcg(HITS, NREL, 3).tolist()
    assert got[0] == pytest.approx((d[0] + d[2]) / (d[0] + d[1] + d[2]))  # min(3, 4) = 3 ideal hits
    assert got[1] == 0.0
    assert got[2] == pytest.approx(d[1] / d[0])  # one relevant item: ideal DCG is 1


def test_mrr_uses_first_hit_and_hit_rate():
    assert metrics.mrr(HITS, NREL, 4).tolist() == [1.0, 0.0, 0.5]
    assert metrics.mrr(HITS, NREL, 1).tolist() == [1.0, 0.0, 0.0]
    assert metrics.hit(HITS, NREL, 1).tolist() == [1.0, 0.0, 0.0]
    assert metrics.hit(HITS, NREL, 2).tolist() == [1.0, 0.0, 1.0]


def test_metric_keys_are_checked():
    assert metrics.parse_metric_key("ndcg@10") == ("ndcg", 10)
    with pytest.raises(ValueError, match="valid metrics: recall, ndcg"):
        metrics.parse_metric_key("auc@10")
    with pytest.raises(ValueError, match="NAME@K"):
        metrics.parse_metric_key("recall")
