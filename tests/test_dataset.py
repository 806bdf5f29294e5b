"""Loading RLMRec-layout folders: formats, validation errors, safe unpickling, negatives."""
import logging
import os
import pickle

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from helpers import random_splits, shared_path, write_dataset
from semrec.encoder.dataset import DataError, load_dataset, load_pickle


@pytest.mark.parametrize("fmt", ["coo", "csr", "csc", "dok", "lil"])
def test_any_sparse_format_and_values_are_binarised(tmp_path, fmt):
    mats = [m.asformat(fmt) * 3.0 for m in random_splits()]  # ratings, not 1.0
    data = load_dataset(write_dataset(tmp_path / fmt, mats))
    assert data.train.shape == (30, 40)
    assert set(np.unique(data.train.data)) == {1.0}
    assert data.train.nnz == mats[0].nnz


def test_embeddings_and_profiles_are_loaded(tmp_path):
    prf = {i: {"profile": f"user {i}", "reasoning": "r"} for i in range(30)}
    folder = write_dataset(tmp_path / "d", user_emb=np.ones((30, 5)), item_emb=np.zeros((40, 5)),
                           **{"usr_prf.pkl": prf})
    data = load_dataset(folder, with_profiles=True)
    assert data.user_emb.shape == (30, 5) and data.item_emb.dtype == np.float32
    assert data.user_profiles[3]["profile"] == "user 3"


def test_missing_split_names_the_file(tmp_path):
    folder = write_dataset(tmp_path / "d")
    os.remove(folder / "val_mat.pkl")
    with pytest.raises(DataError, match="val_mat.pkl: missing"):
        load_dataset(folder)
    with pytest.raises(DataError, match="does not exist"):
        load_dataset(tmp_path / "nowhere")


def test_shapes_that_disagree(tmp_path):
    trn, val, tst = random_splits()
    tst = sp.coo_matrix((tst.data, (tst.row, tst.col)), shape=(30, 41))
    with pytest.raises(DataError, match=r"split shapes disagree .*tst_mat.pkl=\(30, 41\)"):
        load_dataset(write_dataset(tmp_path / "d", [trn, val, tst]))


def test_nan_values(tmp_path):
    trn, val, tst = random_splits()
    trn = trn.copy(); trn.data[0] = np.nan
    with pytest.raises(DataError, match="trn_mat.pkl: 1 stored values are NaN"):
        load_dataset(write_dataset(tmp_path / "d", [trn, val, tst]))


def test_empty_split(tmp_path):
    trn, val, _ = random_splits()
    with pytest.raises(DataError, match="test split has no interactions"):
        load_dataset(write_dataset(tmp_path / "d", [trn, val, sp.coo_matrix((30, 40))]))


def test_embedding_rows_must_match(tmp_path):
    with pytest.raises(DataError, match=r"itm_emb_np.pkl: expected 40 rows \(items\)"):
        load_dataset(write_dataset(tmp_path / "d", item_emb=np.ones((39, 8))))
    emb = np.ones((30, 8)); emb[2, 1] = np.inf
    with pytest.raises(DataError, match="usr_emb_np.pkl: 1 rows contain NaN or infinite"):
        load_dataset(write_dataset(tmp_path / "e", user_emb=emb))


def test_overlapping_splits_warn_with_counts(tmp_path, caplog):
    trn, val, tst = random_splits()
    part = sp.coo_matrix((np.ones(tst.nnz + 5), (np.r_[tst.row, trn.row[:5]], np.r_[tst.col, trn.col[:5]])),
                         shape=tst.shape)
    with caplog.at_level(logging.WARNING):
        load_dataset(write_dataset(tmp_path / "d", [trn, val, part]))
    assert "train&test: 5" in caplog.text


@pytest.mark.parametrize("which, file", [(2, "tst_mat.pkl"), (1, "val_mat.pkl")])
def test_a_held_out_split_inside_train_is_an_error(tmp_path, which, file):
    mats = random_splits()
    mats[which] = mats[0]
    with pytest.raises(DataError, match=f"{file}: all 120 .* interactions are also in trn_mat.pkl"):
        load_dataset(write_dataset(tmp_path / "d", mats))


def _corrupt(fmt: str, how: str):
    """A pickled-and-restored sparse matrix whose raw arrays were changed behind scipy's back."""
    m = random_splits()[0].asformat(fmt)
    if how == "row out of range":
        m.coords = (m.coords[0] + 1000, m.coords[1])
    elif how == "negative column":
        m.coords = (m.coords[0], m.coords[1] - 100)
    elif how == "lengths differ":
        m.coords = (m.coords[0][:-3], m.coords[1])
    elif how == "float indices":
        m.coords = (m.coords[0].astype(float), m.coords[1])
    elif how == "indptr not monotone":
        m.indptr = m.indptr.copy(); m.indptr[3], m.indptr[4] = m.indptr[4], m.indptr[3]
    elif how == "indptr end":
        m.indptr = m.indptr.copy(); m.indptr[-1] += 50
    elif how == "indices out of range":
        m.indices = m.indices.copy(); m.indices[7] = 10**6
    elif how == "bad shape":
        m._shape = (30, -4)
    elif how == "dok key out of range":
        return _Crafted(m, {**vars(m), "_dict": {**m._dict, (99, 99): 1.0}})
    return m


class _Crafted:
    """Pickles as ``matrix``'s class with the given raw state (what a hostile file can hold)."""

    def __init__(self, matrix, state):
        self.cls, self.state = type(matrix), state

    def __reduce__(self):
        import copyreg

        return copyreg._reconstructor, (self.cls, dict, {}), self.state


CORRUPT = [("coo", "row out of range"), ("coo", "negative column"), ("coo", "lengths differ"),
           ("coo", "float indices"), ("csr", "indptr not monotone"), ("csr", "indptr end"),
           ("csr", "indices out of range"), ("csc", "indices out of range"), ("csr", "bad shape"),
           ("dok", "dok key out of range")]


@pytest.mark.parametrize("fmt, how", CORRUPT)
def test_corrupt_sparse_pickle_is_a_data_error(tmp_path, fmt, how):
    trn, val, _ = random_splits()
    folder = write_dataset(tmp_path / "d", [trn, val, _corrupt(fmt, how)])
    with pytest.raises(DataError, match="tst_mat.pkl: a corrupt sparse matrix"):
        load_dataset(folder)


def test_checked_pickle_keeps_good_matrices_of_every_format(tmp_path):
    from semrec.common.io import load_pickle

    m = random_splits()[0].tocsr()
    for fmt in ("coo", "csr", "csc", "bsr", "dia", "lil", "dok"):
        path = tmp_path / f"{fmt}.pkl"
        path.write_bytes(pickle.dumps({"m": [m.asformat(fmt)]}))
        back = load_pickle(path)["m"][0]
        assert back.format == fmt and (back.tocsr() != m).nnz == 0


def test_not_a_matrix(tmp_path):
    trn, val, _ = random_splits()
    with pytest.raises(DataError, match="tst_mat.pkl: expected a scipy sparse"):
        load_dataset(write_dataset(tmp_path / "d", [trn, val, [[1, 2]]]))


class Exploit:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_unpickler_refuses_code(tmp_path):
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps(Exploit()))
    with pytest.raises(DataError, match="refusing to load 'posix.system'"):
        load_pickle(path)
    trn, val, _ = random_splits()
    with pytest.raises(DataError, match="tst_mat.pkl: cannot be read.*refusing"):
        load_dataset(write_dataset(tmp_path / "d", [trn, val, Exploit()]))


def test_negatives_are_never_training_items(tiny_data):
    users, items = tiny_data.train_pairs()
    users = users.repeat(50)
    neg = tiny_data.sample_negatives(users, torch.Generator().manual_seed(0))
    dense = torch.from_numpy(tiny_data.train.toarray())
    assert not dense[users, neg].any()
    # uniform over the user's non-interacted items: every item shows up
    assert set(neg.tolist()) == set(range(tiny_data.num_items))


def test_user_with_every_item_is_rejected(tmp_path):
    trn, val, tst = (m.tolil() for m in random_splits())
    trn[0, :] = 1
    val[0, :] = 0; tst[0, :] = 0
    with pytest.raises(DataError, match="1 user\\(s\\) interacted with every item"):
        load_dataset(write_dataset(tmp_path / "d", [trn.tocoo(), val.tocoo(), tst.tocoo()]))


def test_shared_yelp_split_loads_with_published_statistics():
    data = load_dataset(shared_path("rlmrec_yelp"))
    assert (data.num_users, data.num_items) == (11091, 11010)
    assert (data.train.nnz, data.valid.nnz, data.test.nnz) == (166620, 55479, 55436)
    assert data.overlaps() == {"train&valid": 0, "train&test": 0, "valid&test": 0}
