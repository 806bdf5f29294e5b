"""RecBole 1.2.1's SASRec on an S3-Rec sequence file, timed epoch by epoch (for bench_seq.py).

Runs inside RecBole's own environment, never semrec's (RecBole is not a semrec dependency):

    python -m venv /tmp/recbole_env && /tmp/recbole_env/bin/pip install torch==2.13.0 "setuptools<81" recbole==1.2.1
    /tmp/recbole_env/bin/python benchmarks/recbole_sasrec.py --s3rec ../shared/data/s3rec/Beauty.txt \\
        --work /tmp/recbole_work --out /tmp/recbole_epochs.jsonl --epochs 300

The file becomes RecBole's atomic ``.inter`` file with the position in the sequence as the
timestamp, so RecBole's leave-one-out split in time order (``LS: valid_and_test``, ``TO``) is
the S3-Rec split, and full ranking (``mode: full``) excludes the history as S3-Rec does. The
model size and loss are the comparison's (2 layers, 2 heads, d 64, max_len 50, CE); everything
else is RecBole's default. One JSON line per epoch goes to ``--out`` as soon as it is known:
training seconds, validation seconds, validation NDCG@10, and the wall clock since training
began. Four known incompatibilities of RecBole 1.2.1 with numpy 2 and torch 2.6+ are patched
below (numpy aliases, the final checkpoint load).

A full run takes hours on one thread, so it can be stopped and resumed: after every epoch the
training state (model, optimiser, early-stopping counters, random states and the epoch records) is
saved to ``<work>/resume.pth``, and the same command run again continues from it and rewrites
``--out`` from the saved records. ``wall_s`` then counts training time only (the gap while the run
was stopped is not counted); ``cpu_s`` is the process CPU time of the epoch's training, a check that
the run had its core to itself (on one thread it should be close to ``train_s``).
"""
from __future__ import annotations

import argparse
import fcntl
import json
import os
import random
import time
from pathlib import Path


def _patch_numpy() -> None:
    import numpy as np

    for alias, real in (("float_", "float64"), ("complex_", "complex128"), ("unicode_", "str_"), ("bool8", "bool_")):
        if not hasattr(np, alias):
            setattr(np, alias, getattr(np, real))


def write_inter(s3rec: Path, folder: Path, name: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    with open(s3rec) as f, open(folder / f"{name}.inter", "w") as out:
        out.write("user_id:token\titem_id:token\ttimestamp:float\n")
        for line in f:
            cells = line.split()
            for pos, item in enumerate(cells[1:]):
                out.write(f"{cells[0]}\t{item}\t{pos}\n")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--s3rec", required=True, help="S3-Rec <name>.txt")
    p.add_argument("--work", required=True, help="folder for the atomic file and RecBole's outputs")
    p.add_argument("--out", required=True, help="JSON lines, one per epoch")
    p.add_argument("--epochs", type=int, default=300)
    p.add_argument("--stopping-step", type=int, default=10)
    p.add_argument("--seed", type=int, default=2023)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()

    work = Path(args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    args.out, args.s3rec = str(Path(args.out).resolve()), str(Path(args.s3rec).resolve())
    os.chdir(work)  # RecBole writes its logs (log/, log_tensorboard/) into the working directory
    lock = open(work / ".lock", "w")  # one run per folder; bench_seq.py waits on this lock
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise SystemExit(f"{work}: a RecBole run is already running there") from None
    os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    _patch_numpy()
    import torch

    torch.set_num_threads(args.threads)
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.model.sequential_recommender import SASRec
    from recbole.trainer import Trainer
    from recbole.utils import init_seed

    name = Path(args.s3rec).stem.lower()
    write_inter(Path(args.s3rec), work / "data" / name, name)
    cfg = {
        "data_path": str(work / "data"), "checkpoint_dir": str(work / "saved"), "use_gpu": False, "seed": args.seed,
        "USER_ID_FIELD": "user_id", "ITEM_ID_FIELD": "item_id", "TIME_FIELD": "timestamp",
        "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
        "MAX_ITEM_LIST_LENGTH": 50, "n_layers": 2, "n_heads": 2, "hidden_size": 64, "loss_type": "CE",
        "train_neg_sample_args": None, "epochs": args.epochs, "stopping_step": args.stopping_step, "eval_step": 1,
        "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "mode": "full", "group_by": "user"},
        "metrics": ["Hit", "NDCG"], "topk": [10], "valid_metric": "NDCG@10", "show_progress": False,
    }
    config = Config(model="SASRec", dataset=name, config_dict=cfg)
    init_seed(config["seed"], config["reproducibility"])
    dataset = create_dataset(config)
    train, valid, test = data_preparation(config, dataset)
    model = SASRec(config, train.dataset)
    trainer = Trainer(config, model)

    saved = work / "saved"
    saved.mkdir(parents=True, exist_ok=True)
    trainer.saved_model_file = str(saved / "best.pth")  # a fixed name, so that a resumed run finds it
    resume = work / "resume.pth"
    records: list[dict] = []
    done_s = 0.0
    if resume.exists():
        import numpy as np

        trainer.resume_checkpoint(resume)
        trainer.saved_model_file = str(saved / "best.pth")
        state = torch.load(resume, map_location="cpu", weights_only=False)
        records, done_s = state["records"], state["wall_s"]
        trainer.best_valid_result = state["best_valid_result"]
        torch.set_rng_state(state["rng"]["torch"])
        np.random.set_state(state["rng"]["numpy"])
        random.setstate(state["rng"]["python"])
        train.generator.set_state(state["rng"]["loader"])  # the training order continues, not restarts
        print(f"resumed after epoch {trainer.start_epoch - 1} ({done_s:.0f} s of training so far)", flush=True)

    clock = {"start": time.perf_counter(), "train": 0.0, "valid": 0.0, "cpu": 0.0}
    train_epoch, valid_epoch = trainer._train_epoch, trainer._valid_epoch

    def timed_train(*a, **k):
        t0, c0 = time.perf_counter(), time.process_time()
        r = train_epoch(*a, **k)
        clock["train"], clock["cpu"] = time.perf_counter() - t0, time.process_time() - c0
        return r

    def timed_valid(*a, **k):
        t0, c0 = time.perf_counter(), time.process_time()
        r = valid_epoch(*a, **k)
        clock["valid"], clock["valid_cpu"] = time.perf_counter() - t0, time.process_time() - c0
        return r

    def write_records(final: dict | None = None) -> None:
        tmp = Path(args.out + ".tmp")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in records + ([final] if final else [])))
        os.replace(tmp, args.out)

    def record(epoch: int, score: float) -> None:
        import numpy as np

        wall = done_s + time.perf_counter() - clock["start"]
        records.append({"epoch": epoch, "train_s": clock["train"], "cpu_s": clock["cpu"], "valid_s": clock["valid"],
                        "valid_cpu_s": clock.get("valid_cpu", clock["valid"]),
                        "valid_ndcg@10": float(score), "wall_s": wall})
        state = {"config": trainer.config, "epoch": epoch, "cur_step": trainer.cur_step,
                 "best_valid_score": trainer.best_valid_score, "best_valid_result": trainer.best_valid_result,
                 "state_dict": trainer.model.state_dict(), "other_parameter": trainer.model.other_parameter(),
                 "optimizer": trainer.optimizer.state_dict(), "records": records, "wall_s": wall,
                 "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate(),
                         "loader": train.generator.get_state()}}
        torch.save(state, work / "resume.tmp")
        os.replace(work / "resume.tmp", resume)
        write_records()

    trainer._train_epoch, trainer._valid_epoch = timed_train, timed_valid
    write_records()
    best, _ = trainer.fit(train, valid, verbose=False, saved=True, callback_fn=record)
    t0 = time.perf_counter()
    result = trainer.evaluate(test, load_best_model=True)
    write_records({"final": True, "best_valid_ndcg@10": float(best), "test_eval_s": time.perf_counter() - t0,
                   "test": {k: float(v) for k, v in result.items()}})


if __name__ == "__main__":
    main()
