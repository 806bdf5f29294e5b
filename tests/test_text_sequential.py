"""Item tables from text for the sequential models (text4rec, LLM-ESR's collaborative view)."""
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import random_sequences, write_sequences
from semrec.common.linalg import pca
from semrec.encoder.models import BERT4Rec, GRU4Rec, GSASRec, SASRec
from semrec.encoder.sampling import NextItemSampler

N_ITEMS = 40


def _text(width=24, seed=1):
    return np.random.default_rng(seed).standard_normal((N_ITEMS, width)).astype(np.float32)


def _sasrec(item_text, text, **kw):
    torch.manual_seed(0)
    return SASRec(N_ITEMS, dim=8, max_len=6, heads=2, item_text=item_text, text_emb=text, **kw)


def _one_step(model, folder):
    from semrec.encoder.dataset import load_dataset

    data = load_dataset(folder)
    batch = next(iter(NextItemSampler(data, 16, torch.Generator().manual_seed(0), max_len=6)))
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=0.05)
    loss, _ = model.loss(batch)
    loss.backward()
    opt.step()
    return model


@pytest.fixture
def seq_folder(tmp_path):
    folder = tmp_path / "seq"
    write_sequences(folder, random_sequences(num_items=N_ITEMS), N_ITEMS)
    with open(folder / "itm_emb_np.pkl", "wb") as f:
        pickle.dump(_text(), f)
    return folder


def test_pca_initialisation_is_the_projected_table():
    text = _text()
    m = _sasrec("pca", text, init_std=0.05)
    table = m.items.item_emb.weight[:N_ITEMS].detach().numpy()
    expected = pca(text, 8)
    scale = 0.05 / expected.std()
    assert np.allclose(table, expected * scale, atol=1e-6)
    assert m.items.item_emb.weight[N_ITEMS].abs().max() == 0  # padding


def test_frozen_text_stays_frozen_and_the_projection_learns(seq_folder):
    text = _text()
    m = _sasrec("frozen", text)
    assert not any(p is m.items.text_rows.text for p in m.parameters())  # a buffer, not a weight
    assert "text_emb" not in m.state_dict()  # data: not saved with the weights
    before = m.items.text_rows.proj[0].weight.detach().clone()
    _one_step(m, seq_folder)
    assert torch.equal(m.items.text_rows.text, torch.from_numpy(text))
    assert not torch.equal(m.items.text_rows.proj[0].weight, before)
    assert m.item_table().shape == (N_ITEMS, 8)


def test_trainable_text_table_moves(seq_folder):
    text = _text()
    m = _sasrec("trainable", text)
    assert torch.equal(m.items.text_rows.text.detach(), torch.from_numpy(text))
    _one_step(m, seq_folder)
    assert not torch.equal(m.items.text_rows.text.detach(), torch.from_numpy(text))


def test_text_shuffle_gives_items_other_items_vectors():
    text = _text()
    m = _sasrec("frozen", text, text_shuffle=True)
    rows = m.items.text_rows.text.numpy()
    assert sorted(map(tuple, rows.tolist())) == sorted(map(tuple, text.tolist()))  # the same vectors ...
    assert (rows != text).any(1).mean() > 0.9  # ... owned by other items


@pytest.mark.parametrize("cls", [SASRec, GSASRec, GRU4Rec, BERT4Rec])
@pytest.mark.parametrize("item_text", ["frozen", "trainable", "pca"])
def test_every_encoder_takes_a_text_table(cls, item_text):
    extra = {"negatives": 5} if cls is GSASRec else {}
    torch.manual_seed(0)
    m = cls(N_ITEMS, dim=8, max_len=6, item_text=item_text, text_emb=_text(), **extra)
    items = torch.tensor([[N_ITEMS, 3, 7, 1], [5, 2, 9, 4]])
    assert m.encode(items).shape == (2, 4, 8)
    assert torch.isfinite(m.encode(items)).all()


def test_bad_text_tables_are_clear_errors():
    with pytest.raises(ValueError, match="needs item text embeddings"):
        _sasrec("frozen", None)
    with pytest.raises(ValueError, match=r"expected \(40, width\)"):
        _sasrec("frozen", _text()[:30])
    with pytest.raises(ValueError, match="dim must be at most 4"):
        _sasrec("pca", _text(width=4))
    with pytest.raises(ValueError, match="set item_text too"):
        _sasrec("none", _text(), text_shuffle=True)
    with pytest.raises(ValueError, match="item_text must be one of none, pca, frozen, trainable"):
        _sasrec("bert", _text())


@pytest.mark.parametrize("item_text", ["frozen", "pca"])
def test_text_tables_train_from_the_cli(seq_folder, tmp_path, item_text):
    from semrec.encoder.train_encoder import main

    out = tmp_path / "run"
    assert main(["--model", "gsasrec", "--dataset", "seq", "--data-dir", str(seq_folder), "--out", str(out),
                 "--device", "cpu", "--quiet", "--set", "train.epochs=1", "--set", "model.negatives=5", "--set", "model.dim=16",
                 "--set", f"model.item_text={item_text}", "--set", "model.text_shuffle=true"]) == 0
    res = json.loads((out / "results.json").read_text())
    assert 0 <= res["test"]["ndcg@10"] <= 1


def test_text_table_without_embeddings_is_exit_2(tmp_path, capsys):
    from semrec.encoder.train_encoder import main

    folder = tmp_path / "bare"
    write_sequences(folder, random_sequences(num_items=N_ITEMS), N_ITEMS)
    assert main(["--model", "sasrec", "--dataset", "bare", "--data-dir", str(folder), "--out", str(tmp_path / "r"),
                 "--device", "cpu", "--set", "model.item_text=frozen"]) == 2
    assert "needs item text embeddings (itm_emb_np.pkl)" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


# ----- item and user text for sequence datasets --------------------------------------------------
def _prepare(tmp_path, lines, texts, *extra):
    from semrec.data.prepare import main as prepare

    raw = tmp_path / "Tiny.txt"
    raw.write_text("".join(lines))
    (tmp_path / "text.json").write_text(json.dumps(texts))
    code = prepare(["s3rec", str(raw), "--name", "tiny", "--out-dir", str(tmp_path), "--item-text",
                    str(tmp_path / "text.json"), "--item-text-offset", "0", "--split", "leave-one-out", *extra])
    assert code == 0
    return tmp_path / "tiny"


def test_user_text_comes_from_the_training_part_of_the_sequence_only(tmp_path):
    """Every user's last item is the test target and the one before it the validation target:
    neither title may reach the user's profile (metadata) or prompt (LLM); the training
    items' titles do, newest last."""
    from semrec.generation.profiles import metadata_profiles
    from semrec.generation.prompts import DatasetText, PromptBuilder, load_templates

    rng = np.random.default_rng(0)
    seqs = [rng.choice(np.arange(1, 31), size=int(rng.integers(4, 9)), replace=False).tolist() for _ in range(25)]
    texts = {str(i): {"title": f"Title{i:02d}X", "categories": [["Beauty", f"Cat{i % 4}"]]} for i in range(1, 31)}
    folder = _prepare(tmp_path, [f"{u + 1} " + " ".join(map(str, s)) + "\n" for u, s in enumerate(seqs)], texts)
    text = DatasetText(folder)
    users = metadata_profiles("user", text, max_items=50)
    builder = PromptBuilder(text, "user", load_templates("user", "tiny"), token_budget=4000, max_items=50)
    for u, s in enumerate(seqs):  # users and items keep their order (raw ids 1.. map to 0..)
        profile = users[u]["profile"]
        prompt = json.dumps(builder.messages(u))
        for held_out in s[-2:]:
            assert f"Title{held_out:02d}X" not in profile and f"Title{held_out:02d}X" not in prompt
        train_titles = [f"Title{i:02d}X" for i in s[:-2]]
        assert profile == "Interacted with: " + "; ".join(train_titles)
    items = metadata_profiles("item", text)
    assert items[0]["profile"] == "title: Title01X\ncategories: Beauty > Cat1"


@pytest.mark.skipif(not (Path(__file__).resolve().parents[2] / "shared" / "data" / "s3rec_text").exists(),
                    reason="../shared/data/s3rec_text not found (real S3-Rec Beauty item text)")
def test_beauty_with_text_feeds_the_sequential_models(tmp_path):
    from semrec.data.prepare import main as prepare
    from semrec.encoder.dataset import load_dataset
    from semrec.generation.profiles import metadata_profiles
    from semrec.generation.prompts import DatasetText

    shared = Path(__file__).resolve().parents[2] / "shared" / "data"
    assert prepare(["s3rec", str(shared / "s3rec" / "Beauty.txt"), "--name", "beauty_text", "--out-dir", str(tmp_path),
                    "--item-text", str(shared / "s3rec_text" / "Beauty_item_text.json"), "--item-text-offset", "0",
                    "--split", "leave-one-out"]) == 0
    folder = tmp_path / "beauty_text"
    data = load_dataset(folder)
    data.require_sequences("sasrec")  # the matrices are the sequences' leave-one-out split
    assert (data.num_users, data.num_items) == (22363, 12101)
    items = metadata_profiles("item", DatasetText(folder))
    assert items[0]["profile"] == ("title: OPI Nail Lacquer, Simmer and Shimmer, 0.5-Fluid Ounce\n"
                                   "categories: Beauty > Makeup > Nails > Nail Polish")
    assert all(p["profile"].startswith("title: ") for p in items.values())
