"""Side-by-side speed of one LightGCN/GCCF training epoch and one full evaluation.

    python benchmarks/bench_speed.py [--data-dir ../shared/data/rlmrec_yelp] [--epochs 2]

Two implementations of the *same* computation run in this one process, on the same data
and hyperparameters (batch 4096, Adam 1e-3, edge keep-rate 0.8, 3 layers, dim 32, BPR with
one uniform negative per interaction, L2 1e-6 on all parameters; full ranking with
training items masked, Recall/NDCG@5/10/20):

* ``reference``: the way RLMRec's code does the work, rewritten here for measurement:
  a Python loop with a dictionary lookup per interaction for negative sampling, a
  ``DataLoader`` collating one triple at a time, COO ``torch.sparse.mm`` with autograd on
  an edge-dropped COO matrix, and an evaluation that builds dense train masks row by row
  and labels hits with Python membership tests. (RLMRec itself cannot be fetched here.)
* ``semrec``: the toolkit's trainer and evaluator.

It prints seconds for each and the ratio, then where semrec's epoch time goes. With
``--backbones sgl simgcl ...`` it also times one epoch of each named model (Yelp settings, or
``--config-dataset``'s) and prints it relative to semrec's LightGCN epoch and, for an aligned
model, to an epoch of its own backbone with the same ``model.*`` settings (an aligned model's
file may set other layers or weights than its backbone's). A model may carry its own settings,
``"lightgcn_plus[align.sem_dim=64,align.user_negatives=batch]"``, so variants are timed side
by side: round by round, one epoch of every model per round, the best round of each kept
(``--epochs`` rounds), so that a slow spell of the machine does not fall on one model alone.
Aligned models get random semantic embeddings of width ``--sem-dim`` (1536 = OpenAI
ada-002, RLMRec's) when the dataset has none: the cost of the alignment does not depend on
what the vectors say.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch.utils import data as tud

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "rlmrec_yelp"


# ----------------------------- reference (RLMRec-style work pattern) ---------------------------
class _Triples(tud.Dataset):
    def __init__(self, train: sp.coo_matrix):
        self.rows, self.cols = train.row, train.col
        self.seen = train.todok()
        self.num_items = train.shape[1]
        self.negs = np.zeros(len(self.rows), dtype=np.int64)

    def sample(self):
        for k in range(len(self.rows)):
            u = self.rows[k]
            while True:
                j = np.random.randint(self.num_items)
                if (u, j) not in self.seen:
                    break
            self.negs[k] = j

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, k):
        return self.rows[k], self.cols[k], self.negs[k]


class _RefLightGCN(torch.nn.Module):
    def __init__(self, adj: torch.Tensor, users: int, items: int, dim=32, layers=3, keep=0.8, reg=1e-6):
        super().__init__()
        self.adj, self.users, self.layers, self.keep, self.reg = adj, users, layers, keep, reg
        self.u = torch.nn.Parameter(torch.nn.init.xavier_uniform_(torch.empty(users, dim)))
        self.i = torch.nn.Parameter(torch.nn.init.xavier_uniform_(torch.empty(items, dim)))

    def forward(self, keep):
        adj = self.adj
        if keep < 1:
            vals, idx = adj._values(), adj._indices()
            mask = (torch.rand(vals.size()) + keep).floor().bool()
            adj = torch.sparse_coo_tensor(idx[:, mask], vals[mask], adj.shape)
        x = torch.cat([self.u, self.i])
        out = [x]
        for _ in range(self.layers):
            out.append(torch.sparse.mm(adj, out[-1]))
        x = sum(out)
        return x[: self.users], x[self.users:]

    def loss(self, u, i, j):
        us, its = self(self.keep)
        a, p, n = us[u], its[i], its[j]
        bpr = F.softplus((a * n).sum(-1) - (a * p).sum(-1)).sum() / len(u)
        return bpr + self.reg * sum(w.norm(2).square() for w in self.parameters())


def reference_epoch(model, loader, opt):
    loader.dataset.sample()
    for u, i, j in loader:
        opt.zero_grad()
        loss = model.loss(u.long(), i.long(), j.long())
        loss.backward()
        opt.step()


def reference_eval(model, train: sp.csr_matrix, test: sp.csr_matrix, ks=(5, 10, 20)):
    test_users = np.flatnonzero(np.diff(test.indptr))
    lists = [list(test.indices[test.indptr[u]:test.indptr[u + 1]]) for u in range(test.shape[0])]
    us, its = model(1.0)
    totals = {f"{m}@{k}": 0.0 for m in ("recall", "ndcg") for k in ks}
    with torch.no_grad():
        for lo in range(0, len(test_users), 1024):
            batch = test_users[lo:lo + 1024]
            mask = torch.from_numpy(np.stack([train[u].toarray().ravel() for u in batch])).float()
            preds = us[torch.from_numpy(batch)] @ its.T
            preds = preds * (1 - mask) - 1e8 * mask
            top = torch.topk(preds, max(ks)).indices.numpy()
            r = np.array([[x in lists[u] for x in top[n]] for n, u in enumerate(batch)], dtype=float)
            for k in ks:
                n_rel = np.array([len(lists[u]) for u in batch])
                totals[f"recall@{k}"] += (r[:, :k].sum(1) / n_rel).sum()
                disc = 1 / np.log2(np.arange(2, k + 2))
                ideal = np.array([disc[:min(k, n)].sum() for n in n_rel])
                totals[f"ndcg@{k}"] += ((r[:, :k] * disc).sum(1) / ideal).sum()
    return {k: v / len(test_users) for k, v in totals.items()}


# --------------------------------------------- main ----------------------------------------------
def timed(fn, repeat):
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", default=str(DEFAULT_DATA))
    p.add_argument("--epochs", type=int, default=2, help="epochs timed per implementation (best is kept)")
    p.add_argument("--backbones", nargs="*", default=[],
                   help="also time one epoch of these models; NAME[key=value,...] adds settings for that one")
    p.add_argument("--sem-dim", type=int, default=1536, help="width of stand-in semantic embeddings")
    p.add_argument("--set", dest="overrides", action="append", default=[], help="config override for --backbones runs")
    p.add_argument("--skip-reference", action="store_true", help="only the --backbones timings")
    p.add_argument("--config-dataset", default="yelp", metavar="NAME",
                   help="the configs' dataset section the --backbones and --profile runs take (default yelp: "
                        "RLMRec's Yelp settings; e.g. yelp_text for the settings chosen there)")
    p.add_argument("--profile", nargs="?", const="lightgcn", default=None, metavar="MODEL",
                   help="print the torch profiler's table for 10 training steps of MODEL (default lightgcn)")
    args = p.parse_args(argv)
    from semrec.encoder.dataset import load_dataset
    from semrec.encoder.registry import get_model_class

    if not (Path(args.data_dir) / "trn_mat.pkl").exists():
        print(f"skipped: {args.data_dir} not found", file=sys.stderr)
        return 0
    data = load_dataset(args.data_dir)

    if not args.skip_reference:
        compare_with_reference(data, args.epochs)
    if args.profile:
        profile_steps(args.profile, data, args.overrides, args.sem_dim, args.config_dataset)
    if args.backbones:
        runs = {"lightgcn": ("lightgcn", [])}  # label -> (model, settings); one trainer each
        own_base = {}  # aligned model's label -> label of its backbone with the same model settings
        for spec in args.backbones:
            name, own = parse_spec(spec)
            runs[spec] = (name, args.overrides + own)
            backbone = getattr(get_model_class(name), "backbone_cls", None)
            if backbone is not None:
                settings = backbone_settings(name, args.config_dataset, args.overrides + own)
                own_base[spec] = f"{backbone.registered_name}[{','.join(settings)}]"
                runs.setdefault(own_base[spec], (backbone.registered_name, settings))
        seconds = epoch_seconds(runs, data, args.sem_dim, args.epochs, args.config_dataset)
        lightgcn = seconds["lightgcn"]
        print(f"{'lightgcn':>14}: {lightgcn:6.2f} s/epoch", flush=True)
        for spec in args.backbones:
            sec = seconds[spec]
            line = f"{spec:>14}: {sec:6.2f} s/epoch  = {sec / lightgcn:5.2f}x lightgcn"
            if spec in own_base:  # against its own backbone with the same model settings
                name = runs[own_base[spec]][0]
                line += f"  = {sec / seconds[own_base[spec]]:5.2f}x {name} with its model settings"
                line += f" ({seconds[own_base[spec]]:.2f} s)"
            print(line, flush=True)
    return 0


def compare_with_reference(data, epochs: int) -> None:
    from semrec.encoder.graph import normalized_adjacency
    from semrec.encoder.trainer import seed_everything

    seed_everything(2023)
    adj = normalized_adjacency(data.train).tocoo()
    t_adj = torch.sparse_coo_tensor(np.vstack([adj.row, adj.col]), adj.data, adj.shape).coalesce()
    ref = _RefLightGCN(t_adj, data.num_users, data.num_items)
    loader = tud.DataLoader(_Triples(data.train.tocoo()), batch_size=4096, shuffle=True)
    opt = torch.optim.Adam(ref.parameters(), lr=1e-3)
    ref_epoch, _ = timed(lambda: reference_epoch(ref, loader, opt), epochs)
    ref_eval, _ = timed(lambda: reference_eval(ref, data.train, data.test), 1)

    tr = _trainer("lightgcn", data, ["train.epochs=1"], sem_dim=0)
    try:
        ours_epoch, _ = timed(lambda: tr.train_epoch(0), epochs)
        ours_eval, _ = timed(lambda: tr.evaluate("test"), 3)
        # the reference evaluator on semrec's weights must give semrec's numbers
        ref.u.data, ref.i.data = tr.model.user_emb.data, tr.model.item_emb.data
        same = reference_eval(ref, data.train, data.test)
        mine = tr.evaluate("test")
        agree = max(abs(same[k] - mine[k]) for k in same)
        profile = breakdown(tr)
    finally:
        shutil.rmtree(tr.run_dir, ignore_errors=True)

    print(f"threads: {torch.get_num_threads()}")
    print(f"training epoch   reference {ref_epoch:6.2f} s   semrec {ours_epoch:6.2f} s   ratio {ref_epoch / ours_epoch:5.1f}x")
    print(f"full evaluation  reference {ref_eval:6.2f} s   semrec {ours_eval:6.2f} s   ratio {ref_eval / ours_eval:5.1f}x")
    print(f"metric agreement on the same weights: max |diff| = {agree:.2e}")
    print("semrec epoch breakdown (s): " + ", ".join(f"{k} {v:.3f}" for k, v in profile.items()), flush=True)


def _trainer(name: str, data, overrides: list[str], sem_dim: int, section: str = "yelp"):
    """A Trainer for model ``name`` with its configuration for dataset ``section`` (random
    semantic tables if needed)."""
    import dataclasses

    from semrec.encoder.config import resolve_config
    from semrec.encoder.registry import build_model, get_model_class
    from semrec.encoder.trainer import Trainer, seed_everything

    cls = get_model_class(name)
    cfg = resolve_config(name, section, cls, overrides)
    if hasattr(cls, "alignment_cls") and data.user_emb is None:
        rng = np.random.default_rng(0)
        data = dataclasses.replace(data, user_emb=rng.standard_normal((data.num_users, sem_dim), dtype=np.float32),
                                   item_emb=rng.standard_normal((data.num_items, sem_dim), dtype=np.float32))
    sampler = seed_everything(2023)
    model = build_model(name, data, cfg.model, cfg.align)
    return Trainer(model, data, cfg, tempfile.mkdtemp(prefix="semrec-bench-"), torch.device("cpu"), sampler)


def backbone_settings(name: str, section: str, overrides: list[str]) -> list[str]:
    """``model.*`` overrides that give aligned model ``name``'s backbone the aligned model's
    resolved backbone settings (e.g. ``lightgcn_gene`` on Yelp has 2 layers, ``lightgcn`` 3)."""
    from semrec.encoder.config import resolve_config
    from semrec.encoder.registry import get_model_class

    model = resolve_config(name, section, get_model_class(name), overrides).model
    return [f"model.{k}={v}" for k, v in sorted(model.items())]


def parse_spec(spec: str) -> tuple[str, list[str]]:
    """``"name[a.b=1,c.d=x]"`` -> ``("name", ["a.b=1", "c.d=x"])``; a bare name has no settings."""
    name, _, rest = spec.partition("[")
    if rest and not rest.endswith("]"):
        raise SystemExit(f"--backbones {spec!r}: expected NAME or NAME[key=value,...]")
    return name, [x for x in rest[:-1].split(",") if x]


def epoch_seconds(runs: dict[str, tuple[str, list[str]]], data, sem_dim: int, epochs: int = 1,
                  section: str = "yelp") -> dict[str, float]:
    """Seconds of one training epoch of each run (label -> (model, settings), with the
    configuration for dataset ``section``): the best of ``epochs`` rounds, where each round runs
    one epoch of every model in turn, so a slow spell of the machine falls on all of them."""
    trainers = {label: _trainer(name, data, settings, sem_dim, section) for label, (name, settings) in runs.items()}
    best = dict.fromkeys(trainers, float("inf"))
    for epoch in range(epochs):
        for label, tr in trainers.items():
            best[label] = min(best[label], timed(lambda: tr.train_epoch(epoch), 1)[0])
    for tr in trainers.values():
        shutil.rmtree(tr.run_dir, ignore_errors=True)
    return best


def profile_steps(name: str, data, overrides: list[str], sem_dim: int, section: str = "yelp", steps: int = 10) -> None:
    """The torch profiler's per-operator table for ``steps`` training steps of model ``name``."""
    tr = _trainer(name, data, overrides, sem_dim, section)
    tr.model.train()
    batches = list(tr.batches)[:steps + 2]

    def step(b):
        loss, _ = tr.model.loss(b)
        tr.optimizer.zero_grad()
        loss.backward()
        tr.optimizer.step()

    for b in batches[:2]:
        step(b)
    with torch.profiler.profile() as prof:
        for b in batches[2:]:
            step(b)
    shutil.rmtree(tr.run_dir, ignore_errors=True)
    print(f"torch profiler, {steps} {name} steps:")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))


def breakdown(tr) -> dict[str, float]:
    """Where one semrec epoch goes: sampling, forward+loss, backward, optimiser step."""
    parts = dict.fromkeys(["sampling", "forward", "backward", "optimizer"], 0.0)
    tr.model.train()
    t0 = time.perf_counter()
    batches = list(tr.batches)
    parts["sampling"] = time.perf_counter() - t0
    for b in batches:
        t0 = time.perf_counter()
        loss, _ = tr.model.loss(b)
        t1 = time.perf_counter()
        tr.optimizer.zero_grad()
        loss.backward()
        t2 = time.perf_counter()
        tr.optimizer.step()
        t3 = time.perf_counter()
        parts["forward"] += t1 - t0
        parts["backward"] += t2 - t1
        parts["optimizer"] += t3 - t2
    return parts


if __name__ == "__main__":
    raise SystemExit(main())
