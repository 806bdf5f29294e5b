"""Hostile and careless input (issue 34): one test per numbered case.

Each checks what a user sees (exit code 2 and one line naming the file, line or setting), that
nothing outside the run folder changed, and that no finished work (history, checkpoint) was
lost. The memory cases run under an address-space cap (``RLIMIT_AS``), so a regression fails the
test instead of exhausting the machine.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import pickle
import re
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from helpers import ONE_THREAD, random_sequences, write_dataset, write_sequences
from semrec.data.prepare import main as prepare
from semrec.encoder.train_encoder import main as train

REPO = Path(__file__).resolve().parents[1]
TRAIN = [sys.executable, str(REPO / "encoder" / "train_encoder.py")]


def tree(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` with the SHA-256 of its bytes (a run's ``log.txt`` aside: a
    refused resume may log that it was tried)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != "log.txt"}


def error_line(capsys, prog: str = "semrec-train") -> str:
    """The one line a failed command printed on stderr (checked to be one line, with no traceback)."""
    err = [ln for ln in capsys.readouterr().err.splitlines() if " WARNING " not in ln]
    assert len(err) == 1 and "Traceback" not in err[0], err
    assert err[0].startswith(f"{prog}: "), err
    return err[0]


@contextlib.contextmanager
def memory_cap(extra_gib: float = 2.0):
    """This process's address space capped at what it uses now plus ``extra_gib``."""
    used = int(re.search(r"VmSize:\s+(\d+) kB", Path("/proc/self/status").read_text()).group(1)) * 1024
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (used + int(extra_gib * 2**30), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def s3rec_file(path: Path, seqs: list[list[int]], extra: str = "") -> Path:
    """An S3-Rec file (ids from 1) with ``extra`` appended as raw text."""
    path.write_text("".join(f"{u + 1} " + " ".join(str(i + 1) for i in s) + "\n" for u, s in enumerate(seqs)) + extra)
    return path


def seqs(users: int = 40, items: int = 60, length: int = 6) -> list[list[int]]:
    return random_sequences(users, items, length, seed=1)


def train_args(data: Path, out: Path, model: str = "sasrec", *extra: str) -> list[str]:
    return ["--model", model, "--dataset", "t", "--data-dir", str(data), "--out", str(out), "--device", "cpu",
            "--set", "train.epochs=1", "--quiet", *extra]


@pytest.fixture
def finished(tmp_path) -> Path:
    """A finished two-epoch SASRec run on a small S3-Rec file (validated after each epoch)."""
    data = s3rec_file(tmp_path / "Shop.txt", seqs())
    run = tmp_path / "run"
    assert train(["--model", "sasrec", "--dataset", "shop", "--data-dir", str(data), "--out", str(run), "--device",
                  "cpu", "--set", "train.epochs=2", "--set", "train.test_step=1", "--set", "model.dim=16",
                  "--quiet"]) == 0
    return run


# 1 -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("stray", [10_000_000, 999_999, 10**12, 2**63, 2**70])
def test_1_a_stray_item_id_is_refused_before_anything_is_allocated(tmp_path, capsys, stray):
    good = seqs()
    bad = s3rec_file(tmp_path / "Stray.txt", good, extra=f"{len(good) + 1} 3 5 {stray} 7\n")
    jsonl = tmp_path / "jsonl"
    jsonl.mkdir()
    (jsonl / "sequences.jsonl").write_text("".join(json.dumps({"uid": u, "items": s}) + "\n"
                                                   for u, s in enumerate(good + [[2, 4, stray, 6]])))
    before = tree(tmp_path)
    for data in (bad, jsonl):
        with memory_cap():
            code = train(train_args(data, tmp_path / "run"))
        line = error_line(capsys)
        assert code == 2 and str(data) in line
        assert re.search(r"but only \d+ distinct items occur", line) or "is too large" in line, line
        assert ("--allow-sparse-ids" in line) == (stray < 2**31)
    assert tree(tmp_path) == before  # no run folder, nothing written


def test_1_sparse_ids_when_allowed_are_sized_against_memory_first(tmp_path, capsys):
    bad = s3rec_file(tmp_path / "Stray.txt", seqs(), extra="41 3 5 10000000 7\n")
    with memory_cap():  # an item table of 10M rows (and its full-softmax scores) cannot fit in 2 GiB more
        code = train(train_args(bad, tmp_path / "run", "sasrec", "--allow-sparse-ids"))
    line = error_line(capsys)
    assert code == 2 and "this run needs at least" in line and "10,000,000" in line
    assert not (tmp_path / "run").exists()


# 2 -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("model, settings, message", [
    ("sasrec", ["model.loss=bce", "model.negatives=3000"], "model.negatives (3000) must be below the number of items (60)"),
    ("gru4rec", ["model.loss=sampled_softmax", "model.negatives=60"], "model.negatives (60) must be below"),
    ("bert4rec", ["model.loss=bce", "model.negatives=61"], "model.negatives (61) must be below"),
    ("gsasrec", ["model.negatives=100"], "model.negatives (100) must be below"),
    ("sasrec", ["model.dropout=1"], "model.dropout: 1.0 is out of range; valid values: [0, 1)"),
    ("sasrec", ["train.lr=inf"], "train.lr: inf is out of range; valid values: (0, inf)"),
    ("sasrec", ["train.lr=nan"], "train.lr: nan is out of range"),
    ("sasrec", ["train.seed=1e23"], "train.seed: 99999999999999991611392 is out of range; valid values: [0, 9223372036854775807]"),
    ("sasrec", ["model.max_len=100000000"], "this run needs at least"),
    ("sasrec", ["model.dim=10000000"], "this run needs at least"),
    ("lightgcn", ["model.dim=100000000"], "this run needs at least"),
])
def test_2_settings_that_cannot_work_are_refused_before_training(tmp_path, capsys, model, settings, message):
    data = s3rec_file(tmp_path / "Shop.txt", seqs())
    before = tree(tmp_path)
    extra = [a for s in settings for a in ("--set", s)]
    with memory_cap():
        code = train(train_args(data, tmp_path / "run", model, *extra))
    line = error_line(capsys)
    assert code == 2 and message in line, line
    assert tree(tmp_path) == before


def test_2_a_seed_that_is_not_an_integer_is_an_argument_error(tmp_path):
    data = s3rec_file(tmp_path / "Shop.txt", seqs())
    proc = subprocess.run(TRAIN + train_args(data, tmp_path / "run", "sasrec", "--seed", "1e23"), capture_output=True,
                          text=True, env=ONE_THREAD)
    assert proc.returncode == 2 and "argument --seed: invalid int value: '1e23'" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "run").exists()


# 3 -------------------------------------------------------------------------------------------
DEEP = "[" * 100_000 + "]" * 100_000


@pytest.mark.parametrize("content, message", [
    ("[1, 2]", "expected a JSON object"),
    ('"text"', "expected a JSON object"),
    ('{"a": {"title": "x"}}', "key 'a' is not an integer item key"),
    ('{"1.5": {"title": "x"}}', "key '1.5' is not an integer item key"),
    ('{"-1": {"title": "x"}}', "key '-1' is not an integer item key"),
    ('{"1": "just text"}', "entry '1' is a str, not an object of fields"),
    ('{"1": ["x"]}', "entry '1' is a list, not an object of fields"),
    ('{"1": {"title": {"nested": "dict"}}}', "entry '1': title must be a string, got dict"),
    ('{"1": {"title": ["a", "b"]}}', "entry '1': title must be a string, got list"),
    ('{"1": {"categories": [[["too", "deep"]]]}}', "entry '1': field 'categories' must be text"),
    ('{"1": {"price": {"usd": 3}}}', "entry '1': field 'price' must be text"),
    ("{not json", "not valid JSON"),
    ('{"1": ' + DEEP + "}", "nested too deeply"),
    (b"\xff\xfe{}", "not UTF-8 text"),
    (None, "no such file"),
    ("folder", "is a folder, not a file"),
])
def test_3_malformed_item_text_is_named(tmp_path, capsys, content, message):
    data = s3rec_file(tmp_path / "Shop.txt", seqs())
    text = tmp_path / "text.json"
    if content == "folder":
        text.mkdir()
    elif isinstance(content, bytes):
        text.write_bytes(content)
    elif content is not None:
        text.write_text(content)
    before = tree(tmp_path)
    code = prepare(["s3rec", str(data), "--name", "shop", "--out-dir", str(tmp_path / "out"),
                    "--item-text", str(text)])
    line = error_line(capsys, "prepare.py")
    assert code == 2 and str(text) in line and message in line, line
    assert tree(tmp_path) == before


@pytest.mark.parametrize("kind, content, message", [
    ("jsonl", "[0, [1, 2, 3]]\n", "sequences.jsonl:1: expected a JSON object, got a JSON array"),
    ("s3rec", "1 2 3 4\n2 3 ² 5\n", "Shop.txt:2: expected 'user item item ...' with integer ids"),
    ("s3rec", b"1 2 3 4\n2 3 \xe9 5\n", "Shop.txt:2: not UTF-8 text"),
    ("attributes", '{"iid": 0, "attributes": ' + DEEP + "}\n", "item_attributes.jsonl:1: JSON nested too deeply"),
])
def test_3_malformed_lines_of_other_files_are_named(tmp_path, capsys, kind, content, message):
    if kind == "s3rec":
        path = tmp_path / "Shop.txt"
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        code = prepare(["s3rec", str(path), "--name", "shop", "--out-dir", str(tmp_path / "out")])
        line = error_line(capsys, "prepare.py")
    else:
        folder = tmp_path / "data"
        write_sequences(folder, seqs(), num_items=60)
        name = "sequences.jsonl" if kind == "jsonl" else "item_attributes.jsonl"
        (folder / name).write_text(content)
        code = train(train_args(folder, tmp_path / "run"))
        line = error_line(capsys)
    assert code == 2 and message in line, line
    assert not (tmp_path / "run").exists() and not (tmp_path / "out").exists()


# 4 -------------------------------------------------------------------------------------------
def _craft(run: Path, **fields) -> None:
    ckpt = torch.load(run / "checkpoint.pt", weights_only=True)
    ckpt.update(fields)
    torch.save(ckpt, run / "checkpoint.pt")


@pytest.mark.parametrize("craft, message, evaluate_reads_it", [
    (lambda r: _craft(r, epoch="x"), "epoch is 'x'; expected an integer in [-1, 1]", False),
    (lambda r: _craft(r, epoch=-1_000_000), "epoch is -1000000; expected an integer in [-1, 1]", False),
    (lambda r: _craft(r, bad_evals="3"), "bad_evals is '3'", False),
    (lambda r: _craft(r, best_epoch=7), "best_epoch is 7; expected an integer in [-1, 1]", True),
    (lambda r: _craft(r, best_score="high"), "best_score is 'high'", False),
    (lambda r: _craft(r, best_valid=[0.1]), "best_valid is not a dict of metric values", False),
    (lambda r: _craft(r, train_seconds="1s"), "train_seconds is not a list of numbers", False),
    (lambda r: _craft(r, rng_batches=torch.zeros(3)), "rng_batches is not a random generator's state", False),
    (lambda r: _craft(r, best_weights={k: v[..., :1] if v.dim() else v for k, v in
                                       torch.load(r / "checkpoint.pt", weights_only=True)["best_weights"].items()}),
     "best_weights: items.item_emb.weight has shape (61, 1), the model's (61, 16)", True),
    (lambda r: _craft(r, best_weights={"x": torch.zeros(1)}), "best_weights: other tensors than the model's", True),
    (lambda r: torch.save([1, 2, 3], r / "checkpoint.pt"), "a list, not a dict of fields", True),
])
def test_4_crafted_checkpoint_fields_are_refused_and_history_is_kept(finished, capsys, craft, message,
                                                                     evaluate_reads_it):
    craft(finished)
    before = tree(finished.parent)
    assert train(["--resume", str(finished), "--quiet"]) == 2
    line = error_line(capsys)
    assert "checkpoint.pt: does not match this run's model and config" in line and message in line, line
    assert tree(finished.parent) == before  # history.jsonl (two epochs) and the checkpoint untouched
    code = train(["--evaluate", str(finished), "--quiet"])
    if evaluate_reads_it:
        assert code == 2 and message in error_line(capsys)
        assert tree(finished.parent) == before
    else:  # --evaluate reads only the best weights and their epoch
        assert code == 0 and [p.name for p in finished.glob("eval-*.json")]


@pytest.mark.parametrize("edit, message", [
    (lambda c: c["config"].update(train=[1, 2]), "section config.train must be a mapping, got a list"),
    (lambda c: c["config"].update(model="sasrec"), "section config.model must be a mapping, got a str"),
    (lambda c: c.update(config=[1]), "not a semrec run configuration"),
])
def test_4_a_crafted_config_yaml_is_refused(finished, capsys, edit, message):
    saved = yaml.safe_load((finished / "config.yaml").read_text())
    edit(saved)
    (finished / "config.yaml").write_text(yaml.safe_dump(saved))
    before = tree(finished.parent)
    for argv in (["--resume", str(finished)], ["--evaluate", str(finished)]):
        assert train(argv + ["--quiet"]) == 2
        assert message in error_line(capsys)
    assert tree(finished.parent) == before


# 5 -------------------------------------------------------------------------------------------
def test_5_a_user_on_two_lines_is_an_error_naming_both(tmp_path, capsys):
    path = s3rec_file(tmp_path / "Shop.txt", seqs(), extra="3 9 8 7 6\n")
    assert train(train_args(path, tmp_path / "run")) == 2
    assert f"{path}:41: user 3 already has a sequence on line 3" in error_line(capsys)
    assert prepare(["s3rec", str(path), "--name", "shop", "--out-dir", str(tmp_path / "out")]) == 2
    assert f"{path}:41: user 3 already has a sequence on line 3" in error_line(capsys, "prepare.py")
    assert not (tmp_path / "run").exists() and not (tmp_path / "out").exists()


@pytest.mark.parametrize("row, message", [
    ({"uid": 1, "items": "123"}, "with integer ids, got uid 1 and items 123"),
    ({"uid": 1, "items": [5.7, 2, 3, 4]}, "with integer ids"),
    ({"uid": 1, "items": [True, 2, 3, 4]}, "with integer ids"),
    ({"uid": 5.9, "items": [1, 2, 3, 4]}, "got uid 5.9"),
    ({"uid": "1", "items": [1, 2, 3, 4]}, "got uid '1'"),
    ({"uid": 0, "items": [1, 2, 3, 4]}, "uid 0 already has a sequence on line 1"),
])
def test_5_sequences_jsonl_takes_integers_only(tmp_path, capsys, row, message):
    folder = tmp_path / "data"
    folder.mkdir()
    rows = [{"uid": u, "items": s} for u, s in enumerate(seqs())]
    rows[1] = row
    (folder / "sequences.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert train(train_args(folder, tmp_path / "run")) == 2
    line = error_line(capsys)
    assert "sequences.jsonl:2: " in line and message in line, line


@pytest.mark.parametrize("cell", ["1_2", "١٢", "+3", "-4", "0x5", "12.0"])
def test_5_s3rec_ids_are_ascii_digits(tmp_path, capsys, cell):
    path = s3rec_file(tmp_path / "Shop.txt", seqs(), extra=f"41 3 {cell} 5 6\n")
    assert train(train_args(path, tmp_path / "run")) == 2
    assert f"Shop.txt:41: {cell!r} is not an id" in error_line(capsys)
    assert prepare(["s3rec", str(path), "--name", "shop", "--out-dir", str(tmp_path / "out")]) == 2
    assert "Shop.txt:41: expected 'user item item ...' with integer ids" in error_line(capsys, "prepare.py")


# 6 -------------------------------------------------------------------------------------------
def test_6_out_at_a_folder_that_is_not_a_run_is_refused(tmp_path, capsys):
    data = s3rec_file(tmp_path / "Shop.txt", seqs())
    mine = tmp_path / "my-project"
    mine.mkdir()
    (mine / "config.yaml").write_text("learning_rate: 0.1\n")
    (mine / "notes.txt").write_text("do not lose me\n")
    before = tree(tmp_path)
    assert train(train_args(data, mine)) == 2
    assert "holds files that are not a semrec run's (notes.txt)" in error_line(capsys)
    (mine / "notes.txt").unlink()
    before = tree(tmp_path)
    assert train(train_args(data, mine)) == 2  # a config.yaml of some other program
    assert "config.yaml: not a semrec run configuration" in error_line(capsys)
    assert tree(tmp_path) == before


# 7 -------------------------------------------------------------------------------------------
def test_7_data_with_nothing_to_train_on_is_refused_before_the_folder_exists(tmp_path, capsys):
    rng = np.random.default_rng(0)
    three = [rng.choice(60, 3, replace=False).tolist() for _ in range(40)]
    data = s3rec_file(tmp_path / "Three.txt", three)
    assert train(train_args(data, tmp_path / "run")) == 2
    assert "nothing to train on: a sequence model trains on the users with at least 2 training items" in error_line(capsys)
    assert not (tmp_path / "run").exists()


def test_7_a_folder_without_checkpoint_is_started_again(finished, capsys):
    (finished / "checkpoint.pt").unlink()  # as a run stopped before its first validation leaves it
    (finished / "results.json").unlink()
    assert train(["--resume", str(finished), "--quiet"]) == 0  # --resume starts it again
    history = [json.loads(ln) for ln in (finished / "history.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == [0, 1]
    (finished / "checkpoint.pt").unlink()
    saved = yaml.safe_load((finished / "config.yaml").read_text())
    capsys.readouterr()
    argv = ["--model", "sasrec", "--dataset", "shop", "--data-dir", saved["data_dir"], "--out", str(finished),
            "--device", "cpu", "--set", "train.epochs=2", "--set", "train.test_step=1", "--set", "model.dim=16",
            "--quiet"]
    assert train(argv) == 0  # and so does the same command again
    assert "best epoch" in capsys.readouterr().out
    assert train(argv) == 2  # once it has a checkpoint, it is a run to --resume
    assert "already holds a run; continue it with --resume" in error_line(capsys)


# 8 -------------------------------------------------------------------------------------------
def _limited(bytes_: int):
    return lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (bytes_, bytes_))


def test_8_a_full_disk_during_the_checkpoint_write_is_named_and_cleaned_up(tmp_path):
    data = s3rec_file(tmp_path / "Shop.txt", seqs())
    run = tmp_path / "run"
    # files may grow to 64 KB: the config, log and history fit, the checkpoint (over 100 KB) does not
    proc = subprocess.run(TRAIN + train_args(data, run, "sasrec", "--set", "model.dim=64"), capture_output=True,
                          text=True, env=ONE_THREAD, preexec_fn=_limited(64_000))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == f"semrec-train: error: {run / 'checkpoint.pt'}: File too large"
    assert sorted(p.name for p in run.iterdir()) == [".lock", "config.yaml", "history.jsonl", "log.txt"]
    assert len((run / "history.jsonl").read_text().splitlines()) == 1


def test_8_an_unwritable_run_folder_fails_before_the_work(finished):
    before = tree(finished.parent)
    for argv in (["--evaluate", str(finished)], ["--resume", str(finished)]):
        proc = subprocess.run(TRAIN + argv + ["--quiet"], capture_output=True, text=True, env=ONE_THREAD,
                              preexec_fn=_limited(0))  # no write of a single byte succeeds
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        assert str(finished) in proc.stderr and "File too large" in proc.stderr
    assert "nothing was evaluated" in subprocess.run(TRAIN + ["--evaluate", str(finished)], capture_output=True,
                                                     text=True, preexec_fn=_limited(0)).stderr
    assert tree(finished.parent) == before


def test_8_a_read_only_run_folder_is_named(finished, tmp_path):
    """A real read-only mount (root's permission bits would not stop it), where mounting is allowed."""
    view = tmp_path / "read-only"
    view.mkdir()
    mounted = subprocess.run(["mount", "--bind", "-o", "ro", str(finished), str(view)], capture_output=True)
    if mounted.returncode:
        pytest.skip(f"cannot mount a read-only view here ({mounted.stderr.decode().strip()})")
    try:
        before = tree(finished)
        for argv in (["--evaluate", str(view)], ["--resume", str(view)]):
            proc = subprocess.run(TRAIN + argv + ["--quiet"], capture_output=True, text=True, env=ONE_THREAD)
            assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
            assert f"{view}: cannot write there (Read-only file system)" in proc.stderr
        assert tree(finished) == before
    finally:
        subprocess.run(["umount", str(view)], check=True)


def test_8_prepare_into_an_unwritable_folder_and_a_config_folder(tmp_path, capsys):
    data = s3rec_file(tmp_path / "Shop.txt", seqs())
    proc = subprocess.run([sys.executable, str(REPO / "data" / "prepare.py"), "s3rec", str(data), "--name", "shop",
                           "--out-dir", str(tmp_path / "out")], capture_output=True, text=True, preexec_fn=_limited(0))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith(f"prepare.py: {tmp_path / 'out' / 'shop'}") and "File too large" in proc.stderr
    assert not list((tmp_path / "out").rglob("*.tmp"))
    assert train(train_args(data, tmp_path / "run", "sasrec", "--config", str(tmp_path))) == 2
    assert f"{tmp_path}: is a folder, not a file" in error_line(capsys)


# 9 -------------------------------------------------------------------------------------------
def test_9_undecodable_files_are_named(tmp_path, capsys):
    latin = s3rec_file(tmp_path / "Latin.txt", seqs())
    latin.write_bytes(latin.read_bytes() + b"41 1 2 3 # caf\xe9\n")
    assert train(train_args(latin, tmp_path / "r1")) == 2
    assert f"{latin}:41: not UTF-8 text (byte 0xe9" in error_line(capsys)

    attrs = s3rec_file(tmp_path / "Attr.txt", seqs())
    (tmp_path / "Attr_item2attributes.json").write_bytes(b'{"1": ["caf\xe9"]}')
    assert train(train_args(attrs, tmp_path / "r2")) == 2
    assert "Attr_item2attributes.json:1: not UTF-8 text" in error_line(capsys)

    folder = tmp_path / "data"
    write_sequences(folder, seqs(), num_items=60)
    (folder / "item_attributes.jsonl").write_bytes(b'{"iid": 0, "attributes": {"brand": ["\xff"]}}\n')
    assert train(train_args(folder, tmp_path / "r3")) == 2
    assert "item_attributes.jsonl:1: not UTF-8 text" in error_line(capsys)

    config = tmp_path / "latin.yaml"
    config.write_bytes(b"train:\n  lr: 0.001 # caf\xe9\n")
    assert train(train_args(latin, tmp_path / "r4", "sasrec", "--config", str(config))) == 2
    assert f"{config}:2: not UTF-8 text" in error_line(capsys)
    assert not any((tmp_path / f"r{i}").exists() for i in range(1, 5))


def test_9_a_byte_order_mark_is_accepted(tmp_path, capsys):
    plain = s3rec_file(tmp_path / "Plain.txt", seqs())
    bom = tmp_path / "Bom.txt"
    bom.write_bytes(b"\xef\xbb\xbf" + plain.read_bytes())
    from semrec.encoder.dataset import load_dataset

    a, b = load_dataset(plain), load_dataset(bom)
    assert np.array_equal(a.sequences.items, b.sequences.items) and a.num_items == b.num_items


def test_9_an_undecodable_history_line_is_kept_on_resume(finished):
    hist = finished / "history.jsonl"
    lines = hist.read_bytes().splitlines()
    hist.write_bytes(lines[0] + b"\n" + b'{"note": "caf\xe9"}\n' + lines[1] + b"\n" + b'{"epoch": 2, "cut sh')
    # the checkpoint is of the last epoch: resuming trims the history and writes the results again
    assert train(["--resume", str(finished), "--quiet"]) == 0
    # the foreign line is kept byte for byte; the line the kill cut short is dropped
    assert hist.read_bytes() == lines[0] + b"\n" + b'{"note": "caf\xe9"}\n' + lines[1] + b"\n"


# 10 ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("emb, message", [
    (np.ones((40, 8), dtype=np.complex64), "expected a real-valued numeric array, got dtype complex64"),
    (np.ones((40, 0), dtype=np.float32), "got shape (40, 0)"),
])
def test_10_complex_or_empty_embeddings_are_refused(tmp_path, capsys, emb, message):
    folder = tmp_path / "data"
    write_sequences(folder, random_sequences(30, 40))
    write_dataset(folder, mats=[], item_emb=emb)
    assert train(train_args(folder, tmp_path / "run", "sasrec", "--set", "model.item_text=frozen")) == 2
    assert message in error_line(capsys)


def test_10_data_rewritten_after_training_is_refused(finished, capsys):
    data = Path(yaml.safe_load((finished / "config.yaml").read_text())["data_dir"])
    text = data.read_text().splitlines()
    data.write_text("\n".join(text[:-1] + [text[-1] + " 7"]) + "\n")  # one more item for the last user
    before = tree(finished)
    for argv in (["--resume", str(finished)], ["--evaluate", str(finished)]):
        assert train(argv + ["--quiet"]) == 2
        assert f"{data}: the data has changed since {finished} was trained" in error_line(capsys)
    assert tree(finished) == before


def test_10_misleading_messages_are_fixed(tmp_path, capsys):
    csv = tmp_path / "ratings.csv"
    csv.write_text("user_id,item_id\n1,2\n")
    assert train(train_args(csv, tmp_path / "r")) == 2
    assert f"{csv}: is a file; a dataset is a folder in RLMRec's layout or an S3-Rec sequence file" in error_line(capsys)
    two = tmp_path / "two"
    two.mkdir()
    s3rec_file(two / "A.txt", seqs())
    s3rec_file(two / "B.txt", seqs())
    assert train(train_args(two, tmp_path / "r")) == 2
    assert "holds 2 .txt files (A.txt, B.txt) and no trn_mat.pkl; point --data-dir at the S3-Rec" in error_line(capsys)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "sequences.jsonl").write_text("")
    assert train(train_args(empty, tmp_path / "r")) == 2
    assert "sequences.jsonl: no sequences" in error_line(capsys)
    assert not (tmp_path / "r").exists()


def test_10_out_of_memory_is_one_line():
    from semrec.encoder.memory import describe_oom

    assert describe_oom(MemoryError()) == "out of memory"
    with pytest.raises(RuntimeError) as caught, memory_cap(0.5):
        torch.empty(2**33)  # 32 GiB
    assert describe_oom(caught.value) == "out of memory (an allocation of 32.0 GiB failed)"
    assert describe_oom(RuntimeError("shapes do not match")) is None


def test_10_attribute_files_name_the_line_and_the_item(tmp_path, capsys):
    folder = tmp_path / "data"
    write_sequences(folder, seqs(), num_items=60)
    (folder / "item_attributes.jsonl").write_text('{"iid": 1, "attributes": {"brand": ["a"]}}\n'
                                                  '{"iid": 60, "attributes": {"brand": ["b"]}}\n')
    assert train(train_args(folder, tmp_path / "r")) == 2
    assert "item_attributes.jsonl:2: item 60 is outside the dataset's items 0..59" in error_line(capsys)
    data = s3rec_file(tmp_path / "Shop.txt", seqs())
    (tmp_path / "Shop_item2attributes.json").write_text('{"0": [1, 2]}')
    assert train(train_args(data, tmp_path / "r")) == 2
    assert "entry '0': item ids run from 1 to 60 (S3-Rec numbers items from 1)" in error_line(capsys)


def test_10_read_profile_escapes_control_characters(tmp_path, capsys):
    from semrec.data.read_profile import main as read_profile

    folder = write_dataset(tmp_path / "data")
    with open(folder / "usr_prf.pkl", "wb") as f:
        pickle.dump({0: {"profile": "likes \x1b[2J\x1b]0;owned\x07 and \x00 nul", "reasoning": "ok\nsecond"}}, f)
    assert read_profile(["--data-dir", str(folder), "--user", "0"]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x00" not in out and "\x07" not in out
    assert "likes \\x1b[2J\\x1b]0;owned\\x07 and \\x00 nul" in out and "ok\nsecond" in out


def test_10_prepare_refuses_paths_as_names_and_unchecked_profiles(tmp_path, capsys):
    data = s3rec_file(tmp_path / "Shop.txt", seqs())
    for name in ("../escape", "a/b", "/abs"):
        assert prepare(["s3rec", str(data), "--name", name, "--out-dir", str(tmp_path / "out")]) == 2
        assert "--name: dataset name" in error_line(capsys, "prepare.py")
    src = write_dataset(tmp_path / "rl")
    with open(src / "itm_prf.pkl", "wb") as f:
        pickle.dump({0: {"profile": {"not": "text"}}}, f)
    assert prepare(["rlmrec", str(src), "--name", "rl", "--out-dir", str(tmp_path / "out")]) == 2
    assert "itm_prf.pkl: not a profile file" in error_line(capsys, "prepare.py")
    with open(src / "itm_prf.pkl", "wb") as f:
        pickle.dump({0: {"profile": "one item of 40"}}, f)
    assert prepare(["rlmrec", str(src), "--name", "rl", "--out-dir", str(tmp_path / "out")]) == 2
    assert "itm_prf.pkl: 1 item profiles for 40 items" in error_line(capsys, "prepare.py")
    assert not (tmp_path / "out").exists()
