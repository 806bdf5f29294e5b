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
    code = main(["--model", name, "--dataset", "tiny", "--data-dir", str(tiny_dir), "--out", str(out),
                 "--device", "cpu", "--set", "train.epochs=1", "--set", "eval.ks=[5,20]", "--quiet"])
    assert code == 0
    res = json.loads((out / "results.json").read_text())
    assert res["best_epoch"] == 0 and res["model"] == name
    for split in ("valid", "test"):
        assert set(res[split]) == {f"{m}@{k}" for m in ["recall", "ndcg", "precision", "mrr", "hit"] for k in (5, 20)}
        assert all(0.0 <= v <= 1.0 for v in res[split].values())
    assert len(res["timing"]["train_epoch_seconds"]) == 1 and len(res["timing"]["eval_seconds"]) == 1
    saved = yaml.safe_load((out / "config.yaml").read_text())["config"]
    assert saved["model_name"] == name and saved["train"]["epochs"] == 1
    assert "resolved config" in (out / "log.txt").read_text()
    assert "best epoch 0" in capsys.readouterr().out


def test_list_models(capsys):
    assert main(["--list-models"]) == 0
    assert capsys.readouterr().out.split() == available_models()


@pytest.mark.parametrize("argv, message", [
    (["--model", "lightgcnn", "--dataset", "tiny"], "unknown model 'lightgcnn'; valid models: autocf, autocf_gene, autocf_plus, dccf"),
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
    from semrec.data.demo import make_demo

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
