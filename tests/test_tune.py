"""semrec-tune: a 3-trial study on the demo, killed after its first trial and resumed; the space is checked."""
import os
import signal
import subprocess
import sys
import time

import pytest

from semrec.encoder.tune import main as tune

optuna = pytest.importorskip("optuna", reason="semrec-tune needs Optuna (semrec[tune])")


def _processes_with(text):
    """Pids of the live processes whose command line holds ``text`` (Linux /proc)."""
    found = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                cmd = open(f"/proc/{d}/cmdline", "rb").read().decode(errors="replace")
                state = open(f"/proc/{d}/stat").read().split(") ", 1)[1][0]
            except OSError:
                continue
            if text in cmd and state != "Z":
                found.append(int(d))
    return found


def _complete(study_dir):
    if not (study_dir / "study.db").exists():
        return 0
    try:
        study = optuna.load_study(study_name="semrec", storage=f"sqlite:///{study_dir / 'study.db'}")
    except KeyError:  # the study is being created
        return 0
    return sum(t.state == optuna.trial.TrialState.COMPLETE for t in study.get_trials(deepcopy=False))


def test_a_study_killed_after_a_trial_resumes_to_its_count(tmp_path):
    (tmp_path / "space.yaml").write_text("train.lr: {float: [1.0e-3, 2.0e-2], log: true}\nmodel.layers: {int: [1, 3]}\n")
    study_dir = tmp_path / "study"
    cmd = [sys.executable, "-m", "semrec.encoder.tune", "--model", "lightgcn", "--dataset", "demo", "--space",
           str(tmp_path / "space.yaml"), "--trials", "3", "--study-dir", str(study_dir), "--no-prune",
           "--set", "train.epochs=4"]
    env = {**os.environ, "SEMREC_HOME": str(tmp_path), "OMP_NUM_THREADS": "1"}
    log = open(tmp_path / "first.log", "w")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + 300
    while _complete(study_dir) < 1 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.5)
    assert _complete(study_dir) >= 1, (tmp_path / "first.log").read_text()[-3000:]
    proc.send_signal(signal.SIGKILL)  # mid-study: the next trial is running
    proc.wait()
    deadline = time.time() + 60  # and the trial's own process ends with the study
    while _processes_with(str(study_dir)) and time.time() < deadline:
        time.sleep(0.5)
    assert not _processes_with(str(study_dir))
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert _complete(study_dir) == 3
    study = optuna.load_study(study_name="semrec", storage=f"sqlite:///{study_dir / 'study.db'}")
    assert not [t for t in study.get_trials() if t.state == optuna.trial.TrialState.RUNNING]
    best = (study_dir / "best.yaml").read_text()
    assert f"valid recall@20 {study.best_value:.4f}" in best and "model:\n  layers:" in best
    assert done.stdout.count("| complete |") == 3


@pytest.mark.parametrize("space,message", [
    ("lr: {float: [0.1, 0.2]}\n", "keys are section.name"),
    ("train.lr: {uniform: [0.1, 0.2]}\n", "give one of float, int, choice"),
    ("train.lr: {float: [0.2, 0.1]}\n", "float needs [low, high] with low < high"),
    ("train.lr: {float: [0.1, 0.2], logg: true}\n", "unknown option(s) logg"),
    ("model.nope: {int: [1, 2]}\n", "model.nope"),
])
def test_a_bad_space_exits_2_naming_it(tmp_path, capsys, space, message):
    (tmp_path / "s.yaml").write_text(space)
    assert tune(["--model", "lightgcn", "--dataset", "demo", "--space", str(tmp_path / "s.yaml"), "--trials", "1",
                 "--study-dir", str(tmp_path / "st")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "st").exists()
