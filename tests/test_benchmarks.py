"""The benchmarks' run bookkeeping: kept run folders, finished runs read back, killed runs
resumed, folders of other settings refused, a failed grid point skipped; and the alignment
table pooled from saved runs."""
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import ONE_THREAD, wait_for_lines

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "benchmarks"


def bench(data_dir, workdir, json_file, *settings):
    return [sys.executable, str(BENCH / "bench_graph_cf.py"), "--models", "lightgcn", "--data-dir", str(data_dir),
            "--seeds", "2023", "--workdir", str(workdir), "--json", str(json_file),
            *(x for s in settings for x in ("--set", s))]


def start_on_demo(tmp_path, epochs, history_lines):
    """A benchmark of a LightGCN run on the demo data, started in the background and left
    running once its run has ``history_lines`` epochs. Returns the demo folder, the workdir,
    the settings and the process (its own process group: ``killpg`` stops its child too)."""
    from semrec.common.demo import make_demo

    data = make_demo(tmp_path / "demo")
    settings = [f"train.epochs={epochs}", "train.batch_size=64", "train.test_step=2", "train.patience=100"]
    work = tmp_path / "work"
    proc = subprocess.Popen(bench(data, work, tmp_path / "background.json", *settings), env=ONE_THREAD,
                            start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_lines(proc, work / "lightgcn-2023" / "history.jsonl", history_lines)
    return data, work, settings, proc


def record(json_file):
    (r,) = json.loads(Path(json_file).read_text())["lightgcn"]
    return r


def test_a_finished_run_is_read_back_and_other_settings_are_refused(tiny_dir, tmp_path):
    work = tmp_path / "work"
    first = subprocess.run(bench(tiny_dir, work, tmp_path / "a.json", "train.epochs=3"), capture_output=True,
                           text=True, env=ONE_THREAD)
    assert first.returncode == 0, first.stderr
    results = work / "lightgcn-2023" / "results.json"
    written = results.stat().st_mtime_ns
    again = subprocess.run(bench(tiny_dir, work, tmp_path / "b.json", "train.epochs=3"), capture_output=True,
                           text=True, env=ONE_THREAD)
    assert again.returncode == 0, again.stderr
    assert record(tmp_path / "b.json") == record(tmp_path / "a.json")  # wall time and memory included: no rerun
    assert results.stat().st_mtime_ns == written and "resumed" not in record(tmp_path / "a.json")

    other = subprocess.run(bench(tiny_dir, work, tmp_path / "c.json", "train.epochs=4"), capture_output=True,
                           text=True, env=ONE_THREAD)
    assert other.returncode == 1 and "holds a run made with other settings" in other.stderr
    assert results.stat().st_mtime_ns == written


def test_a_killed_benchmark_resumes_its_run_to_the_same_result(tmp_path):
    data, work, settings, proc = start_on_demo(tmp_path, epochs=24, history_lines=7)
    os.killpg(proc.pid, signal.SIGKILL)  # the benchmark and its training child
    proc.wait()
    assert not (work / "lightgcn-2023" / "results.json").exists()

    done = subprocess.run(bench(data, work, tmp_path / "resumed.json", *settings), capture_output=True, text=True,
                          env=ONE_THREAD)
    assert done.returncode == 0, done.stderr
    straight = subprocess.run(bench(data, tmp_path / "straight", tmp_path / "straight.json", *settings),
                              capture_output=True, text=True, env=ONE_THREAD)
    assert straight.returncode == 0, straight.stderr
    a, b = record(tmp_path / "resumed.json"), record(tmp_path / "straight.json")
    assert a["resumed"] is True and "resumed" not in b
    assert a["epochs"] == b["epochs"] == 24
    assert a["test"] == b["test"] and a["valid"] == b["valid"] and a["best_epoch"] == b["best_epoch"]


def test_a_run_another_command_is_making_is_left_alone(tmp_path):
    data, work, settings, first = start_on_demo(tmp_path, epochs=60, history_lines=3)
    try:
        second = subprocess.run(bench(data, work, tmp_path / "second.json", *settings), capture_output=True,
                                text=True, env=ONE_THREAD)
        assert first.poll() is None  # still training, undisturbed
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    assert second.returncode == 1 and "is in use by another process" in second.stderr
    epochs = [json.loads(x)["epoch"] for x in (work / "lightgcn-2023" / "history.jsonl").read_text().splitlines()]
    assert epochs == list(range(len(epochs)))  # one writer: no epoch trained twice


def test_grid_goes_on_after_a_failed_point(tiny_dir, tmp_path):
    """grid.py is semrec-tune's grid sampler: a point that diverges is reported, the other runs and
    is the best."""
    done = subprocess.run([sys.executable, str(BENCH / "grid.py"), "--model", "lightgcn", "--data-dir", str(tiny_dir),
                           "--grid", "train.lr=1e30,1e-3", "--set", "train.epochs=2", "--workdir", str(tmp_path / "g"),
                           "--jobs", "2"], capture_output=True, text=True, env=ONE_THREAD)
    assert done.returncode == 0, done.stderr
    assert "loss became" in done.stderr  # the diverging point is reported
    rows = [ln for ln in done.stdout.splitlines() if ln.startswith("| ") and ln.split("|")[1].strip().isdigit()]
    assert sorted(r.split("|")[2].strip() for r in rows) == ["complete", "fail"]
    assert "lr: 0.001" in (tmp_path / "g" / "best.yaml").read_text()
    assert "train.lr:\n  choice:\n  - 1.0e+30\n  - 0.001" in (tmp_path / "g" / "space.yaml").read_text()


def test_alignment_table_pools_seeds_and_prints_validation_and_real_against_shuffled(tmp_path):
    def run(seed, recall, ndcg, valid):
        return {"seed": seed, "test": {"recall@20": recall, "ndcg@20": ndcg}, "valid": {"recall@20": valid},
                "epochs": 30 + seed % 10, "train_epoch_s": 0.5}

    # one file per seed, variants in another order than the table's
    (tmp_path / "s2024.json").write_text(json.dumps({"sgl": {
        "plus shuffled": [run(2024, 0.20, 0.30, 0.24)], "plus": [run(2024, 0.231, 0.33, 0.28)],
        "base": [run(2024, 0.22, 0.30, 0.27)]}}))
    (tmp_path / "s2023.json").write_text(json.dumps({"sgl": {
        "base": [run(2023, 0.20, 0.30, 0.25)], "plus": [run(2023, 0.231, 0.33, 0.26)],
        "plus shuffled": [run(2023, 0.20, 0.30, 0.22)]}}))
    done = subprocess.run([sys.executable, str(BENCH / "bench_align.py"), "--from-json", str(tmp_path / "s2024.json"),
                           str(tmp_path / "s2023.json")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("| backbone | variant | R@20 | N@20 | ΔR@20 | ΔN@20 | valid R@20 |")
    # base: test recall (0.20 + 0.22) / 2; plus: 0.231 / 0.21 and 0.33 / 0.30 are +10%
    assert lines[2] == "| sgl | base | 0.2100 ± 0.0141 | 0.3000 ± 0.0000 |  |  | 0.2600 ± 0.0141 |  | 0.50 | 33/34 |"
    assert lines[3] == ("| sgl | plus | 0.2310 ± 0.0000 | 0.3300 ± 0.0000 | +10.0% | +10.0% | 0.2700 ± 0.0141 |  "
                        "| 0.50 | 33/34 |")
    assert lines[4].startswith("| sgl | plus shuffled | 0.2000 ± 0.0000 | 0.3000 ± 0.0000 | -4.8% | +0.0% | 0.2300")
    # real tables against shuffled ones: 0.231 / 0.20 and 0.33 / 0.30
    assert lines[5:7] == ["", "Real against shuffled tables (test R@20 / N@20): `sgl_plus` +15.5% / +10.0%."]
    # records without their run folders: the paired tests are named as not made, not faked
    assert lines[7:] == ["", "sgl: Not tested (a run folder without `per_user.npz`: gone, or made before runs saved "
                             "it): plus against base, plus shuffled against plus."]


def test_gat_benchmark_scores_a_finished_run_by_attribute_coverage(tiny_dir, tmp_path):
    """``bench_gat.by_bucket``: the run's best weights re-scored on the test items of each coverage
    bucket (tiny data: 20 items without attributes, 10 with one, 10 with three)."""
    from semrec.encoder.train_encoder import main

    sys.path.insert(0, str(BENCH))
    try:
        import bench_gat
    finally:
        sys.path.remove(str(BENCH))
    run = tmp_path / "gat"
    assert main(["--model", "gat", "--dataset", "tiny", "--data-dir", str(tiny_dir), "--out", str(run), "--quiet",
                 "--set", "train.epochs=1", "--set", "model.dim=8"]) == 0
    got = bench_gat.by_bucket(str(run), 1, 1)
    assert {b: got[b]["items"] for b in bench_gat.BUCKETS} == {"0": 20, "1-2": 10, "3+": 10}
    assert sum(got[b]["test_pairs"] for b in bench_gat.BUCKETS) == 30  # one test item per user
    for b in bench_gat.BUCKETS:
        if got[b]["test_pairs"]:
            assert 0.0 <= got[b]["recall@20"] <= 1.0
    assert json.loads((run / "bench_buckets.json").read_text()) == got  # kept for the next read


def _tiny_text_folder(workdir: Path) -> Path:
    """A tiny Beauty-shaped folder where ``bench_llm_seq.py`` looks for it: sequences and
    random item and user embeddings (150 items, 72 wide: the PCA start of d 64 needs both, the
    sampled protocol 100 unseen items a user)."""
    import pickle

    import numpy as np

    from helpers import random_sequences, write_sequences

    folder = workdir / "data" / "beauty_text"
    write_sequences(folder, random_sequences(num_users=30, num_items=150), 150)
    rng = np.random.default_rng(0)
    for name, rows in (("itm_emb_np.pkl", 150), ("usr_emb_np.pkl", 30)):
        with open(folder / name, "wb") as f:
            pickle.dump(rng.standard_normal((rows, 72)).astype(np.float32), f)
    return folder


def test_llm_cost_benchmark_times_each_variant_against_its_base(tmp_path):
    """``bench_llm_seq.py cost`` on a tiny folder: one row per variant with its CPU seconds per
    epoch, and the ratio to the variant it is compared with."""
    _tiny_text_folder(tmp_path)
    out = subprocess.run([sys.executable, str(BENCH / "bench_llm_seq.py"), "cost", "--workdir", str(tmp_path),
                          "--variants", "sasrec", "llmesr", "--epochs", "1"],
                         capture_output=True, text=True, env=ONE_THREAD, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    rows = {line.split(" | ")[0].strip("| "): line.strip("|").split(" | ") for line in out.stdout.splitlines()
            if line.startswith("| sasrec") or line.startswith("| llmesr")}
    assert set(rows) == {"sasrec", "llmesr"}
    base, llm = float(rows["sasrec"][1]), float(rows["llmesr"][1])
    assert base > 0 and llm > 0 and rows["llmesr"][2] == "sasrec"
    assert abs(float(rows["llmesr"][3].strip().rstrip("x")) - llm / base) <= 0.01 * llm / base + 0.01
    assert rows["llmesr"][4].strip() == rows["llmesr"][3].strip() and rows["sasrec"][4].strip() == "-"
    assert "Similar users (top 10 by cosine) for all 30 users" in out.stdout


@pytest.mark.parametrize("command", ["accuracy", "cost"])
def test_llm_benchmark_names_the_valid_variants_for_an_unknown_one(tmp_path, command):
    _tiny_text_folder(tmp_path)
    out = subprocess.run([sys.executable, str(BENCH / "bench_llm_seq.py"), command, "--workdir", str(tmp_path),
                          "--variants", "sasrec", "sasrec_wide"], capture_output=True, text=True, timeout=120)
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert "unknown variant(s) ['sasrec_wide']; valid: sasrec, llmesr," in out.stderr


def test_llm_accuracy_benchmark_scores_full_runs_under_the_sampled_protocol_too(tmp_path):
    """``bench_llm_seq.py accuracy`` (protocol ``full``): each finished run's best weights are
    also scored under the sampled protocol (kept in the run folder) and printed as a second table."""
    _tiny_text_folder(tmp_path)
    cmd = [sys.executable, str(BENCH / "bench_llm_seq.py"), "accuracy", "--workdir", str(tmp_path), "--variants",
           "sasrec", "sasrec_pca", "--seeds", "2023", "--set", "train.epochs=2", "--set", "model.dim=8", "--set",
           "model.heads=1"]
    out = subprocess.run(cmd, capture_output=True, text=True, env=ONE_THREAD, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    full, sampled = out.stdout.split("under the sampled protocol")
    sampled, tested = sampled.split("Is each change real?")
    tested, tested_sampled = tested.split("The same test with the sampled protocol's ranking")
    # the change tested over users, from the two runs' per-user metrics, as semrec-compare does
    from semrec.encoder.compare import compare

    runs = tmp_path / "full"
    want = compare([runs / "sasrec" / "sasrec-2023"], {"sasrec_pca": [runs / "sasrec_pca" / "sasrec-2023"]},
                   "ndcg@10")[0]
    line = next(ln for ln in tested.splitlines() if ln.startswith("| sasrec_pca"))
    assert "Against `sasrec` (test ndcg@10, paired over users)" in tested
    assert f"| {want.diff:+.4f} ({100 * want.relative:+.1f}%) |" in line and f"| {want.t_p:.3g} (" in line
    # the same under the sampled protocol, from the per-user file --evaluate wrote beside the run's own
    per = "per_user-sampled-history.npz"
    want = compare([runs / "sasrec" / "sasrec-2023"], {"sasrec_pca": [runs / "sasrec_pca" / "sasrec-2023"]},
                   "ndcg@10", file=per)[0]
    line = next(ln for ln in tested_sampled.splitlines() if ln.startswith("| sasrec_pca"))
    assert f"| {want.diff:+.4f} ({100 * want.relative:+.1f}%) |" in line and f"| {want.t_p:.3g} (" in line
    assert f"{want.variant_mean:.4f}" in line and abs(want.variant_mean - json.loads(
        (runs / "sasrec_pca" / "sasrec-2023" / "bench_eval.protocol-sampled.json").read_text())["test"]["ndcg@10"]) < 1e-9
    row = lambda text: next(line for line in text.splitlines() if line.startswith("| sasrec"))  # noqa: E731
    cache = tmp_path / "full" / "sasrec" / "sasrec-2023" / "bench_eval.protocol-sampled.json"
    kept = json.loads(cache.read_text())
    assert kept["protocol"]["protocol"] == "sampled" and kept["protocol"]["sampled_negatives"] == 100
    assert f"{kept['test']['ndcg@10']:.4f} ± 0.0000" in row(sampled).split(" | ")[2]
    # 150 items, one target among 101 candidates: sampled ranking scores higher than full ranking
    assert kept["test"]["ndcg@10"] > float(row(full).split(" | ")[2].split(" ± ")[0])
    again = subprocess.run(cmd, capture_output=True, text=True, env=ONE_THREAD, timeout=300)
    assert again.returncode == 0 and row(again.stdout.split("under the sampled protocol")[1]) == row(sampled)
    assert row(full).split(" | ")[8] == "cpu"  # the device it trained on
    # weights gone (a run brought back from another machine without them): the full result still counts
    from semrec.encoder.trainer import CHECKPOINT

    cache.unlink()
    (cache.parent / CHECKPOINT).unlink()
    gone = subprocess.run(cmd, capture_output=True, text=True, env=ONE_THREAD, timeout=300)
    assert gone.returncode == 0, gone.stderr[-2000:]
    full_again, sampled_again = gone.stdout.split("under the sampled protocol")
    assert row(full_again) == row(full)
    assert not any(line.startswith("| sasrec |") for line in sampled_again.splitlines())
    assert "Left out of the second table (not evaluated again: the reason is on stderr above, e.g. their weights were gone): sasrec/2023." in sampled_again


@pytest.mark.parametrize("command,extra,names", [
    ("negatives", ["--set", "model.negatives=32"], ["per position", "per sequence"]),
    ("batches", ["--model", "sasrec"], ["plain, one call", "plain, encoded by length", "sorted by length"]),
])
def test_side_by_side_benchmarks_print_every_setting(tmp_path, command, extra, names):
    from helpers import shared_path

    shared_path("s3rec", "LastFM.txt")
    md = tmp_path / "side.md"
    out = subprocess.run([sys.executable, str(BENCH / "bench_seq.py"), command, "--dataset", "lastfm",
                          "--epochs", "1", "--set", "model.dim=16", "--set", "model.layers=1", *extra,
                          "--markdown", str(md), "--json", str(tmp_path / "n.json")],
                         env=ONE_THREAD, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    rows = {line.split("|")[1].split(" (")[0].strip(): line.split("|")[2:] for line in out.stdout.splitlines()
            if line.startswith("| ") and not line.startswith("| setting")}
    assert list(rows) == names
    assert rows[names[0]][1].strip() == "1.00x" and all(float(rows[n][1].strip()[:-1]) > 0 for n in names)
    assert all(0 <= float(rows[n][2].split()[0]) <= 1 for n in names)
    assert f"Command: `python benchmarks/bench_seq.py {command}" in md.read_text()
    saved = json.loads((tmp_path / "n.json").read_text())
    assert list(saved) == names and all(len(saved[n]["epoch_s"]) == 1 for n in names)


def test_scan_benchmark_prints_each_method_against_the_loop():
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_scan.py"), "--batch", "2", "--inner", "4",
                           "--state", "2", "--lengths", "5", "--repeats", "1"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    line = proc.stdout.strip().splitlines()[-1]
    assert line.startswith("L 5: loop ") and "(1.0x)" in line
    assert " parallel " in line and " autograd loop " in line


def test_scale_benchmark_harness_at_a_small_size(tmp_path):
    """bench_scale.py end to end at the CI size (the large sizes are a documented command): both
    process counts measured, a slope per measure, and two processes against one."""
    proc = subprocess.run([sys.executable, str(BENCH / "bench_scale.py"), "--workdir", str(tmp_path), "--sizes", "4000",
                           "8000", "--models", "lightgcn", "--plot", str(tmp_path / "scale.png")],
                          capture_output=True, text=True, env=ONE_THREAD)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "scale.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = [ln for ln in proc.stdout.splitlines() if ln.startswith("| lightgcn |")]
    assert len(rows) == 4 + 2  # 2 sizes x 2 process counts, then one slope row per process count
    slopes = [float(ln.split("|")[3]) for ln in rows[4:]]  # a number each (their values are timings: not tested)
    assert all(s == s for s in slopes)
    assert "Two processes' epoch time against one's: lightgcn:" in proc.stdout


@pytest.mark.parametrize("model", ["lightgcn", "sasrec"])
def test_ddp_wrapper_benchmark_trains_the_same_weights_both_ways(tiny_dir, tmp_path, model):
    """bench_ddp_wrapper.py: semrec's DDP set-up and Accelerate's, two gloo processes each, end with
    the same parameters (the same function and batches), and both epoch times are printed."""
    pytest.importorskip("accelerate")
    proc = subprocess.run([sys.executable, str(BENCH / "bench_ddp_wrapper.py"), "--workdir", str(tmp_path), "--data-dir",
                           str(tiny_dir), "--model", model, "--epochs", "1"],
                          capture_output=True, text=True, env=ONE_THREAD, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = {ln.split("|")[1].strip(): ln for ln in proc.stdout.splitlines() if ln.startswith("| semrec") or
            ln.startswith("| accelerate")}
    assert set(rows) == {"semrec", "accelerate"}
    losses = [float(rows[w].split("|")[3]) for w in ("semrec", "accelerate")]
    assert losses[0] > 0 and abs(losses[0] - losses[1]) <= 1e-5 * losses[0]
    diff = float(proc.stdout.split("largest parameter difference: ")[1].split()[0])
    assert diff < 1e-5
