"""RecBole 1.2.1's EASE and ItemKNN on a semrec dataset folder's own split (for bench_baselines.py).

Runs inside RecBole's own environment, never semrec's (RecBole is not a semrec dependency):

    python -m venv /tmp/recbole_env && /tmp/recbole_env/bin/pip install torch==2.13.0 "setuptools<81" recbole==1.2.1
    /tmp/recbole_env/bin/python benchmarks/recbole_general.py --data /tmp/bench/base/data/ml100k \\
        --work /tmp/bench/base/recbole --out /tmp/bench/base/recbole.json

The folder's ``trn_mat.pkl`` / ``val_mat.pkl`` / ``tst_mat.pkl`` become RecBole's benchmark files
(``benchmark_filename``: train, valid, test), so both libraries rank the same held-out pairs; full
ranking, RecBole's own history masking. Settings: RecBole's defaults for both models (EASE
``reg_weight`` 250; ItemKNN ``k`` 100, ``shrink`` 0), which bench_baselines.py gives semrec too.
Prints one JSON object: per model, validation and test Recall/NDCG@10/20 and the seconds to fit.
"""
from __future__ import annotations

import argparse
import json
import os
import pickle
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from recbole_sasrec import _patch_numpy  # noqa: E402  (RecBole 1.2.1 against numpy 2: one place for the patch)


def write_split(data: Path, folder: Path, name: str) -> None:
    """The three matrices as RecBole benchmark files (users and items by their semrec index)."""
    folder.mkdir(parents=True, exist_ok=True)
    for part, file in (("train", "trn_mat.pkl"), ("valid", "val_mat.pkl"), ("test", "tst_mat.pkl")):
        with open(data / file, "rb") as f:
            m = pickle.load(f).tocoo()
        with open(folder / f"{name}.{part}.inter", "w") as out:
            out.write("user_id:token\titem_id:token\n")
            out.writelines(f"u{u}\ti{i}\n" for u, i in zip(m.row, m.col))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="a semrec dataset folder")
    p.add_argument("--work", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--models", nargs="+", default=["EASE", "ItemKNN"])
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    work = Path(args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    data = Path(args.data).resolve()
    out_path = Path(args.out).resolve()
    os.chdir(work)
    os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    _patch_numpy()
    import torch

    torch.set_num_threads(args.threads)
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import get_model, get_trainer, init_seed

    name = data.name
    write_split(data, work / "data" / name, name)
    results = {}
    for model_name in args.models:
        cfg = {"data_path": str(work / "data"), "checkpoint_dir": str(work / "saved"), "use_gpu": False, "seed": 2023,
               "USER_ID_FIELD": "user_id", "ITEM_ID_FIELD": "item_id", "load_col": {"inter": ["user_id", "item_id"]},
               "benchmark_filename": ["train", "valid", "test"],
               "eval_args": {"mode": "full", "order": "RO", "group_by": "user"},
               "metrics": ["Recall", "NDCG"], "topk": [10, 20], "valid_metric": "Recall@20", "show_progress": False,
               "train_neg_sample_args": None, "epochs": 1}
        config = Config(model=model_name, dataset=name, config_dict=cfg)
        init_seed(config["seed"], config["reproducibility"])
        dataset = create_dataset(config)
        train, valid, test = data_preparation(config, dataset)
        model = get_model(config["model"])(config, train.dataset).to(config["device"])
        trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
        t0 = time.perf_counter()
        _, valid_result = trainer.fit(train, valid, saved=True, show_progress=False)
        fit_s = time.perf_counter() - t0
        test_result = trainer.evaluate(test, load_best_model=True, show_progress=False)
        results[model_name] = {"valid": {k.lower(): float(v) for k, v in valid_result.items()},
                               "test": {k.lower(): float(v) for k, v in test_result.items()}, "fit_s": fit_s,
                               "users": dataset.user_num - 1, "items": dataset.item_num - 1}
    out_path.write_text(json.dumps(results, indent=1))
    print(json.dumps(results))


if __name__ == "__main__":
    main()
