"""data/prepare.py: every source, every option, every check, on shared and tiny files."""
import gzip
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from helpers import shared_path
from semrec.data.prepare import main as prepare
from semrec.encoder.dataset import load_dataset


def run(tmp_path, *argv, name="ds"):
    code = prepare([*map(str, argv), "--name", name, "--out-dir", str(tmp_path)])
    return code, tmp_path / name


def jsonl(path):
    return [json.loads(x) for x in Path(path).read_text().splitlines()]


def test_movielens_100k(tmp_path, capsys):
    code, out = run(tmp_path, "recbole", shared_path("ml-100k"))
    assert code == 0
    stats = json.loads((out / "stats.json").read_text())
    assert (stats["users"], stats["items"], stats["interactions"]) == (943, 1682, 100000)
    assert stats["train"] + stats["valid"] + stats["test"] == 100000
    assert abs(stats["train"] / 100000 - 0.6) < 0.01 and abs(stats["test"] / 100000 - 0.2) < 0.01
    data = load_dataset(out)
    assert data.overlaps() == {"train&valid": 0, "train&test": 0, "valid&test": 0}
    items = jsonl(out / "items.jsonl")
    assert items[0]["movie_title"] == "Toy Story" and jsonl(out / "mapper/item.json")[0] == {"iid": 0, "item_id": "1"}
    assert jsonl(out / "users.jsonl")[0]["occupation"] == "technician"
    table = capsys.readouterr().out
    assert "users per item (mean / median)" in table and "943" in table


def test_s3rec_yelp_with_item_text(tmp_path):
    code, out = run(tmp_path, "s3rec", shared_path("s3rec", "Yelp.txt"), "--item-text",
                    shared_path("gamer_yelp_text", "Yelp.item.json"), "--item-text-offset", "1")
    assert code == 0
    stats = json.loads((out / "stats.json").read_text())
    assert (stats["users"], stats["items"], stats["interactions"]) == (30431, 20033, 316354)
    items = jsonl(out / "items.jsonl")
    assert items[0]["item_id"] == "1" and items[0]["title"] == "The Great Greek"  # GAMER key 0 = S3-Rec item 1
    assert items[0]["attributes"] == [274, 164, 163, 1]
    # the ids are named by the categories of their items (GAMER's descriptions): "Diners, Greek, Mediterranean, Restaurants"
    attrs = jsonl(out / "item_attributes.jsonl")
    assert attrs[0]["iid"] == 0 and sorted(attrs[0]["attributes"]["attribute"]) == ["Diners", "Greek", "Mediterranean",
                                                                                       "Restaurants"]
    seqs = jsonl(out / "sequences.jsonl")
    assert sum(len(s["items"]) for s in seqs) == 316354
    assert seqs[0]["items"][:4] == [0, 1, 2, 3] and seqs[0]["timestamps"][:3] == [0, 1, 2]


def test_amazon_2018_reviews_meta_and_kcore(tmp_path):
    code, out = run(tmp_path, "amazon", shared_path("amazon2018_gift_cards"), "--kcore", "5")
    assert code == 0
    data = load_dataset(out)
    full = (data.train + data.valid + data.test).tocsr()
    assert np.diff(full.indptr).min() >= 5 and np.bincount(full.indices).min() >= 5
    rows = jsonl(out / "interactions.jsonl")
    assert any("review" in r for r in rows) and {r["split"] for r in rows} == {"train", "valid", "test"}
    assert all("title" in it for it in jsonl(out / "items.jsonl"))


def test_rlmrec_folder_is_validated_and_copied(tmp_path):
    code, out = run(tmp_path, "rlmrec", shared_path("rlmrec_yelp"), name="yelp")
    assert code == 0
    stats = json.loads((out / "stats.json").read_text())
    assert stats["sha256"]["trn_mat.pkl"] == "2306f5b9de8f3dd3342744d937a45b04abd22ede422304a549fb324e12e5f6bd"
    assert (stats["users"], stats["items"], stats["train"]) == (11091, 11010, 166620)
    assert (out / "yelp_item.json").exists()


def _amazon2023(tmp_path):
    rows = [{"user_id": f"U{u}", "parent_asin": f"P{i}", "asin": f"A{i}", "rating": 1 + (u + i) % 5,
             "timestamp": 1_600_000_000_000 + 1000 * (u * 10 + i), "title": "t", "text": f"review {u} {i}"}
            for u in range(6) for i in range(5)]
    path = tmp_path / "raw" / "Toys.jsonl.gz"
    path.parent.mkdir()
    with gzip.open(path, "wt") as f:
        f.write("".join(json.dumps(r) + "\n" for r in rows))
    with gzip.open(tmp_path / "raw" / "meta_Toys.jsonl.gz", "wt") as f:
        f.write("".join(json.dumps({"parent_asin": f"P{i}", "title": f"Toy {i}", "store": "S"}) + "\n" for i in range(5)))
    return path


def test_amazon_2023_and_min_rating(tmp_path):
    path = _amazon2023(tmp_path)
    code, out = run(tmp_path, "amazon", path.parent, "--min-rating", "4")
    assert code == 0
    rows = jsonl(out / "interactions.jsonl")
    assert rows and all(r["rating"] >= 4 for r in rows)
    assert rows[0]["timestamp"] == 1_600_000_000 + (int(jsonl(out / "mapper/user.json")[0]["user_id"][1:]) * 10
                                                     + int(jsonl(out / "mapper/item.json")[rows[0]["iid"]]["item_id"][1:]))
    assert jsonl(out / "items.jsonl")[0]["title"].startswith("Toy")


def _yelp_open(tmp_path):
    folder = tmp_path / "yelp_raw"
    folder.mkdir()
    reviews = [{"review_id": f"r{k}", "user_id": f"u{k % 7}", "business_id": f"b{k % 5}", "stars": 1 + k % 5,
                "text": f"text {k}", "date": f"2019-01-{1 + k % 28:02d} 10:00:{k % 60:02d}"} for k in range(60)]
    (folder / "yelp_academic_dataset_review.json").write_text("".join(json.dumps(r) + "\n" for r in reviews))
    (folder / "yelp_academic_dataset_business.json").write_text("".join(
        json.dumps({"business_id": f"b{i}", "name": f"Biz {i}", "city": "Tucson", "categories": "Pizza, Bars"}) + "\n"
        for i in range(5)))
    (folder / "yelp_academic_dataset_user.json").write_text("".join(
        json.dumps({"user_id": f"u{u}", "review_count": u, "yelping_since": "2015-01-01"}) + "\n" for u in range(7)))
    return folder


@pytest.mark.parametrize("split", ["random", "time", "leave-one-out"])
def test_yelp_open_dataset_splits(tmp_path, split):
    code, out = run(tmp_path, "yelp", _yelp_open(tmp_path), "--split", split, "--dedup")
    assert code == 0
    data = load_dataset(out)
    assert data.overlaps() == {"train&valid": 0, "train&test": 0, "valid&test": 0}
    rows = jsonl(out / "interactions.jsonl")
    assert jsonl(out / "items.jsonl")[0]["name"] == "Biz 0" and jsonl(out / "users.jsonl")[0]["review_count"] == 0
    by_split = lambda s: [r["timestamp"] for r in rows if r["split"] == s]
    if split == "time":
        assert max(by_split("train")) <= min(by_split("valid")) <= max(by_split("valid")) <= min(by_split("test"))
    if split == "leave-one-out":
        for seq in jsonl(out / "sequences.jsonl"):
            mine = [r for r in rows if r["uid"] == seq["uid"]]
            assert mine[-1]["split"] == "test" and mine[-2]["split"] == "valid"


def test_sampling_and_determinism(tmp_path):
    args = ("recbole", shared_path("ml-100k"), "--sample-users", "200", "--kcore", "5", "--seed", "3")
    code, a = run(tmp_path / "a", *args)
    code2, b = run(tmp_path / "b", *args)
    assert code == code2 == 0
    sa, sb = (json.loads((p / "stats.json").read_text()) for p in (a, b))
    assert sa["users"] <= 200 and sa["sha256"] == sb["sha256"]
    for f in ("trn_mat.pkl", "interactions.jsonl", "sequences.jsonl"):
        assert hashlib.sha256((a / f).read_bytes()).hexdigest() == sa["sha256"][f]
    _, c = run(tmp_path / "c", "recbole", shared_path("ml-100k"), "--sample-users", "200", "--kcore", "5", "--seed", "4")
    assert json.loads((c / "stats.json").read_text())["sha256"]["trn_mat.pkl"] != sa["sha256"]["trn_mat.pkl"]


@pytest.mark.parametrize("kind, content, fname, message", [
    ("amazon", '{"reviewerID": "a", "asin": "b", "overall": 5}\n{not json}\n', "x_5.json", "x_5.json:2: not valid JSON"),
    ("amazon", '{"reviewerID": "a", "overall": 5}\n', "x_5.json", "x_5.json:1: missing field(s) asin"),
    ("recbole", "user_id:token\titem_id:token\n1\t2\n3\n", "x.inter", "x.inter:3: expected 2 tab-separated fields"),
    ("recbole", "user_id:token\titem_id:token\trating:float\n1\t2\tfive\n", "x.inter", "x.inter:2: rating 'five' is not a number"),
    ("s3rec", "1 2 3\n2 a b\n", "x.txt", "x.txt:2: expected 'user item item ...'"),
    ("yelp", '{"user_id": "u", "business_id": "b", "date": "yesterday"}\n', "x_review.json", "x_review.json:1: date 'yesterday'"),
])
def test_malformed_lines_name_file_and_line(tmp_path, capsys, kind, content, fname, message):
    (tmp_path / fname).write_text(content)
    code, _ = run(tmp_path / "out", kind, tmp_path / fname)
    assert code == 2 and message in capsys.readouterr().err


def test_other_errors(tmp_path, capsys):
    ml = shared_path("ml-100k")
    assert run(tmp_path, "recbole", ml, "--min-rating", "6")[0] == 2
    assert "filters left no interactions" in capsys.readouterr().err
    assert run(tmp_path, "s3rec", tmp_path / "missing.txt")[0] == 2
    assert "no such file" in capsys.readouterr().err
    assert run(tmp_path, "recbole", ml, "--ratios", "3,1")[0] == 2
    assert "expected three non-negative numbers" in capsys.readouterr().err
    assert run(tmp_path, "recbole", ml)[0] == 0
    assert run(tmp_path, "recbole", ml)[0] == 2
    assert "pass --force" in capsys.readouterr().err
    (tmp_path / "seq.txt").write_text("1 1 2 3\n")
    assert run(tmp_path, "s3rec", tmp_path / "seq.txt", "--min-rating", "3", name="r")[0] == 2
    assert "source has no ratings" in capsys.readouterr().err


def test_converted_dataset_trains(tmp_path):
    from semrec.encoder.train_encoder import main as train

    _, out = run(tmp_path, "recbole", shared_path("ml-100k"), "--min-rating", "4", "--kcore", "10")
    assert train(["--model", "lightgcn", "--dataset", "ml", "--data-dir", str(out), "--out", str(tmp_path / "run"),
                  "--set", "train.epochs=1", "--quiet"]) == 0
    res = json.loads((tmp_path / "run" / "results.json").read_text())
    assert res["test"]["recall@20"] > 0.025  # a random ranking gives about 0.012


def test_movielens_100k_leave_one_out_feeds_the_sequential_models(tmp_path):
    """prepare.py's leave-one-out split and its sequences.jsonl agree, so a sequence model runs on it."""
    from semrec.encoder.train_encoder import main as train

    _, out = run(tmp_path, "recbole", shared_path("ml-100k"), "--split", "leave-one-out", "--dedup")
    data = load_dataset(out)
    seq = data.require_sequences()
    assert seq.num_users == 943 and int(seq.lengths.sum()) == 100000
    # the ratings come along, one per interaction, in the same order (user 0's first rating in the file)
    assert seq.ratings is not None and seq.ratings.shape == seq.items.shape and set(np.unique(seq.ratings)) == {1, 2, 3, 4, 5}
    first = jsonl(out / "sequences.jsonl")[0]
    assert seq.ratings[: len(first["items"])].tolist() == first["ratings"]
    assert train(["--model", "sasrec", "--dataset", "ml100k", "--data-dir", str(out), "--out", str(tmp_path / "run"),
                  "--set", "train.epochs=1", "--quiet"]) == 0
    res = json.loads((tmp_path / "run" / "results.json").read_text())
    assert res["protocol"]["test"]["users"] == 943
