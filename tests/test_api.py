"""The Python API: docs/api.md's worked example runs as written, runs reopen, settings are checked."""
import re
from pathlib import Path

import pytest

import semrec
from semrec.encoder.config import ConfigError

DOC = Path(__file__).resolve().parents[1] / "docs" / "api.md"


def test_the_docs_example_runs(tmp_path, monkeypatch, capsys):
    pytest.importorskip("pandas", reason="the example builds a pandas DataFrame (semrec[test])")
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    example = next(b for b in blocks if "semrec.train(" in b)
    monkeypatch.setenv("SEMREC_HOME", str(tmp_path))
    exec(compile(example, str(DOC), "exec"), {})
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 6 and float(out[0].split()[0]) >= 0 and out[0].split()[1] == "5"
    assert all(line.split()[2] == "Film" for line in out[1:])  # titles, not indices
    run_dir = next((tmp_path / "runs" / "films" / "sasrec").iterdir())
    assert {"config.yaml", "results.json", "history.jsonl", "log.txt"} <= {p.name for p in run_dir.iterdir()}
    assert (tmp_path / "data" / "films" / "trn_mat.pkl").exists()


def test_a_run_reopens_and_saves_and_bad_settings_are_named(tmp_path, monkeypatch):
    monkeypatch.setenv("SEMREC_HOME", str(tmp_path))
    run = semrec.train("gccf", "demo", epochs=1, overrides={"train.lr": 0.002}, layers=1)
    data = semrec.load_dataset("demo")
    assert (data.num_users, data.num_items) == (800, 1000) and data.path == tmp_path / "data" / "demo"
    again = semrec.load_run(run.path)
    assert again.results == run.results and again.config["model"]["layers"] == 1
    assert again.config["train"]["lr"] == 0.002 and len(again.history) == 1
    copy = run.save(tmp_path / "kept")
    assert copy.results == run.results and copy.recommend(["3"], k=2)[0]["user"] == "3"
    with pytest.raises(FileExistsError):
        run.save(tmp_path / "kept")
    with pytest.raises(ConfigError, match="unknown setting 'layer' for gccf; valid: .*layers"):
        semrec.train("gccf", "demo", layer=2)
    with pytest.raises(FileNotFoundError, match="not a run directory"):
        semrec.load_run(tmp_path)


def test_align_check_prints_base_aligned_and_shuffled(tmp_path, monkeypatch, capsys):
    from semrec.encoder.align_check import main

    monkeypatch.setenv("SEMREC_HOME", str(tmp_path))
    assert main(["--dataset", "demo", "--backbones", "lightgcn", "--seeds", "1", "--set", "train.epochs=1",
                 "--variants", "base", "plus", "plus shuffled", "--workdir", str(tmp_path / "w")]) == 0
    out = capsys.readouterr().out
    rows = [ln for ln in out.splitlines() if ln.startswith("| lightgcn |")]
    assert [r.split("|")[2].strip() for r in rows] == ["base", "plus", "plus shuffled"]
    assert "Real against shuffled tables (test R@20 / N@20): `lightgcn_plus`" in out
    # each change tested over users: the aligned model against the base, the control against the aligned model
    assert "lightgcn: Against `base` (test recall@20, paired over users)" in out
    assert "Against `plus` (test recall@20, paired over users)" in out
    tested = [ln for ln in out.splitlines() if ln.startswith(("| plus", "| plus shuffled"))]
    assert [ln.split("|")[1].strip().rstrip(" *") for ln in tested] == ["plus", "plus shuffled"]
    assert len(list((tmp_path / "w").glob("*/lightgcn*-1/results.json"))) == 3
