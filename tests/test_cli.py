"""The command line: one-epoch runs, run directory contents, exit codes, kill and resume."""
import json
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from helpers import ONE_THREAD, random_splits, shared_path, wait_for_lines, write_dataset
from semrec.encoder.registry import available_models
from semrec.encoder.train_encoder import main

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "encoder" / "train_encoder.py"


@pytest.mark.parametrize("name", available_models())
def test_one_epoch_run_writes_results(name, tiny_dir, tmp_path, capsys):
    out = tmp_path / "run"
    extra = ["--set", "model.negatives=8"] if name.startswith("gsasrec") else []
    if name == "llmesr":  # its ID view starts from the PCA of the tiny 16-wide item embeddings
        extra = ["--set", "model.dim=16"]
    if name == "sear":  # its output rows start from the PCA of the 16-wide item embeddings, 2 x dim wide
        extra = ["--set", "model.dim=8", "--set", "model.heads=2"]
    code = main(["--model", name, "--dataset", "tiny", "--data-dir", str(tiny_dir), "--out", str(out),
                 "--device", "cpu", "--set", "train.epochs=1", "--set", "eval.ks=[5,10,20]",
                 "--set", "eval.metrics=[recall,ndcg,precision,mrr,hit]", "--quiet", *extra])
    assert code == 0
    res = json.loads((out / "results.json").read_text())
    assert res["best_epoch"] == 0 and res["model"] == name
    accuracy = {f"{m}@{k}" for m in ["recall", "ndcg", "precision", "mrr", "hit"] for k in (5, 10, 20)}
    beyond = {f"{m}@{k}" for m in ["coverage", "gini", "avg_pop", "novelty", "tail_share", "ild"] for k in (5, 10, 20)}
    for split in ("valid", "test"):
        overall = {key for key in res[split] if "/" not in key}
        assert accuracy <= overall and overall - accuracy <= beyond and "coverage@10" in overall
        assert all(0.0 <= res[split][k] <= 1.0 for k in accuracy | {"coverage@10", "gini@10", "tail_share@10"})
    assert len(res["timing"]["train_epoch_seconds"]) == 1 and len(res["timing"]["eval_seconds"]) == 1
    saved = yaml.safe_load((out / "config.yaml").read_text())["config"]
    assert saved["model_name"] == name and saved["train"]["epochs"] == 1
    assert "resolved config" in (out / "log.txt").read_text()
    assert "best epoch 0" in capsys.readouterr().out


def test_list_models_by_family(capsys):
    assert main(["--list-models"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [ln for ln in out if not ln.startswith(" ")] == ["baselines:", "graph:", "sequential:", "aligned (RLMRec):"]
    listed = [ln.split()[0] for ln in out if ln.startswith("  ")]
    assert sorted(listed) == available_models()  # every name once, each on its own line
    assert any(ln.split() [:2] == ["sasrec", "SASRec:"] for ln in out)
    assert "  lightgcn_plus  " in "\n".join(out) and "lightgcn with contrastive alignment" in "\n".join(out)


@pytest.mark.parametrize("argv, message", [
    (["--model", "lightgcnn", "--dataset", "tiny"], "unknown model 'lightgcnn'; valid models: autocf, autocf_gene, autocf_plus, bert4rec, bert4rec_gene, bert4rec_plus, bpr, dccf"),
    (["--model", "lightgcn", "--dataset", "tiny", "--set", "train.lrr=1"], "valid keys in 'train'"),
    (["--model", "lightgcn"], "--model and --dataset are required"),
    (["--model", "lightgcn", "--dataset", "tiny", "--device", "tpu"], "unknown device 'tpu'"),
    (["--model", "lightgcn", "--dataset", "tiny", "--set", "train.stop_metric=recall@50"],
     "train.stop_metric 'recall@50' is not computed"),
])
def test_bad_input_exits_with_one_line(argv, message, tiny_dir, tmp_path, capsys):
    code = main(argv + ["--data-dir", str(tiny_dir), "--out", str(tmp_path / "r"), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert message in err[-1] and err[-1].startswith("semrec-train: error:")


def test_bad_dataset_exits_with_the_file_name(tmp_path, capsys):
    trn, val, tst = random_splits()
    folder = write_dataset(tmp_path / "d", [trn, val, tst], item_emb=np.ones((3, 4)))
    code = main(["--model", "lightgcn", "--dataset", "d", "--data-dir", str(folder), "--out", str(tmp_path / "r")])
    assert code == 2 and "itm_emb_np.pkl: expected 40 rows" in capsys.readouterr().err


def test_nan_loss_stops_with_a_message(tiny_dir, tmp_path, capsys):
    code = main(["--model", "lightgcn", "--dataset", "tiny", "--data-dir", str(tiny_dir),
                 "--out", str(tmp_path / "r"), "--set", "train.lr=1e30", "--set", "train.epochs=5", "--quiet"])
    err = capsys.readouterr().err
    assert code == 3 and "loss became nan" in err and "lower train.lr" in err


def _run_args(data_dir, out):
    return ["--model", "lightgcn", "--dataset", "demo", "--data-dir", str(data_dir), "--out", str(out),
            "--device", "cpu", "--set", "train.epochs=24", "--set", "train.batch_size=64",
            "--set", "train.test_step=2", "--set", "train.patience=100", "--quiet"]


def test_killed_run_resumes_to_the_same_result(tmp_path):
    from semrec.common.demo import make_demo

    data_dir = make_demo(tmp_path / "demo")
    killed = tmp_path / "killed"
    env = ONE_THREAD  # the losses are compared with a run straight through
    proc = subprocess.Popen([sys.executable, str(SCRIPT), *_run_args(data_dir, killed)], env=env)
    wait_for_lines(proc, killed / "history.jsonl", 7)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "results.json").exists() and (killed / "checkpoint.pt").exists()
    done = subprocess.run([sys.executable, str(SCRIPT), "--resume", str(killed), "--quiet"], capture_output=True,
                          text=True, env=env)
    assert done.returncode == 0, done.stderr

    straight = tmp_path / "straight"
    done = subprocess.run([sys.executable, str(SCRIPT), *_run_args(data_dir, straight)], capture_output=True,
                          text=True, env=env)
    assert done.returncode == 0, done.stderr
    a = json.loads((killed / "results.json").read_text())
    b = json.loads((straight / "results.json").read_text())
    assert a["test"] == b["test"] and a["valid"] == b["valid"] and a["best_epoch"] == b["best_epoch"]
    lines = lambda p: [json.loads(x) for x in (p / "history.jsonl").read_text().splitlines()]
    ha, hb = lines(killed), lines(straight)
    assert [h["epoch"] for h in ha] == list(range(24))
    assert [h["loss"] for h in ha] == [h["loss"] for h in hb]


def test_resume_needs_a_run_directory(tmp_path, capsys):
    assert main(["--resume", str(tmp_path)]) == 2
    assert "not a run directory" in capsys.readouterr().err


def test_script_and_console_entry_point(tiny_dir, tmp_path):
    r = subprocess.run([sys.executable, str(SCRIPT), "--list-models"], capture_output=True, text=True)
    assert r.returncode == 0 and "lightgcn" in r.stdout.split()
    r = subprocess.run(["semrec-train", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "--resume" in r.stdout


def test_shared_yelp_short_run(tmp_path):
    """Two epochs of LightGCN on RLMRec's Yelp split already rank far better than chance."""
    data = shared_path("rlmrec_yelp")
    out = tmp_path / "yelp"
    assert main(["--model", "lightgcn", "--dataset", "yelp", "--data-dir", str(data), "--out", str(out),
                 "--set", "train.epochs=2", "--set", "train.test_step=1", "--quiet"]) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["data"]["users"] == 11091 and res["data"]["train"] == 166620
    assert res["test"]["recall@20"] > 0.07  # random ranking gives about 0.002


def test_installed_package_imports_from_anywhere_without_generic_names(tmp_path):
    probe = ("import importlib.util, semrec.encoder.models, semrec.data.prepare, semrec.generation; "
             "print([importlib.util.find_spec(n) is None for n in ('encoder', 'data', 'generation', 'configs')])")
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[True, True, True, True]"


# ----- what a hostile user tried (issue 21) ---------------------------------------------------
def _corrupt_coo_dataset(folder: Path) -> Path:
    trn, val, tst = random_splits()
    tst.coords = (tst.coords[0] + 10**6, tst.coords[1])  # past scipy's checks: its C++ code would write out of bounds
    return write_dataset(folder, [trn, val, tst])


def test_corrupt_sparse_pickle_exits_2_instead_of_crashing(tmp_path):
    folder = _corrupt_coo_dataset(tmp_path / "bad")
    train = subprocess.run([sys.executable, str(SCRIPT), "--model", "lightgcn", "--dataset", "bad", "--data-dir",
                            str(folder), "--out", str(tmp_path / "run")], capture_output=True, text=True)
    prepare = subprocess.run([sys.executable, str(REPO / "data" / "prepare.py"), "rlmrec", str(folder), "--name",
                              "bad", "--out", str(tmp_path / "copy")], capture_output=True, text=True)
    for r in (train, prepare):
        assert r.returncode == 2, r.stderr
        assert "tst_mat.pkl: a corrupt sparse matrix: its row indices hold values outside [0, 30)" in r.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("name", ["../../etc", "a/b", "..", "/abs", ""])
def test_dataset_must_be_a_name_and_nothing_is_written(name, tiny_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = main(["--model", "lightgcn", "--dataset", name, "--data-dir", str(tiny_dir), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and ("is not a plain name" in err or "are required" in err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny"]


def test_nothing_is_written_before_the_data_is_valid(tmp_path, capsys):
    folder = write_dataset(tmp_path / "d", item_emb=np.ones((3, 4)))
    assert main(["--model", "lightgcn", "--dataset", "d", "--data-dir", str(folder), "--out",
                 str(tmp_path / "run"), "--quiet"]) == 2
    assert not (tmp_path / "run").exists()


def test_a_run_folder_in_use_is_refused(tmp_path):
    from semrec.common.demo import make_demo
    from semrec.common.io import exclusive

    data_dir = make_demo(tmp_path / "demo")
    out = tmp_path / "shared-out"
    long_run = [a.replace("train.epochs=24", "train.epochs=5000") for a in _run_args(data_dir, out)]
    first = subprocess.Popen([sys.executable, str(SCRIPT), *long_run], env=ONE_THREAD)  # still running below
    try:
        wait_for_lines(first, out / "history.jsonl", 1)
        second = subprocess.run([sys.executable, str(SCRIPT), *_run_args(data_dir, out)], capture_output=True,
                                text=True, env=ONE_THREAD)
        assert second.returncode == 2
        assert f"{out} is in use by another semrec-train process" in second.stderr
        resumed = subprocess.run([sys.executable, str(SCRIPT), "--resume", str(out)], capture_output=True, text=True,
                                 env=ONE_THREAD)
        assert resumed.returncode == 2 and "is in use" in resumed.stderr
        assert first.poll() is None, "the first run ended before the checks; they did not test a busy folder"
    finally:
        first.kill()
        first.wait()
    history = [json.loads(x) for x in (out / "history.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == list(range(len(history)))  # one writer, no interleaving
    with exclusive(out / ".lock", "still locked"):  # a killed run leaves no stale lock
        pass


def test_a_finished_run_folder_is_not_overwritten(tiny_dir, tmp_path, capsys):
    args = ["--model", "lightgcn", "--dataset", "tiny", "--data-dir", str(tiny_dir), "--out", str(tmp_path / "r"),
            "--set", "train.epochs=1", "--quiet"]
    assert main(args) == 0
    before = (tmp_path / "r" / "results.json").read_text()
    assert main(args) == 2
    assert "already holds a run; continue it with --resume" in capsys.readouterr().err
    assert (tmp_path / "r" / "results.json").read_text() == before


@pytest.fixture
def finished_run(tiny_dir, tmp_path):
    out = tmp_path / "done"
    assert main(["--model", "lightgcn", "--dataset", "tiny", "--data-dir", str(tiny_dir), "--out", str(out),
                 "--set", "train.epochs=2", "--set", "train.test_step=1", "--quiet"]) == 0
    return out


@pytest.mark.parametrize("damage, message", [
    (lambda d: (d / "checkpoint.pt").write_bytes(b"PK\x03\x04 not a zip"), "checkpoint.pt: not a readable semrec checkpoint"),
    (lambda d: __import__("torch").save({"evil": Exploit()}, d / "checkpoint.pt"),
     "checkpoint.pt: not a readable semrec checkpoint (it holds objects a checkpoint never does"),
    (lambda d: __import__("torch").save({"model": {}}, d / "checkpoint.pt"),
     "checkpoint.pt: does not match this run's model and config"),
    (lambda d: (d / "config.yaml").write_text("config: [unclosed"), "config.yaml: not valid YAML"),
    (lambda d: (d / "config.yaml").write_text("just a string"), "config.yaml: not a semrec run configuration"),
    (lambda d: (d / "config.yaml").write_text(
        (d / "config.yaml").read_text().replace("lr: 0.001", "lrr: 0.001")), "config.yaml: saved config: train.lrr"),
])
def test_resume_from_bad_files_names_the_file(finished_run, damage, message, capsys):
    damage(finished_run)
    code = main(["--resume", str(finished_run)])
    err = capsys.readouterr().err
    assert code == 2 and message in err, err
    assert "weights_only" not in err and "Traceback" not in err


def test_resume_refuses_settings_and_out_must_be_a_folder(finished_run, tiny_dir, tmp_path, capsys):
    assert main(["--resume", str(finished_run), "--set", "train.lr=0.1"]) == 2
    assert "--set cannot change it" in capsys.readouterr().err
    (tmp_path / "file").write_text("x")
    assert main(["--model", "lightgcn", "--dataset", "tiny", "--data-dir", str(tiny_dir), "--out",
                 str(tmp_path / "file")]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err


@pytest.mark.parametrize("setting, message", [
    ("model.dim=0", "model.dim: 0 is out of range; valid values: [1, inf)"),
    ("model.layers=-1", "model.layers: -1 is out of range; valid values: [0, inf)"),
    ("model.keep_rate=1.5", "model.keep_rate: 1.5 is out of range; valid values: (0, 1]"),
    ("train.lr=0", "train.lr: 0.0 is out of range; valid values: (0, inf)"),
    ("train.batch_size=0", "train.batch_size: 0 is out of range"),
    ("eval.ks=[5,-1]", "eval.ks[1]: -1 is out of range"),
    ("eval.ks=[100000]", "eval.ks [100000]: every cut-off must lie in [1, 40]"),
    # alignment ranges, checked when the config is read
    ("align.sem_dim=-1", "align.sem_dim: -1 is out of range; valid values: [0, inf)"),
    ("align.kd_temperature=0", "align.kd_temperature: 0.0 is out of range; valid values: (0, inf)"),
    ("align.user_negatives=some", "align.user_negatives: 'some' is not a valid choice; valid values: all, batch"),
    ("align.mask_ratio=1", "align.mask_ratio: 1.0 is out of range; valid values: (0, 1)"),
])
def test_impossible_hyperparameters_are_refused(setting, message, tiny_dir, tmp_path, capsys):
    model = "sasrec_gene" if "mask_ratio" in setting else "sasrec_plus" if setting.startswith("align") else "lightgcn"
    code = main(["--model", model, "--dataset", "tiny", "--data-dir", str(tiny_dir), "--out",
                 str(tmp_path / "r"), "--set", setting, "--quiet"])
    assert code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


class Exploit:
    def __reduce__(self):
        import os

        return os.system, ("echo pwned > /dev/null",)


