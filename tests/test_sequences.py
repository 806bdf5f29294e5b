"""Sequences as data: S3-Rec files, sequences.jsonl, the leave-one-out split, the samplers."""
import json

import numpy as np
import pytest
import torch

from helpers import random_sequences, shared_path, write_sequences
from semrec.encoder.dataset import DataError, load_dataset
from semrec.encoder.sampling import ClozeSampler, NextItemSampler


def _s3rec(tmp_path, lines):
    path = tmp_path / "Shop.txt"
    path.write_text("".join(lines))
    return path


def test_s3rec_file_is_split_leave_one_out(tmp_path):
    path = _s3rec(tmp_path, ["1 3 1 4 1 5\n", "2 9 2 6\n", "3 5 3 5 8\n"])
    data = load_dataset(path)
    assert data.name == "shop" and (data.num_users, data.num_items) == (3, 9)
    seq = data.sequences
    assert seq.sequence(0).tolist() == [2, 0, 3, 0, 4]  # ids from 1 become ids from 0, repeats kept
    assert seq.targets("test").tolist() == [4, 5, 7] and seq.targets("valid").tolist() == [0, 1, 4]
    assert [sorted(data.train[u].indices.tolist()) for u in range(3)] == [[0, 2, 3], [8], [2, 4]]
    # users 0 and 2 repeat their validation item from their training part: a partial overlap, kept
    assert data.overlaps()["train&valid"] == 2
    # the history before each split ends where the S3-Rec code ends it
    assert seq.histories(np.array([0, 2]), "valid", 2, pad=9).tolist() == [[0, 3], [4, 2]]
    # a max_len above the longest history gives that history's width: the columns cut are padding
    assert seq.histories(np.array([0, 2]), "valid", 4, pad=9).tolist() == [[2, 0, 3], [9, 4, 2]]
    assert seq.histories(np.array([0, 2]), "valid", 10**9, pad=9).tolist() == [[2, 0, 3], [9, 4, 2]]
    assert seq.histories(np.array([0]), "test", 3, pad=9).tolist() == [[0, 3, 0]]


@pytest.mark.parametrize("lines, message", [
    (["1 2 x\n"], "Shop.txt:1: 'x' is not an id; expected 'user item item ...'"),
    (["1 2 3 4\n", "2 0 3 4\n"], "Shop.txt:2: expected a user id and at least one item id >= 1"),
    (["1 2 3\n", "2 4 5\n"], "2 user(s) have fewer than 3 items"),
    ([], "Shop.txt: no sequences"),
])
def test_bad_s3rec_files(tmp_path, lines, message):
    with pytest.raises(DataError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_dataset(_s3rec(tmp_path, lines))


def test_sequences_jsonl_folder_with_and_without_matrices(tmp_path):
    seqs = random_sequences(6, 15, 5, seed=1)
    write_sequences(tmp_path / "a", seqs, 15)
    a = load_dataset(tmp_path / "a")
    assert a.require_sequences().sequence(3).tolist() == seqs[3]
    for name in ("trn_mat.pkl", "val_mat.pkl", "tst_mat.pkl"):
        (tmp_path / "a" / name).unlink()
    b = load_dataset(tmp_path / "a")  # the matrices are derived from the sequences
    assert (b.test != a.test).nnz == 0 and (b.train != a.train).nnz == 0


def test_matrices_that_are_not_the_sequences_split_are_refused_for_sequence_models(tmp_path):
    seqs = random_sequences(6, 15, 5, seed=1)
    write_sequences(tmp_path / "a", seqs, 15)
    swapped = [s[:-2] + [s[-1], s[-2]] for s in seqs]
    (tmp_path / "a" / "sequences.jsonl").write_text(
        "".join(json.dumps({"uid": u, "items": s}) + "\n" for u, s in enumerate(swapped)))
    data = load_dataset(tmp_path / "a")  # graph models may still use the folder
    with pytest.raises(DataError, match="the valid matrix is not the leave-one-out split of the sequences"):
        data.require_sequences()


def test_graph_dataset_without_sequences_refuses_a_sequence_model(tiny_dir, tmp_path):
    from helpers import write_dataset
    from semrec.encoder.registry import build_model

    data = load_dataset(write_dataset(tmp_path / "g"))
    with pytest.raises(DataError, match="sasrec needs time-ordered sequences"):
        build_model("sasrec", data)


# ----- samplers -------------------------------------------------------------------------------
@pytest.fixture
def seq_data(tiny_dir):
    return load_dataset(tiny_dir)


def test_next_item_batches_predict_every_next_training_item(seq_data):
    pad = seq_data.num_items
    sampler = NextItemSampler(seq_data, batch_size=7, generator=torch.Generator().manual_seed(0), max_len=4,
                              negatives=3)
    seen = set()
    for b in sampler:
        assert b.inputs.shape == b.targets.shape and b.negatives.shape == (*b.inputs.shape, 3)
        for row in range(len(b.users)):
            u = int(b.users[row])
            seen.add(u)
            train = seq_data.sequences.sequence(u)[:-2].tolist()[-5:]  # the last max_len + 1 items
            real = b.inputs[row] != pad
            assert b.inputs[row][real].tolist() == train[:-1] and b.targets[row][real].tolist() == train[1:]
            assert (b.targets[row][~real] == pad).all()  # padding predicts nothing
            assert (b.negatives[row][~real] == pad).all()
            negs = b.negatives[row][real].ravel().tolist()
            assert not set(negs) & set(seq_data.train[u].indices.tolist())  # never a training item
    assert seen == set(range(seq_data.num_users))


def test_batches_are_cut_to_their_longest_sequence_and_bucketed(tmp_path):
    seqs = [list(range(3 + (u % 20))) for u in range(60)]
    write_sequences(tmp_path / "v", seqs, 30)
    data = load_dataset(tmp_path / "v")
    widths = [b.inputs.shape[1] for b in NextItemSampler(data, 10, torch.Generator().manual_seed(1), max_len=50,
                                                          buckets=32)]
    lengths = [len(s) - 3 for s in seqs]  # scored positions: training items minus the first
    assert max(widths) == max(lengths) and min(widths) < max(widths)
    plain = [b.inputs.shape[1] for b in NextItemSampler(data, 10, torch.Generator().manual_seed(1), max_len=50,
                                                         buckets=1)]
    assert sum(widths) < sum(plain)


def test_default_batches_are_plain_random_batches(tmp_path):
    seqs = [list(range(3 + (u % 20))) for u in range(60)]
    write_sequences(tmp_path / "v", seqs, 30)
    data = load_dataset(tmp_path / "v")
    users = [b.users.tolist() for b in NextItemSampler(data, 8, torch.Generator().manual_seed(4))]  # the default
    trained = [u for u in range(60) if u % 20]  # a 3-item user has one training item: nothing to predict
    order = [trained[i] for i in torch.randperm(len(trained), generator=torch.Generator().manual_seed(4))]
    assert users == [order[i:i + 8] for i in range(0, len(order), 8)]  # the shuffled order cut in turn, not sorted
    bucketed = [b.users.tolist() for b in NextItemSampler(data, 8, torch.Generator().manual_seed(4), buckets=4)]
    assert bucketed != users and sorted(sum(bucketed, [])) == trained


@pytest.mark.parametrize("cls", [NextItemSampler, ClozeSampler])
def test_negatives_per_sequence_are_unseen_items_shared_by_its_positions(seq_data, cls):
    def epoch(seed):
        return list(cls(seq_data, 7, torch.Generator().manual_seed(seed), max_len=4, negatives=5,
                        negatives_per="sequence"))

    first = epoch(0)
    for b in first:
        assert b.negatives.shape == (len(b.users), 1, 5)
        for u, negs in zip(b.users.tolist(), b.negatives[:, 0].tolist()):
            assert not set(negs) & set(seq_data.train[u].indices.tolist())  # never a training item
    assert all(torch.equal(a.negatives, b.negatives) for a, b in zip(first, epoch(0)))  # the sampler's generator
    with pytest.raises(ValueError, match="negatives are drawn per position or sequence, got 'batch'"):
        cls(seq_data, 7, torch.Generator(), max_len=4, negatives=5, negatives_per="batch")


def test_cloze_batches_mask_at_least_one_real_item(seq_data):
    pad, mask = seq_data.num_items, seq_data.num_items + 1
    for b in ClozeSampler(seq_data, 8, torch.Generator().manual_seed(0), max_len=6, mask_prob=0.01):
        masked = b.inputs == mask
        assert masked.any(1).all() and (masked == (b.targets != pad)).all()
        assert not (masked & (b.targets == pad)).any()


def test_shared_s3rec_beauty_has_the_published_statistics():
    data = load_dataset(shared_path("s3rec", "Beauty.txt"))
    assert (data.num_users, data.num_items) == (22363, 12101)
    assert int(data.sequences.lengths.sum()) == 198502
    assert data.valid.nnz == data.test.nnz == 22363 and data.overlaps()["train&test"] == 0


def test_shared_s3rec_yelp_test_items_in_history():
    """In S3-Rec's Yelp file 2,027 users (6.7%) have their test item earlier in their history:
    under the excluded-history protocol they cannot score, and the evaluator says how many."""
    from semrec.encoder.evaluator import Evaluator

    data = load_dataset(shared_path("s3rec", "Yelp.txt"))
    info = Evaluator(data, ks=[10], metrics=["hit"], exclude="history").info("test")
    assert info == {"users": 30431, "held_out": 30431, "held_out_in_excluded": 2027}


def test_a_folder_with_s3rec_files_is_a_dataset_by_name(tmp_path, monkeypatch, capsys):
    """``--dataset shop`` just works once the S3-Rec files are in data/shop/."""
    from semrec.encoder.train_encoder import main

    folder = tmp_path / "data" / "shop"
    folder.mkdir(parents=True)
    (folder / "Shop.txt").write_text("".join(f"{u} " + " ".join(str(1 + (u + j) % 12) for j in range(6)) + "\n"
                                             for u in range(1, 21)))
    (folder / "Shop_item2attributes.json").write_text("{}")
    data = load_dataset(folder)
    assert data.name == "shop" and data.num_users == 20 and data.sequences is not None
    monkeypatch.setenv("SEMREC_DATA_DIR", str(tmp_path / "data"))
    assert main(["--model", "gru4rec", "--dataset", "shop", "--out", str(tmp_path / "run"), "--device", "cpu",
                 "--set", "train.epochs=1", "--set", "eval.ks=[5,10]", "--quiet"]) == 0


def test_ratings_ride_along_with_the_items(tmp_path):
    folder = tmp_path / "rated"
    folder.mkdir()
    rows = [{"uid": 0, "items": [3, 1, 4, 1, 5], "ratings": [5, 4, 3, 2, 1]},
            {"uid": 1, "items": [2, 7, 1], "ratings": [1.5, 2.5, 3.5]}]
    (folder / "sequences.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    seq = load_dataset(folder).sequences
    assert seq.ratings.tolist() == [5, 4, 3, 2, 1, 1.5, 2.5, 3.5]
    # the training windows' ratings sit where their items sit, 0 at padding
    items = seq.histories(np.array([0, 1]), "train", 4, pad=8)
    rated = seq.rating_histories(np.array([0, 1]), "train", 4)
    assert items.tolist() == [[3, 1, 4], [8, 8, 2]] and rated.tolist() == [[5, 4, 3], [0, 0, 1.5]]


@pytest.mark.parametrize("rows, message", [
    ([{"uid": 0, "items": [1, 2, 3], "ratings": [1, 2, 3]}, {"uid": 1, "items": [1, 2, 3]}],
     'sequences.jsonl:2: lacks "ratings", unlike the lines before it'),
    ([{"uid": 0, "items": [1, 2, 3]}, {"uid": 1, "items": [1, 2, 3], "ratings": [1, 2, 3]}],
     'sequences.jsonl:2: has "ratings", unlike the lines before it'),
    ([{"uid": 0, "items": [1, 2, 3], "ratings": [1, 2]}], '"ratings" must be finite numbers, one per item'),
    ([{"uid": 0, "items": [1, 2, 3], "ratings": [1, True, 3]}], '"ratings" must be finite numbers'),
    ([{"uid": 0, "items": [1, 2, 3], "ratings": [1, "2", 3]}], '"ratings" must be finite numbers'),
])
def test_bad_ratings_are_named(tmp_path, rows, message):
    folder = tmp_path / "rated"
    folder.mkdir()
    (folder / "sequences.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DataError, match=message):
        load_dataset(folder)
