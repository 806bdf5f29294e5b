"""Two CPU processes (torchrun, gloo) against one: the same parameters after an epoch, the same
validation metrics, one writer, a killed distributed run resumed to the same numbers, and a rank
that dies ending the job with its name."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
TRAIN = str(REPO / "encoder" / "train_encoder.py")
RUN_FILES = {"config.yaml", "log.txt", "history.jsonl", "checkpoint.pt", "results.json", "per_user.npz", ".lock"}

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is not built in")


def _env(home):
    return {**os.environ, "OMP_NUM_THREADS": "1", "SEMREC_HOME": str(home)}


def one(home, out, *args):
    subprocess.run([sys.executable, TRAIN, "--out", str(out), "--quiet", *args], check=True, env=_env(home),
                   capture_output=True)


def two(home, out, *args, wait=True):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", TRAIN,
           "--out", str(out), "--quiet", *args]
    if not wait:
        return subprocess.Popen(cmd, env=_env(home), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                start_new_session=True)
    done = subprocess.run(cmd, env=_env(home), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def weights(run):
    return torch.load(run / "checkpoint.pt", weights_only=True)["model"]


def history(run):
    return [json.loads(x) for x in (run / "history.jsonl").read_text().splitlines()]


GRAPH = ["--model", "lightgcn", "--dataset", "demo", "--set", "train.batch_size=512", "--set", "train.test_step=1"]


def test_graph_model_two_processes_match_one(tmp_path):
    one(tmp_path, tmp_path / "one", *GRAPH, "--set", "train.epochs=2")
    out = two(tmp_path, tmp_path / "two", *GRAPH, "--set", "train.epochs=2")
    assert out.count("best epoch") == 1  # rank 0 reports
    a, b = weights(tmp_path / "one"), weights(tmp_path / "two")
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-5), k
    for x, y in zip(history(tmp_path / "one"), history(tmp_path / "two")):
        assert x["loss"] == pytest.approx(y["loss"], rel=1e-5)
        assert x["valid"] == pytest.approx(y["valid"], rel=1e-6)
    ra, rb = (json.loads((tmp_path / n / "results.json").read_text()) for n in ("one", "two"))
    assert ra["test"] == pytest.approx(rb["test"], rel=1e-5) and rb["processes"] == 2
    # rank 0 alone wrote: the run's files once, nothing else anywhere in the home folder
    assert {p.name for p in (tmp_path / "two").iterdir()} == RUN_FILES
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "one", "two"]


def test_sequence_model_two_processes_match_one(tmp_path):
    rng = np.random.default_rng(0)
    # equal lengths, so each process's half of a batch scores as many positions as the other's
    lines = [f"{u + 1} " + " ".join(str(int(i) + 1) for i in rng.choice(40, 8, replace=False)) for u in range(64)]
    (tmp_path / "seq.txt").write_text("\n".join(lines) + "\n")
    args = ["--model", "sasrec", "--dataset", "tiny", "--data-dir", str(tmp_path / "seq.txt"), "--set",
            "train.epochs=2", "--set", "train.batch_size=16", "--set", "model.dim=16", "--set", "model.dropout=0",
            "--set", "eval.ks=[5, 10]", "--set", "train.stop_metric=ndcg@10"]
    one(tmp_path, tmp_path / "one", *args)
    two(tmp_path, tmp_path / "two", *args)
    a, b = weights(tmp_path / "one"), weights(tmp_path / "two")
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-5), k
    for x, y in zip(history(tmp_path / "one"), history(tmp_path / "two")):
        assert x["valid"] == pytest.approx(y["valid"], rel=1e-6)


def test_a_killed_distributed_run_resumes_to_the_same_numbers(tmp_path):
    args = [*GRAPH, "--set", "train.epochs=5"]
    two(tmp_path, tmp_path / "whole", *args)
    proc = two(tmp_path, tmp_path / "cut", *args, wait=False)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        hist = tmp_path / "cut" / "history.jsonl"
        if hist.exists() and hist.read_bytes().count(b"\n") >= 2:  # whole lines only: the file is being written
            break
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # the launcher and both ranks
    proc.wait()
    assert not (tmp_path / "cut" / "results.json").exists()
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", TRAIN,
                    "--resume", str(tmp_path / "cut"), "--quiet"], check=True, env=_env(tmp_path),
                   capture_output=True)
    whole, cut = (json.loads((tmp_path / n / "results.json").read_text()) for n in ("whole", "cut"))
    assert cut["test"] == whole["test"] and cut["best_epoch"] == whole["best_epoch"]
    assert [h["loss"] for h in history(tmp_path / "cut")] == [h["loss"] for h in history(tmp_path / "whole")]


def _workers(launcher: int) -> dict[int, int]:
    """``{rank: pid}`` of the processes torchrun started under ``launcher``."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            env = dict(x.split("=", 1) for x in (entry / "environ").read_bytes().decode().split("\0") if "=" in x)
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile, or not ours
        if ppid == launcher and "RANK" in env:
            found[int(env["RANK"])] = int(entry.name)
    return found


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds the ranks through /proc (Linux)")
def test_a_rank_that_dies_ends_the_job_naming_it_and_keeps_the_finished_epochs(tmp_path):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", TRAIN,
           "--out", str(tmp_path / "run"), "--quiet", *GRAPH, "--set", "train.epochs=200"]
    proc = subprocess.Popen(cmd, env=_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        deadline = time.time() + 300
        hist = tmp_path / "run" / "history.jsonl"
        while time.time() < deadline and not (hist.exists() and hist.read_bytes().count(b"\n") >= 1):
            time.sleep(0.2)
        ranks = _workers(proc.pid)
        assert set(ranks) == {0, 1}, ranks
        os.kill(ranks[1], signal.SIGKILL)  # rank 1 dies in the middle of an epoch's collectives
        _, err = proc.communicate(timeout=180)  # the job ends: rank 0 does not wait for it forever
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode != 0
    cause = err.split("Root Cause")[-1]
    assert "rank      : 1" in cause and "SIGKILL" in cause  # torchrun's summary names the rank that died
    # the rank left behind says why in a line (when it sees the loss before torchrun stops it), no traceback
    assert "[rank0]:Traceback" not in err and "[rank1]:Traceback" not in err
    assert "[rank0]:" not in err.replace("[rank0]:[W", "") or "another rank died or stopped answering" in err
    assert not (tmp_path / "run" / "results.json").exists()
    kept = history(tmp_path / "run")
    assert kept and (tmp_path / "run" / "checkpoint.pt").exists()  # the finished epochs are kept: --resume goes on
