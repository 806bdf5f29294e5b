"""Results a reviewer trusts: beyond-accuracy measures on hand cases, the paired tests against
scipy.stats and hand formulas, Holm's correction, and semrec-compare on saved runs."""
import json
import math

import numpy as np
import pytest
import torch
from scipy import stats

from semrec.encoder.beyond import ListStats, gini
from semrec.encoder.compare import bootstrap_ci, compare, holm, main as compare_main
from semrec.encoder.train_encoder import main as train


def test_beyond_accuracy_on_a_hand_case():
    # 4 items; popularity 5, 3, 1, 0; users 10; head = item 0 only
    pop = np.array([5.0, 3.0, 1.0, 0.0])
    vectors = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [1.0, 0.0]])
    s = ListStats(pop, pop, 10, np.array([True, False, False, False]), [2], 3, vectors)
    # two users: lists (0, 1) and (0, 2); a third whose second slot is not a real item (added first,
    # as another rank would: slots, not order, decide)
    s.add(2, torch.tensor([[3, 1]]), torch.tensor([[True, False]]))
    s.add(0, torch.tensor([[0, 1], [0, 2]]), torch.tensor([[True, True], [True, True]]))
    r = s.result()
    assert r["coverage@2"] == pytest.approx(4 / 4)
    assert r["avg_pop@2"] == pytest.approx(((5 + 3) / 2 + (5 + 1) / 2 + 0 / 1) / 3)
    info = -np.log2(np.maximum(pop, 1) / 10)
    assert r["novelty@2"] == pytest.approx(((info[0] + info[1]) / 2 + (info[0] + info[2]) / 2 + info[3]) / 3)
    assert r["tail_share@2"] == pytest.approx((1 / 2 + 1 / 2 + 1) / 3)
    # exposure 2, 1, 1, 1 -> RecBole's Gini over the sorted counts 1, 1, 1, 2
    assert r["gini@2"] == pytest.approx(((2 * 1 - 5) * 1 + (2 * 2 - 5) * 1 + (2 * 3 - 5) * 1 + (2 * 4 - 5) * 2) / (4 * 5))
    # ILD: 1 - cos over each list with two real items: (0,1) orthogonal -> 1; (0,2) -> 1 - 1/sqrt(2)
    assert r["ild@2"] == pytest.approx((1 + (1 - 1 / math.sqrt(2))) / 2)
    assert gini([3, 3, 3]) == 0.0 and gini([0, 0, 9]) == pytest.approx(2 / 3)


def test_paired_tests_match_scipy_and_the_formula_and_holm_by_hand(tmp_path):
    rng = np.random.default_rng(0)
    b = rng.random(200)
    v = b + rng.normal(0.02, 0.1, 200)
    d = v - b
    t_hand = d.mean() / (d.std(ddof=1) / math.sqrt(len(d)))
    p_hand = 2 * stats.t.sf(abs(t_hand), len(d) - 1)
    users = np.arange(200)
    for name, values in (("base", b), ("var", v)):
        (tmp_path / name).mkdir()
        perm = rng.permutation(200)  # stored in another order: matched by user id
        np.savez_compressed(tmp_path / name / "per_user.npz", **{"test/users": users[perm], "test/ndcg@10": values[perm]})
    c = compare([tmp_path / "base"], {"var": [tmp_path / "var"]}, "ndcg@10", draws=2000)[0]
    assert c.t_stat == pytest.approx(t_hand) and c.t_p == pytest.approx(p_hand)
    assert c.t_p == pytest.approx(stats.ttest_rel(v, b).pvalue)
    assert c.wilcoxon_p == pytest.approx(stats.wilcoxon(v, b).pvalue)
    assert c.diff == pytest.approx(d.mean()) and c.ci_low < d.mean() < c.ci_high
    assert c.t_p_holm == c.t_p  # one comparison: nothing to correct
    # Holm, by hand: sorted 0.01, 0.03, 0.04 -> 3 x 0.01, max(0.03, 2 x 0.03), max(0.06, 1 x 0.04)
    assert holm([0.04, 0.01, 0.03]) == pytest.approx([0.06, 0.03, 0.06])
    # the interval narrows with more users, and a constant difference has no width
    wide = bootstrap_ci(d[:20], 2000)
    narrow = bootstrap_ci(d, 2000)
    assert narrow[1] - narrow[0] < wide[1] - wide[0]
    assert bootstrap_ci(np.full(50, 0.3), 500) == pytest.approx((0.3, 0.3))


def test_runs_save_per_user_metrics_and_beyond_accuracy_and_compare_reads_them(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SEMREC_HOME", str(tmp_path))
    for name, extra in (("pop", []), ("ease", []), ("gccf", ["--set", "train.epochs=2"])):
        assert train(["--model", name, "--dataset", "demo", "--out", str(tmp_path / name), "--quiet", *extra]) == 0
    res = json.loads((tmp_path / "gccf" / "results.json").read_text())
    for key in ("coverage@20", "gini@20", "avg_pop@20", "novelty@20", "tail_share@20", "ild@20"):
        assert key in res["test"]
    pop = json.loads((tmp_path / "pop" / "results.json").read_text())["test"]
    assert pop["coverage@10"] < res["test"]["coverage@10"] and pop["gini@10"] > res["test"]["gini@10"]
    assert res["loss"] == "bpr + reg" and "loss: bpr + reg" in capsys.readouterr().out
    with np.load(tmp_path / "gccf" / "per_user.npz") as z:
        assert z["test/ndcg@20"].mean() == pytest.approx(res["test"]["ndcg@20"])
    assert compare_main([str(tmp_path / "pop"), str(tmp_path / "ease"), str(tmp_path / "gccf"), "--metric",
                         "recall@20", "--json", str(tmp_path / "c.json"), "--bootstrap", "500"]) == 0
    out = capsys.readouterr().out
    assert "| ease * |" in out  # EASE beats popularity, significantly
    saved = json.loads((tmp_path / "c.json").read_text())
    assert [c["variant"] for c in saved["comparisons"]] == ["ease", "gccf"]
    assert compare_main([str(tmp_path / "pop"), str(tmp_path / "ease"), "--metric", "hit@3"]) == 2
    assert "no 'hit@3' on test; it has" in capsys.readouterr().err
    assert compare_main([str(tmp_path / "pop")]) == 2
    # --evaluate under other settings writes each user's metrics too; --per-user compares those
    assert train(["--evaluate", str(tmp_path / "gccf"), "--set", "eval.exclude=none", "--quiet"]) == 0
    assert train(["--evaluate", str(tmp_path / "ease"), "--set", "eval.exclude=none", "--quiet"]) == 0
    other = json.loads((tmp_path / "gccf" / "eval-full-none.json").read_text())["test"]
    with np.load(tmp_path / "gccf" / "per_user-full-none.npz") as z:
        assert z["test/ndcg@20"].mean() == pytest.approx(other["ndcg@20"]) and other["ndcg@20"] != res["test"]["ndcg@20"]
    capsys.readouterr()
    assert compare_main([str(tmp_path / "ease"), str(tmp_path / "gccf"), "--per-user", "per_user-full-none.npz",
                         "--metric", "ndcg@20", "--bootstrap", "500"]) == 0
    assert f"| {other['ndcg@20']:.4f} |" in capsys.readouterr().out
    assert compare_main([str(tmp_path / "pop"), str(tmp_path / "gccf"), "--per-user", "per_user-full-none.npz"]) == 2
    assert "pop/per_user-full-none.npz: no per-user metrics" in capsys.readouterr().err
    # the files --evaluate wrote are the run's: a new run into the folder is told to --resume it
    assert train(["--model", "gccf", "--dataset", "demo", "--out", str(tmp_path / "gccf"), "--quiet"]) != 0
    assert "already holds a run; continue it with --resume" in capsys.readouterr().err
