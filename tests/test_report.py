"""semrec-report on saved runs: the table's values, the PNGs, the HTML page; a missing extra is named."""
import json
import sys

import pytest

from semrec.encoder.report import main as report
from semrec.encoder.train_encoder import main as train

pytest.importorskip("matplotlib", reason="semrec-report's plots need matplotlib (semrec[report])")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    made = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SEMREC_HOME", str(root))  # the demo dataset is made there
        for name, args in (("g1", ["--model", "gccf", "--seed", "1"]), ("g2", ["--model", "gccf", "--seed", "2"]),
                           ("e", ["--model", "ease"])):
            assert train([*args, "--dataset", "demo", "--out", str(root / name), "--set", "train.epochs=3",
                          "--set", "eval.groups=true", "--quiet"]) == 0
            made[name] = root / name
    return root, made


def test_report_table_plots_and_page(runs):
    root, made = runs
    out = root / "rep"
    assert report([str(made["g1"]), str(made["g2"]), str(made["e"]), "--base", str(made["g1"]), str(made["g2"]),
                   "--metric", "recall@20", "--out", str(out)]) == 0
    md = (out / "report.md").read_text()
    rows = [ln for ln in md.split("## ")[0].splitlines() if " / demo (" in ln]  # the runs table
    assert len(rows) == 2  # the two seeds of gccf pooled into one row
    ease = json.loads((made["e"] / "results.json").read_text())
    assert f"{ease['test']['recall@20']:.4f}" in rows[1] and "closed form" in rows[1]
    g = [json.loads((made[k] / "results.json").read_text())["test"]["recall@20"] for k in ("g1", "g2")]
    assert f"{sum(g) / 2:.4f} ± " in rows[0] and "1, 2" in rows[0]
    for png in ("curves.png", "groups.png", "compare.png"):
        data = (out / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000, png
        assert f"<img src='{png}'" in (out / "report.html").read_text()
    assert "t-test p (Holm)" in md


def test_bad_input_and_a_missing_extra_exit_2(runs, tmp_path, capsys, monkeypatch):
    _, made = runs
    assert report([str(tmp_path), "--out", str(tmp_path / "r")]) == 2
    assert "not a finished run" in capsys.readouterr().err
    assert report([str(made["e"]), "--base", str(made["g1"]), "--out", str(tmp_path / "r")]) == 2
    assert "--base: none of those runs is among the runs reported" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert report([str(made["e"]), "--out", str(tmp_path / "r")]) == 2
    assert 'pip install "semrec[report]"' in capsys.readouterr().err


def test_tensorboard_log_has_each_epochs_loss_and_validation(tmp_path, monkeypatch):
    pytest.importorskip("tensorboard", reason="train.log=tensorboard needs tensorboard (semrec[report])")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    monkeypatch.setenv("SEMREC_HOME", str(tmp_path))
    out = tmp_path / "run"
    assert train(["--model", "gccf", "--dataset", "demo", "--out", str(out), "--set", "train.epochs=3",
                  "--set", "train.test_step=1", "--set", "train.log=tensorboard", "--quiet"]) == 0
    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    history = [json.loads(x) for x in (out / "history.jsonl").read_text().splitlines()]
    loss = events.Scalars("train/loss")
    assert [e.step for e in loss] == [0, 1, 2]
    assert [e.value for e in loss] == pytest.approx([h["loss"] for h in history], rel=1e-6)
    assert [e.value for e in events.Scalars("valid/recall@20")] == pytest.approx(
        [h["valid"]["recall@20"] for h in history], rel=1e-6)
