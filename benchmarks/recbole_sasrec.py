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
"""
from __future__ import annotations

import argparse
import json
import os
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
    work = Path(args.work)
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

    out = open(args.out, "w")
    clock = {"start": time.perf_counter(), "train": 0.0, "valid": 0.0}
    train_epoch, valid_epoch = trainer._train_epoch, trainer._valid_epoch

    def timed_train(*a, **k):
        t0 = time.perf_counter()
        r = train_epoch(*a, **k)
        clock["train"] = time.perf_counter() - t0
        return r

    def timed_valid(*a, **k):
        t0 = time.perf_counter()
        r = valid_epoch(*a, **k)
        clock["valid"] = time.perf_counter() - t0
        return r

    def record(epoch: int, score: float) -> None:
        out.write(json.dumps({"epoch": epoch, "train_s": clock["train"], "valid_s": clock["valid"],
                              "valid_ndcg@10": float(score), "wall_s": time.perf_counter() - clock["start"]}) + "\n")
        out.flush()

    trainer._train_epoch, trainer._valid_epoch = timed_train, timed_valid
    best, _ = trainer.fit(train, valid, verbose=False, saved=True, callback_fn=record)
    t0 = time.perf_counter()
    result = trainer.evaluate(test, load_best_model=True)
    out.write(json.dumps({"final": True, "best_valid_ndcg@10": float(best), "test_eval_s": time.perf_counter() - t0,
                         "test": {k: float(v) for k, v in result.items()}}) + "\n")
    out.close()


if __name__ == "__main__":
    main()
