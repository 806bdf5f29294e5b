"""RERec's pipeline: review sentences by MMR, no held-out review in any text, one command end to end."""
import gzip
import io
import json
import pickle

import numpy as np
import pytest

from semrec.common.progress import Progress
from semrec.generation.rerec import ReviewSelection, choose, main

pytest.importorskip("sentence_transformers", reason="the RERec pipeline embeds sentences with the local encoder")


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_progress_prints_a_line_every_n_seconds_off_a_terminal():
    out, clock = io.StringIO(), Clock()
    with Progress(10, "sentences", every=30, stream=out, clock=clock) as bar:
        for step in range(10):
            clock.now = 10.0 * (step + 1)
            bar.update()
    lines = out.getvalue().splitlines()
    # at 30, 60, 90 s, and the final count at 100 s
    assert [ln.split(" in ")[0] for ln in lines] == ["sentences: 3/10 (30%)", "sentences: 6/10 (60%)",
                                                     "sentences: 9/10 (90%)", "sentences: 10/10 (100%)"]
    assert "about 70 s left" in lines[0]


# four unit vectors; hand-computed: the centroid of all four is (0.6821, 0.7313), so relevance is
# a .682, b .985, c .974, d .731; b is picked first; at lambda 0.5 d's score (.366 - .5 * .6) beats
# c's (.487 - .5 * .920) and a's, then c; with duplicates at 0.9, c (.920 to b) is never picked
VECS = np.array([[1.0, 0.0], [0.8, 0.6], [0.5, np.sqrt(0.75)], [0.0, 1.0]])


@pytest.mark.parametrize("lam,dup,expected", [(0.5, 0.99, [1, 3, 2]), (0.9, 0.99, [1, 2, 3]), (0.5, 0.9, [1, 3, 0])])
def test_mmr_picks_the_hand_computed_sentences(lam, dup, expected):
    rows, times = [np.arange(4)], [np.array([0.0, 0.0, 0.0, 0.0])]
    sel = ReviewSelection(sentences=3, mmr_lambda=lam, dup_threshold=dup, half_life_days=0)
    assert choose(VECS, rows, times, sel, progress_every=1e9) == [expected]


def test_newer_reviews_pull_the_centroid():
    # a's review is new, the rest are ten half-lives old: the centroid is nearly a, so a comes first
    rows, times = [np.arange(4)], [np.array([100.0, 0.0, 0.0, 0.0]) * 86400]
    assert choose(VECS, rows, times, ReviewSelection(sentences=1, half_life_days=10))[0] == [0]
    assert choose(VECS, rows, times, ReviewSelection(sentences=1, half_life_days=0))[0] == [1]


def _review(user, item, t, text, rating=5.0):
    return {"reviewerID": f"U{user}", "asin": f"A{item}", "overall": rating, "unixReviewTime": t,
            "summary": "", "reviewText": text}


def write_reviews(folder):
    """Eight users, each with five reviews of items in time order; a user's last two (validation and
    test under leave-one-out) are the only ones that say 'secret'."""
    rows, rng = [], np.random.default_rng(0)
    topics = ["The binding is sturdy and the paper feels thick.", "Every issue arrives late in the month.",
              "The recipes are simple and the photos are lovely.", "Great value for the yearly price.",
              "The articles about travel are my favourite part."]
    for u in range(8):
        items = rng.permutation(12)[:5]
        for n, i in enumerate(items):
            held_out = n >= 3
            text = (f"A secret remark number {u}{n} from a held out review. It mentions secret plans."
                    if held_out else f"{topics[(u + n) % 5]} Reviewer {u} wrote this on visit {n}.")
            rows.append(_review(u, int(i), 1_000_000 + 86400 * (10 * u + n), text))
    meta = [{"asin": f"A{i}", "title": f"Magazine number {i}", "category": ["Magazines", "Lifestyle"]}
            for i in range(12)]
    folder.mkdir()
    with gzip.open(folder / "Tiny_5.json.gz", "wt") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    with gzip.open(folder / "meta_Tiny.json.gz", "wt") as f:
        f.writelines(json.dumps(m) + "\n" for m in meta)
    return folder


def test_no_held_out_review_reaches_any_text_and_the_command_trains(tmp_path, capsys):
    src = write_reviews(tmp_path / "raw")
    args = [str(src), "--name", "tiny", "--out-dir", str(tmp_path / "data"), "--kcore", "0", "--sentences", "3",
            "--progress-every", "0"]
    run_dir = tmp_path / "run"
    assert main(args + ["--train", "--run-out", str(run_dir), "--set", "train.epochs=1",
                        "--set", "model.dim=8", "--set", "model.heads=1",
                        "--set", "eval.ks=[5, 10]"]) == 0
    out = tmp_path / "data" / "tiny"
    chosen = [json.loads(x) for x in (out / "item_sentences.jsonl").read_text().splitlines()]
    counts = [len(c["sentences"]) for c in chosen]
    assert len(chosen) == 12 and max(counts) <= 3 and sum(counts) > 12
    texts = [(out / f).read_text() for f in ("item_sentences.jsonl", "itm_prf.jsonl", "usr_prf.jsonl")]
    assert all("secret" not in t.lower() for t in texts)
    # every chosen sentence is a training sentence of that item, and its item's title leads its text
    item = pickle.load(open(out / "itm_prf.pkl", "rb"))
    assert all(item[c["iid"]]["profile"].endswith(" ".join(c["sentences"])) for c in chosen)
    emb = pickle.load(open(out / "itm_emb_np.pkl", "rb"))
    assert emb.shape == (12, 384) and np.isfinite(emb).all()
    results = json.loads((run_dir / "results.json").read_text())
    assert "ndcg@10" in results["test"]
    err = capsys.readouterr().err
    assert "sentence embeddings:" in err and "MMR over items: 12/12 (100%)" in err
    saved = json.loads((out / "rerec.json").read_text())
    assert saved["selection"]["sentences"] == 3 and saved["stats"]["training_reviews"] == 24

    # the same command again: nothing prepared or embedded again; a damaged cache chunk is re-embedded
    chunks = sorted((out / "rerec_cache" / "sentences").glob("*.npy"))
    assert chunks
    before = {c: c.stat().st_mtime_ns for c in chunks}
    assert main(args) == 0
    assert {c: c.stat().st_mtime_ns for c in chunks} == before
    assert "prepared already" in capsys.readouterr().out
    chunks[0].write_bytes(b"not numpy")
    assert main(args) == 0
    assert [json.loads(x) for x in (out / "item_sentences.jsonl").read_text().splitlines()] == chosen

    # metadata only (LLM-ESR's text): no sentences file, the profiles are the metadata
    assert main(args + ["--sentences", "0"]) == 0
    assert not (out / "item_sentences.jsonl").exists()
    assert "Reviewers say" not in (out / "itm_prf.jsonl").read_text()


@pytest.mark.parametrize("extra,message", [
    (["--sentences", "-1"], "sentences must be >= 0"),
    (["--mmr-lambda", "1.5"], "mmr_lambda must be in [0, 1]"),
    (["--config", "CFG"], "unknown review-selection setting(s) lambda; valid: sentences, mmr_lambda"),
])
def test_bad_settings_exit_2_naming_them(tmp_path, capsys, extra, message):
    src = write_reviews(tmp_path / "raw")
    (tmp_path / "cfg.yaml").write_text("lambda: 0.5\n")
    extra = [str(tmp_path / "cfg.yaml") if x == "CFG" else x for x in extra]
    assert main([str(src), "--name", "t", "--out-dir", str(tmp_path), *extra]) == 2
    assert message in capsys.readouterr().err


def test_reviews_without_text_or_a_missing_file_exit_2(tmp_path, capsys):
    folder = tmp_path / "raw"
    folder.mkdir()
    with gzip.open(folder / "Empty_5.json.gz", "wt") as f:
        for u in range(3):
            for i in range(3):
                f.write(json.dumps({"reviewerID": f"U{u}", "asin": f"A{i}", "overall": 4.0,
                                    "unixReviewTime": 1000 + u * 10 + i}) + "\n")
    assert main([str(folder), "--name", "t", "--out-dir", str(tmp_path), "--kcore", "0"]) == 2
    assert "no review text found" in capsys.readouterr().err
    assert main([str(tmp_path / "absent"), "--name", "t2", "--out-dir", str(tmp_path)]) == 2
    assert "no such file or folder" in capsys.readouterr().err
