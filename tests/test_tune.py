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


def test_the_grid_sampler_runs_each_point_with_every_seed_and_reruns_a_point_a_kill_cut_short(tmp_path, monkeypatch,
                                                                                                  capsys):
    """``--sampler grid``: every combination once, each trial the mean of its seeds' runs; a trial
    left running by a killed study (made here through Optuna's own API) is failed and its point
    queued again, so the grid still ends with every point complete."""
    monkeypatch.setenv("SEMREC_HOME", str(tmp_path))
    (tmp_path / "space.yaml").write_text("model.layers: {choice: [1, 2]}\n")
    study_dir = tmp_path / "study"
    study_dir.mkdir()
    study = optuna.create_study(study_name="semrec", storage=f"sqlite:///{study_dir / 'study.db'}",
                                direction="maximize",
                                sampler=optuna.samplers.GridSampler({"model.layers": [1, 2]}, seed=2023))
    cut = study.ask()
    cut_layers = cut.suggest_categorical("model.layers", [1, 2])  # running, as a kill leaves it
    assert tune(["--model", "lightgcn", "--dataset", "demo", "--space", str(tmp_path / "space.yaml"),
                 "--sampler", "grid", "--seeds", "1", "2", "--study-dir", str(study_dir), "--no-prune",
                 "--set", "train.epochs=2"]) == 0
    out = capsys.readouterr().out
    study = optuna.load_study(study_name="semrec", storage=f"sqlite:///{study_dir / 'study.db'}")
    states = {t.number: t.state.name for t in study.get_trials()}
    assert states[cut.number] == "FAIL"
    complete = [t for t in study.get_trials() if t.state == optuna.trial.TrialState.COMPLETE]
    assert sorted(t.params["model.layers"] for t in complete) == [1, 2]  # the cut point ran again
    assert cut_layers in [t.params["model.layers"] for t in complete]
    import json

    for t in complete:  # the trial's value: the mean of its two seeds' validation recall@20
        runs = [json.loads((study_dir / "trials" / f"{t.number:04d}" / f"seed-{s}" / "results.json").read_text())
                for s in (1, 2)]
        assert [r["seed"] for r in runs] == [1, 2]
        assert t.value == pytest.approx((runs[0]["valid"]["recall@20"] + runs[1]["valid"]["recall@20"]) / 2)
    assert out.count("| complete |") == 2 and "best: trial" in out
    # the same command again: the grid is done, nothing runs
    assert tune(["--model", "lightgcn", "--dataset", "demo", "--space", str(tmp_path / "space.yaml"),
                 "--sampler", "grid", "--seeds", "1", "2", "--study-dir", str(study_dir), "--no-prune",
                 "--set", "train.epochs=2"]) == 0
    assert "trial(s) to run" not in capsys.readouterr().out
    assert len(optuna.load_study(study_name="semrec", storage=f"sqlite:///{study_dir / 'study.db'}").trials) == 3


def test_the_grid_sampler_needs_choice_lists_and_a_metric_that_is_computed(tmp_path, capsys):
    (tmp_path / "s.yaml").write_text("train.lr: {float: [0.001, 0.01]}\n")
    assert tune(["--model", "lightgcn", "--dataset", "demo", "--space", str(tmp_path / "s.yaml"), "--sampler", "grid",
                 "--study-dir", str(tmp_path / "st")]) == 2
    assert "--sampler grid needs every setting as a choice list; not: train.lr" in capsys.readouterr().err
    (tmp_path / "c.yaml").write_text("train.lr: {choice: [0.001]}\n")
    assert tune(["--model", "lightgcn", "--dataset", "demo", "--space", str(tmp_path / "c.yaml"), "--sampler", "grid",
                 "--metric", "recall@7", "--study-dir", str(tmp_path / "st")]) == 2
    assert "--metric 'recall@7' is not computed" in capsys.readouterr().err
    assert tune(["--model", "lightgcn", "--dataset", "demo", "--space", str(tmp_path / "c.yaml"),
                 "--study-dir", str(tmp_path / "st")]) == 2
    assert "--trials is required with the tpe sampler" in capsys.readouterr().err
