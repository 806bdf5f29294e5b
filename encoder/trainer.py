"""A model-agnostic training loop with early stopping, checkpoints and exact resume.

The trainer only calls ``model.loss(batch)`` and ``model.scorer()``; the batches come from the
sampler of the model's batch kind (:mod:`semrec.encoder.sampling`), the ranking from the
evaluator. It owns the optimiser (Adam or AdamW), the learning-rate schedule (warm-up, then
constant, linear or cosine decay), gradient clipping, bfloat16 autocast on CUDA, validation
every ``test_step`` epochs, early stopping on ``stop_metric`` and the run directory:

* ``config.yaml``: the resolved configuration;
* ``history.jsonl``: one JSON line per epoch (losses, seconds, validation metrics);
* ``checkpoint.pt``: written atomically after every validation (model, optimiser, best
  weights, random states), so ``--resume`` continues a killed run to the same result;
* ``results.json``: best epoch, validation and test metrics of the best weights (with the
  beyond-accuracy measures), timings;
* ``per_user.npz``: each user's final validation and test metrics (``semrec-compare``'s input).
"""
from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import logging
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from semrec.encoder import distributed, run_files
from semrec.encoder.batches import shard
from semrec.encoder.checkpoint import read_checkpoint, write_checkpoint
from semrec.encoder.config import RunConfig
from semrec.encoder.dataset import InteractionData
from semrec.common.io import DataError, write_json
from semrec.encoder.evaluator import Evaluator
from semrec.encoder.metrics import parse_metric_key
from semrec.encoder.sampling import make_sampler

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.pt"
RESULTS = "results.json"
HISTORY = "history.jsonl"


class TrainingError(RuntimeError):
    """Training cannot continue (e.g. the loss became NaN)."""


def seed_everything(seed: int) -> torch.Generator:
    """Seed python, numpy and torch; return the generator that drives batch sampling."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; otherwise ``torch.device(name)`` checked."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available; use --device cpu")
    return device


@dataclass
class _State:
    epoch: int = -1  # last completed epoch
    best_epoch: int = -1
    best_score: float = -math.inf
    best_valid: dict[str, float] = field(default_factory=dict)
    best_weights: dict[str, torch.Tensor] | None = None
    bad_evals: int = 0
    train_seconds: list[float] = field(default_factory=list)
    eval_seconds: list[float] = field(default_factory=list)


def _schedule(warmup: int, decay: str, total: int):
    """The learning-rate factor at each step: linear warm-up, then constant / linear / cosine decay."""
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if decay == "none":
            return 1.0
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return 1.0 - progress if decay == "linear" else 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


class Trainer:
    """Trains ``model`` on ``data`` as configured by ``cfg``, writing into ``run_dir``.

    Args:
        model: any module with ``loss(batch)`` and ``scorer()``.
        data: the dataset.
        cfg: resolved configuration (``cfg.train`` and ``cfg.eval`` are used here).
        run_dir: output folder (created).
        device: where the model and batches live.
    """

    def __init__(self, model: torch.nn.Module, data: InteractionData, cfg: RunConfig,
                 run_dir: str | Path, device: torch.device, generator: torch.Generator | None = None):
        self.model, self.data, self.cfg = model.to(device), data, cfg
        self.device = device
        self.run_dir = Path(run_dir)
        tc, ec = cfg.train, cfg.eval
        self.stop_metric = tc.stop_metric
        parse_metric_key(self.stop_metric)
        self.evaluator = Evaluator(data, ks=ec.ks, metrics=ec.metrics, batch_size=ec.batch_size, exclude=ec.exclude,
                                   protocol=ec.protocol, sampled_negatives=ec.sampled_negatives, groups=ec.groups,
                                   head_user_share=ec.head_user_share, head_item_share=ec.head_item_share,
                                   seed=tc.seed, device=device)
        if self.stop_metric not in {f"{m}@{k}" for m in ec.metrics for k in ec.ks}:
            raise ValueError(f"train.stop_metric {self.stop_metric!r} is not computed; it must be one of "
                             f"eval.metrics at one of eval.ks ({ec.metrics} @ {ec.ks})")
        self.generator = generator or torch.Generator().manual_seed(tc.seed)  # the batches' random stream
        self.batches = make_sampler(model, data, tc.batch_size, self.generator,
                                    negatives_per=tc.negatives_per, length_buckets=tc.length_buckets)
        if len(self.batches) == 0:
            need = ("a sequence model trains on the users with at least 2 training items (4 in all, with the "
                    "validation and test items), and there are none") if model.batch_kind != "pairwise" \
                else "the training split has no interactions"
            raise DataError(f"{data.path or data.name}: nothing to train on: {need}")
        optim = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[tc.optimizer]
        self.closed_form = bool(getattr(model, "closed_form", False))  # solved once (fit), not trained by epochs
        # a closed-form model has no trainable parameters: the optimiser holds an empty placeholder, so
        # checkpoints keep one layout for every model
        params = [torch.zeros(0, requires_grad=True)] if self.closed_form else model.parameters()
        self.optimizer = optim(params, lr=tc.lr, weight_decay=tc.weight_decay, betas=(0.9, tc.adam_beta2))
        total = tc.epochs * max(len(self.batches), 1)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, _schedule(tc.warmup_steps, tc.lr_decay, total))
        self.autocast = tc.amp and device.type == "cuda"
        self.state = _State()
        # several processes (torchrun): each trains on its share of each batch; DDP averages the gradients
        self.world, self.rank, self.main = distributed.world(), distributed.rank(), distributed.is_main()
        self.ddp = None
        if self.world > 1 and not self.closed_form:
            from torch.nn.parallel import DistributedDataParallel

            self.ddp = DistributedDataParallel(distributed.LossOf(self.model), device_ids=[device.index] if device.type == "cuda"
                                               else None, find_unused_parameters=True)

    # ----- checkpoints ---------------------------------------------------------------------
    def _save_checkpoint(self) -> None:
        s = self.state
        ckpt = {
            "epoch": s.epoch, "best_epoch": s.best_epoch, "best_score": s.best_score,
            "best_valid": s.best_valid, "best_weights": s.best_weights, "bad_evals": s.bad_evals,
            "train_seconds": s.train_seconds, "eval_seconds": s.eval_seconds,
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng_torch": torch.get_rng_state(), "rng_batches": self.generator.get_state(),
            "rng_cuda": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else [],
        }
        if self.world > 1:  # every rank's own dropout stream, so a resumed run continues each exactly
            ckpt["rng_torch_ranks"] = distributed.all_gather(torch.get_rng_state())
        if self.main:
            write_checkpoint(self.run_dir / CHECKPOINT, ckpt)

    def _read_checkpoint(self, what: str = "resumed") -> dict:
        return read_checkpoint(self.run_dir / CHECKPOINT, self.device, self.model.state_dict(), self.cfg.train.epochs,
                               what)

    def evaluate_saved(self) -> dict[str, Any]:
        """The saved best weights of this run folder, evaluated on validation and test with this
        trainer's evaluation settings (another protocol or exclusion than the run's own)."""
        ckpt = self.load_best()
        return {"model": self.cfg.model_name, "dataset": self.cfg.dataset, "seed": self.cfg.train.seed,
                "best_epoch": ckpt.get("best_epoch"), "valid": self.evaluate("valid", final=True),
                "test": self.evaluate("test", final=True),
                "protocol": self.protocol(), "eval": dataclasses.asdict(self.cfg.eval)}

    def load_best(self) -> dict[str, Any]:
        """Load this run folder's saved best weights into the model; returns the checkpoint."""
        ckpt = self._read_checkpoint("evaluated")
        if ckpt.get("best_weights") is None:
            raise DataError(f"{self.run_dir / CHECKPOINT}: holds no best weights yet; nothing was evaluated")
        try:
            self.model.load_state_dict(ckpt["best_weights"])
        except (RuntimeError, KeyError) as e:
            raise DataError(f"{self.run_dir / CHECKPOINT}: does not match this run's model and config "
                            f"({str(e).splitlines()[0][:200]}); nothing was evaluated") from None
        return ckpt

    def protocol(self) -> dict[str, Any]:
        """How the evaluation ranks (for ``results.json``): protocol, exclusion, per-split counts."""
        ec = self.cfg.eval
        return {"protocol": ec.protocol, "exclude": ec.exclude,
                "sampled_negatives": ec.sampled_negatives if ec.protocol == "sampled" else None,
                "valid": self.evaluator.info("valid"), "test": self.evaluator.info("test")}

    def _load_checkpoint(self) -> None:
        path = self.run_dir / CHECKPOINT
        ckpt = self._read_checkpoint()
        try:
            self.model.load_state_dict(ckpt["model"])
            self.optimizer.load_state_dict(ckpt["optimizer"])
            self.scheduler.load_state_dict(ckpt["scheduler"])
            ranks = ckpt.get("rng_torch_ranks")
            own = ranks[self.rank] if self.world > 1 and isinstance(ranks, list) and len(ranks) == self.world else None
            torch.set_rng_state((own if own is not None else ckpt["rng_torch"]).cpu())
            self.generator.set_state(ckpt["rng_batches"].cpu())
            if ckpt["rng_cuda"]:
                torch.cuda.set_rng_state_all([t.cpu() for t in ckpt["rng_cuda"]])
            self.state = _State(**{k: ckpt[k] for k in _State.__dataclass_fields__})
        except (KeyError, IndexError, TypeError, ValueError, RuntimeError, AttributeError) as e:
            what = f"no {e.args[0]!r} entry" if isinstance(e, KeyError) else str(e).splitlines()[0][:200]
            raise DataError(f"{path}: does not match this run's model and config ({what}); nothing was "
                            "resumed") from None
        if self.main:
            run_files.trim_history(self.run_dir / HISTORY, self.state.epoch)
        distributed.barrier()

    # ----- training ------------------------------------------------------------------------
    def train_epoch(self, epoch: int) -> dict[str, float]:
        """One pass over the sampler's batches; returns the mean of each loss term."""
        self.model.train()
        self.model.start_epoch(epoch)
        sums: dict[str, torch.Tensor] = {}
        steps = 0
        clip = self.cfg.train.grad_clip
        step_loss = self.ddp if self.ddp is not None else self.model.loss
        for step, batch in enumerate(self.batches):
            if self.world > 1:  # every rank draws the same global batch and takes its share
                batch = shard(batch, self.rank, self.world)
            batch = batch.to(self.device)
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast):
                loss, parts = step_loss(batch)
            if self.world > 1:  # one rank's NaN stops them all, not just itself (the others would wait)
                bad = distributed.sum_(torch.tensor([0.0 if torch.isfinite(loss) else 1.0], device=loss.device))
                finite = bool(bad.item() == 0)
            else:
                finite = bool(torch.isfinite(loss))
            if not finite:
                terms = ", ".join(f"{k}={float(v.detach()):.4g}" for k, v in parts.items())
                ckpt = self.run_dir / CHECKPOINT
                kept = f"; the last checkpoint ({ckpt}) is kept" if ckpt.exists() else ""
                raise TrainingError(f"loss became {float(loss.detach())} at epoch {epoch}, step {step}"
                                    f"{f' (rank {self.rank})' if self.world > 1 else ''} "
                                    f"({terms}); lower train.lr or check the input embeddings{kept}")
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if clip:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip)
            self.optimizer.step()
            self.scheduler.step()
            for k, v in {"loss": loss, **parts}.items():
                sums[k] = sums.get(k, 0.0) + v.detach().float()
            steps += 1
        if not steps:
            raise TrainingError(f"epoch {epoch} had no training batch")
        if self.world > 1:  # the mean over the ranks' shares
            keys = sorted(sums)
            total = distributed.sum_(torch.stack([torch.as_tensor(sums[k], dtype=torch.float64, device=self.device)
                                                  for k in keys]))
            return {k: float(v) / steps / self.world for k, v in zip(keys, total)}
        return {k: float(v) / steps for k, v in sums.items()}

    def evaluate(self, split: str, items: np.ndarray | None = None, final: bool = False) -> dict[str, float]:
        """The model's metrics on ``split`` (``items``: only held-out items in this mask count;
        ``final``: the evaluation of the best weights, with the beyond-accuracy measures)."""
        self.model.eval()
        beyond = final and self.cfg.eval.beyond
        with torch.no_grad(), torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast):
            return self.evaluator.evaluate(self.model.scorer(), split, self.model.history_len, items,
                                           ratings=self.model.history_ratings, beyond=beyond,
                                           item_vectors=self._item_vectors() if beyond else None)

    def _item_vectors(self) -> torch.Tensor | None:
        """The item vectors of the scores (for intra-list diversity), when at most 1,024 wide."""
        if self.closed_form and self.data.num_items > 1024:  # not built: an I x I matrix
            return None
        try:
            items = self.model.factors()[1]
        except NotImplementedError:
            return None
        return items if items.shape[1] <= 1024 else None

    def _fit_closed_form(self) -> None:
        """A closed-form model: solved once (it may validate settings on the way), validated, saved."""
        s = self.state
        t0, c0 = time.perf_counter(), time.process_time()
        chosen = self.model.fit(lambda: self.evaluate("valid"), self.stop_metric)
        s.train_seconds.append(time.perf_counter() - t0)
        record: dict[str, Any] = {"epoch": 0, "train_seconds": s.train_seconds[-1],
                                  "train_cpu_seconds": time.process_time() - c0, "fit": chosen}
        t0 = time.perf_counter()
        valid = self.evaluate("valid")
        s.eval_seconds.append(time.perf_counter() - t0)
        record.update(eval_seconds=s.eval_seconds[-1], valid=valid)
        s.epoch, s.best_epoch, s.best_valid, s.best_score = 0, 0, valid, valid[self.stop_metric]
        s.best_weights = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        log.info("solved in %.2fs%s | valid %s %.4f", s.train_seconds[-1],
                 f" ({chosen})" if chosen else "", self.stop_metric, s.best_score)
        if self.main:
            with open(self.run_dir / HISTORY, "a") as history:
                history.write(json.dumps(record) + "\n")
        self._save_checkpoint()

    def fit(self, resume: bool = False) -> dict[str, Any]:
        """Train until ``epochs`` or early stopping, then test the best weights.

        Returns:
            the content of ``results.json``.
        """
        tc = self.cfg.train
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if resume:
            self._load_checkpoint()
            log.info("resuming after epoch %d (best %s=%.4f at epoch %d)", self.state.epoch,
                     self.stop_metric, self.state.best_score, self.state.best_epoch)
        s = self.state
        start = time.perf_counter()
        stopped_early = s.bad_evals >= tc.patience
        bar = tqdm(range(s.epoch + 1, tc.epochs), desc=f"{self.cfg.model_name}/{self.cfg.dataset}",
                   unit="epoch", disable=None if self.main and not self.closed_form else True, initial=s.epoch + 1,
                   total=tc.epochs)
        if self.closed_form:  # solved once: no epochs
            if s.best_weights is None:
                self._fit_closed_form()
            stopped_early = True
        board = run_files.tensorboard(self.run_dir) if self.main and tc.log == "tensorboard" else None
        with (open(self.run_dir / HISTORY, "a") if self.main else contextlib.nullcontext(io.StringIO())) as history:
            for epoch in ([] if stopped_early else bar):
                t0, c0 = time.perf_counter(), time.process_time()
                losses = self.train_epoch(epoch)
                s.train_seconds.append(time.perf_counter() - t0)
                # process CPU seconds beside wall seconds: what other processes on the machine do not inflate
                record: dict[str, Any] = {"epoch": epoch, "train_seconds": s.train_seconds[-1],
                                          "train_cpu_seconds": time.process_time() - c0, **losses}
                if epoch % tc.test_step == 0:
                    t0, c0 = time.perf_counter(), time.process_time()
                    valid = self.evaluate("valid")
                    s.eval_seconds.append(time.perf_counter() - t0)
                    record.update(eval_seconds=s.eval_seconds[-1], eval_cpu_seconds=time.process_time() - c0, valid=valid)
                    score = valid[self.stop_metric]
                    if score > s.best_score:
                        s.best_score, s.best_epoch, s.best_valid, s.bad_evals = score, epoch, valid, 0
                        s.best_weights = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
                    else:
                        s.bad_evals += 1
                    log.info("epoch %d | loss %.4f | valid %s %.4f (best %.4f @ %d) | %.2fs train, %.2fs eval",
                             epoch, losses["loss"], self.stop_metric, score, s.best_score, s.best_epoch,
                             s.train_seconds[-1], s.eval_seconds[-1])
                    bar.set_postfix(loss=f"{losses['loss']:.4f}", **{self.stop_metric: f"{score:.4f}"})
                s.epoch = epoch
                history.write(json.dumps(record) + "\n")
                history.flush()
                if board is not None:
                    run_files.log_scalars(board, epoch, losses, record.get("valid", {}))
                if "valid" in record:
                    self._save_checkpoint()
                    if s.bad_evals >= tc.patience:
                        stopped_early = True
                        log.info("early stop at epoch %d: no %s gain in %d validations",
                                 epoch, self.stop_metric, tc.patience)
                        break
        bar.close()
        if board is not None:
            board.close()
        if s.best_weights is None:
            raise TrainingError("no validation was run, so there are no best weights to test")
        self.model.load_state_dict(s.best_weights)
        valid, test = self.evaluate("valid", final=True), self.evaluate("test", final=True)
        if self.main:
            run_files.save_per_user(self.run_dir / run_files.PER_USER, self.evaluator.per_user)
        results = {
            "model": self.cfg.model_name, "dataset": self.cfg.dataset, "seed": tc.seed,
            "best_epoch": s.best_epoch, "last_epoch": s.epoch, "early_stopped": stopped_early,
            "loss": "closed form" if self.closed_form else run_files.loss_terms(self.run_dir / HISTORY) if self.main
            else "", "stop_metric": self.stop_metric,
            "valid": valid, "test": test,
            "timing": {
                "train_epoch_seconds": s.train_seconds, "eval_seconds": s.eval_seconds,
                "mean_train_epoch_seconds": float(np.mean(s.train_seconds)) if s.train_seconds else 0.0,
                "mean_eval_seconds": float(np.mean(s.eval_seconds)) if s.eval_seconds else 0.0,
                "wall_seconds_this_session": time.perf_counter() - start,
            },
            "protocol": self.protocol(),
            "data": self.data.stats(),
            "device": str(self.device),
        }
        if self.world > 1:
            results["processes"] = self.world
        if self.main:
            write_json(self.run_dir / RESULTS, results)
        return results
