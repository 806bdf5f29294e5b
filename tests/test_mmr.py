"""MMR review-sentence selection on hand-made vectors and sentences."""
import numpy as np
import pytest

from semrec.generation.mmr import mmr_select, recency_weights, select_sentences, split_sentences

# three "topics": rows 0-2 food (0 and 1 near-duplicates), 3-4 service, 5 parking (an outlier)
E = np.array([[1.0, 0.0, 0.0], [0.999, 0.04, 0.0], [0.9, 0.3, 0.1],
              [0.2, 1.0, 0.0], [0.3, 0.9, 0.1], [0.0, 0.1, 1.0]])


def test_first_pick_is_the_most_central_and_duplicates_are_skipped():
    order = mmr_select(E, k=3, lam=0.7, dup_threshold=0.98)
    centroid = E.mean(0) / np.linalg.norm(E.mean(0))
    unit = E / np.linalg.norm(E, axis=1, keepdims=True)
    assert order[0] == int(np.argmax(unit @ centroid))
    assert not {0, 1} <= set(order)  # never both near-duplicates
    assert len(set(order)) == 3


def test_lambda_trades_relevance_for_diversity():
    relevance_only = mmr_select(E, k=2, lam=1.0, dup_threshold=1.01)
    diverse = mmr_select(E, k=2, lam=0.1, dup_threshold=1.01)
    unit = E / np.linalg.norm(E, axis=1, keepdims=True)
    sim = lambda ix: float(unit[ix[0]] @ unit[ix[1]])
    assert sim(diverse) < sim(relevance_only)


def test_recency_weights_move_the_centroid():
    w = recency_weights([0, 0, 0, 0, 0, 100], half_life=1.0)
    assert w[-1] == 1.0 and w[0] == pytest.approx(0.5 ** 100)
    assert mmr_select(E, k=1, weights=w) == [5]  # only the newest row counts
    with pytest.raises(ValueError, match="lam must be in"):
        mmr_select(E, k=1, lam=1.5)


def test_select_sentences_end_to_end():
    reviews = ["The pasta was wonderful. The pasta was wonderful! Parking is a nightmare here.",
               "Great pasta and friendly staff. Ok."]
    assert split_sentences(reviews[1]) == ["Great pasta and friendly staff."]
    words = ["pasta", "staff", "parking"]
    encode = lambda texts: np.array([[t.lower().count(w) + 1e-3 for w in words] for t in texts], dtype=float)
    picked = select_sentences(reviews, encode, k=3, lam=0.5, dup_threshold=0.99)
    assert picked.count("The pasta was wonderful.") + picked.count("The pasta was wonderful!") == 1
    assert "Parking is a nightmare here." in picked
    assert select_sentences(["Ok."], encode) == []
