"""Recommendations out of a trained run: original ids and titles, nothing the user has, the
evaluator's lists reproduced, ad-hoc histories, exported vectors that give the same top-k."""
import csv
import json
import math

import numpy as np
import pytest

import semrec
from semrec.data.prepare import main as prepare
from semrec.encoder.recommend import export_main, main as recommend


@pytest.fixture(scope="module")
def seq_run(tmp_path_factory):
    """SASRec, two epochs, on a small leave-one-out CSV with titles (ids are strings, not indices)."""
    root = tmp_path_factory.mktemp("rec")
    rng = np.random.default_rng(3)
    lines = ["uid,sku,ts,name"]
    for u in range(70):
        start = int(rng.integers(0, 40))
        for n, i in enumerate(range(start, start + int(rng.integers(4, 9)))):
            lines.append(f"user-{u},SKU{i:03d},{1000 * u + n},Item {i} title")
    (root / "t.csv").write_text("\n".join(lines) + "\n")
    assert prepare(["csv", str(root / "t.csv"), "--name", "shop", "--out-dir", str(root), "--user", "uid",
                    "--item", "sku", "--time", "ts", "--item-text", "name", "--split", "leave-one-out"]) == 0
    run = semrec.train("sasrec", dataset="shop", data_dir=root / "shop", out=root / "run", epochs=2, dim=16, seed=5)
    return root, run


def _user_items(root, raw_user):
    """The items of a user in the original CSV."""
    rows = (root / "t.csv").read_text().splitlines()[1:]
    return {r.split(",")[1] for r in rows if r.split(",")[0] == raw_user}


def test_one_user_gets_original_ids_and_titles_and_nothing_they_have(seq_run, capsys):
    root, run = seq_run
    assert recommend([str(run.path), "--user", "user-4", "-k", "7"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 7
    items = [ln.split()[1] for ln in lines]
    assert all(i.startswith("SKU") for i in items)
    assert not set(items) & _user_items(root, "user-4")
    assert all(f"Item {int(i[3:])} title" in ln for i, ln in zip(items, lines))
    scores = [float(ln.split()[2]) for ln in lines]
    assert scores == sorted(scores, reverse=True)


def test_all_users_file_and_the_evaluators_lists(seq_run, tmp_path):
    root, run = seq_run
    out = tmp_path / "top.csv"
    assert recommend([str(run.path), "--all", "-k", "10", "--as-of", "test", "--out", str(out)]) == 0
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 70 * 10
    # the test item is each user's last; NDCG@10 from the written lists is results.json's
    seqs = {}
    for line in (root / "t.csv").read_text().splitlines()[1:]:
        u, i, *_ = line.split(",")
        seqs.setdefault(u, []).append(i)
    gains = []
    for u, items in seqs.items():
        ranked = [r["item"] for r in rows if r["user"] == u]
        gains.append(1 / math.log2(ranked.index(items[-1]) + 2) if items[-1] in ranked else 0.0)
        assert not set(ranked) & set(items[:-2])  # training items excluded, as the evaluator does
    assert np.mean(gains) == pytest.approx(run.results["test"]["ndcg@10"], abs=1e-9)
    pq = pytest.importorskip("pyarrow.parquet", reason="Parquet output needs pyarrow (semrec[tables])")
    assert recommend([str(run.path), "--all", "-k", "3", "--out", str(tmp_path / "top.parquet")]) == 0
    table = pq.read_table(tmp_path / "top.parquet").to_pylist()
    assert len(table) == 210 and set(table[0]) == {"user", "rank", "item", "score", "title"}


def test_ad_hoc_history_and_unknown_ids_exit_2(seq_run, capsys):
    _, run = seq_run
    assert recommend([str(run.path), "--history", "SKU010,SKU011,SKU012", "-k", "4"]) == 0
    items = [ln.split()[1] for ln in capsys.readouterr().out.strip().splitlines()]
    assert len(items) == 4 and not {"SKU010", "SKU011", "SKU012"} & set(items)
    assert recommend([str(run.path), "--user", "nobody"]) == 2
    assert "unknown user 'nobody'" in capsys.readouterr().err
    assert recommend([str(run.path), "--history", "SKU010,NOPE"]) == 2
    assert "unknown item 'NOPE'" in capsys.readouterr().err
    assert recommend([str(run.path), "--all"]) == 2
    assert "give --out" in capsys.readouterr().err


def test_a_file_of_users(seq_run, tmp_path, capsys):
    _, run = seq_run
    (tmp_path / "who.txt").write_text("user-7\nuser-2\n\n")
    assert recommend([str(run.path), "--users", str(tmp_path / "who.txt"), "-k", "3", "--out",
                      str(tmp_path / "t.csv")]) == 0
    rows = list(csv.DictReader((tmp_path / "t.csv").open()))
    assert [r["user"] for r in rows] == ["user-7"] * 3 + ["user-2"] * 3
    assert [r["rank"] for r in rows] == ["1", "2", "3"] * 2
    (tmp_path / "who.txt").write_text("user-7\nghost\n")
    assert recommend([str(run.path), "--users", str(tmp_path / "who.txt"), "--out", str(tmp_path / "u.csv")]) == 2
    assert "unknown user 'ghost'" in capsys.readouterr().err and not (tmp_path / "u.csv").exists()


def test_exported_vectors_give_the_same_top_k(seq_run, tmp_path):
    root, run = seq_run
    assert export_main([str(run.path), "--out", str(tmp_path / "x")]) == 0
    users, items = np.load(tmp_path / "x" / "user_vectors.npy"), np.load(tmp_path / "x" / "item_vectors.npy")
    user_ids = json.loads((tmp_path / "x" / "user_ids.json").read_text())
    item_ids = json.loads((tmp_path / "x" / "item_ids.json").read_text())
    assert users.shape == (70, 16) and items.shape[1] == 16 and len(item_ids) == items.shape[0]
    rows = run.recommend(k=10)
    scores = users @ items.T
    for u, raw in enumerate(user_ids):
        have = _user_items(root, raw)
        order = [item_ids[i] for i in np.argsort(-scores[u], kind="stable") if item_ids[i] not in have][:10]
        assert order == [r["item"] for r in rows if r["user"] == raw]


def test_graph_run_export_matches_its_recommendations(tmp_path, monkeypatch):
    monkeypatch.setenv("SEMREC_HOME", str(tmp_path))
    run = semrec.train("lightgcn", dataset="demo", epochs=1, seed=1)
    assert run.path.parent.parent.parent == tmp_path / "runs"  # runs/demo/lightgcn/seed1-...
    rec = run.recommender
    users, items = rec.vectors()
    got, _ = rec.top_k(range(20), 5)
    seen = (rec.data.train + rec.data.valid + rec.data.test).tocsr()
    s = users[:20] @ items.T
    for u in range(20):
        s[u, seen[u].indices] = -np.inf
    np.testing.assert_array_equal(np.argsort(-s, axis=1, kind="stable")[:, :5], got)
