"""RERec in one command: Amazon reviews -> sentences chosen by MMR -> item text -> embeddings -> LLM-ESR.

    python generation/rerec.py ../shared/data/amazon2018_magazine --name magazine_rerec --train
    python generation/rerec.py Beauty.jsonl.gz --meta meta_Beauty.jsonl.gz --name beauty_rerec --sentences 8
    python generation/rerec.py ../shared/data/amazon2018_magazine --name magazine_meta --sentences 0  # metadata only

RERec (review-enhanced item representations) describes each item by its metadata plus the few
review sentences that best summarise what its reviewers say, and trains LLM-ESR on embeddings of
that text. Steps, each resumable (the same command again skips what is done):

1. ``data/prepare.py amazon`` (2014/2018 or 2023 format), leave-one-out over each user's
   de-duplicated time-ordered items: the split every sequential model evaluates on.
2. Every *training* review is split into sentences (a review a user wrote about a validation or
   test item is never read), the distinct sentences are embedded by the local encoder (cached in
   chunks under ``rerec_cache/``, so a killed run keeps what it embedded).
3. Per item, ``--sentences`` K sentences by MMR (:mod:`semrec.generation.mmr`): relevance to the
   centroid of the item's sentences, newer reviews weighing more (``--half-life-days``), against
   redundancy with the sentences picked (``--mmr-lambda``); near duplicates (``--dup-threshold``)
   are never both picked. Written to ``item_sentences.jsonl``.
4. Item text = metadata + the chosen sentences; user text = titles of the user's training items.
   Both become ``itm_emb_np.pkl`` / ``usr_emb_np.pkl`` (local encoder or an OpenAI-compatible
   endpoint, the flags of ``generation/emb/generate_emb.py``).
5. With ``--train``: ``train_encoder.py --model llmesr`` on that folder (``--set`` passes on).

The resolved settings are kept in ``rerec.json`` in the dataset folder. Installed as ``semrec-rerec``.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import io
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

OUTPUT = "item_sentences.jsonl"
STATE = "rerec.json"
DAY = 86400.0


@dataclass(frozen=True)
class ReviewSelection:
    """How an item's review sentences are chosen.

    Args:
        sentences: K, sentences kept per item (0: metadata only, LLM-ESR's text).
        mmr_lambda: relevance against redundancy, in [0, 1].
        dup_threshold: cosine similarity at which a sentence counts as a duplicate of a picked one.
        half_life_days: a review this much older than the item's newest weighs half in the
            centroid (0: all weigh the same).
        min_chars: shorter fragments are not sentences.
    """

    sentences: int = 5
    mmr_lambda: float = 0.7
    dup_threshold: float = 0.95
    half_life_days: float = 365.0
    min_chars: int = 12

    def __post_init__(self):
        if self.sentences < 0:
            raise ValueError(f"sentences must be >= 0, got {self.sentences}")
        if not 0.0 <= self.mmr_lambda <= 1.0:
            raise ValueError(f"mmr_lambda must be in [0, 1], got {self.mmr_lambda}")
        if not 0.0 < self.dup_threshold <= 1.0:
            raise ValueError(f"dup_threshold must be in (0, 1], got {self.dup_threshold}")
        if not (self.half_life_days >= 0 and np.isfinite(self.half_life_days)):
            raise ValueError(f"half_life_days must be a finite number >= 0, got {self.half_life_days}")
        if self.min_chars < 1:
            raise ValueError(f"min_chars must be >= 1, got {self.min_chars}")

    @classmethod
    def from_mapping(cls, values: dict[str, Any]) -> "ReviewSelection":
        """From a config mapping; an unknown key is an error listing the valid ones."""
        valid = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(values) - set(valid))
        if unknown:
            raise ValueError(f"unknown review-selection setting(s) {', '.join(unknown)}; valid: {', '.join(valid)}")
        return cls(**values)


def training_reviews(text) -> list[list[tuple[str, float | None]]]:
    """Per item, the ``(review, timestamp)`` of its *training* interactions, from a
    :class:`~semrec.generation.prompts.DatasetText` (validation and test reviews are never in it)."""
    reviews: list[list[tuple[str, float | None]]] = [[] for _ in range(text.num_items)]
    for (_, i), fb in text.feedback.items():
        if fb.get("review"):
            t = fb.get("timestamp")
            reviews[i].append((str(fb["review"]), float(t) if isinstance(t, (int, float)) else None))
    return reviews


def item_sentences(reviews: list[list[tuple[str, float | None]]], min_chars: int
                   ) -> tuple[list[str], list[np.ndarray], list[np.ndarray]]:
    """The distinct sentences of all reviews, and per item the index of each of its sentences
    in that list and the time of the review it came from (NaN where unknown)."""
    from semrec.generation.mmr import split_sentences

    index: dict[str, int] = {}
    rows, times = [], []
    for item in reviews:
        r, t = [], []
        for text, when in item:
            for s in split_sentences(text, min_chars):
                r.append(index.setdefault(s, len(index)))
                t.append(np.nan if when is None else when)
        rows.append(np.asarray(r, dtype=np.int64))
        times.append(np.asarray(t, dtype=np.float64))
    return list(index), rows, times


def embed_cached(texts: list[str], encode: Callable[[list[str]], np.ndarray], cache: Path, key: str,
                 chunk: int = 2048, progress_every: float = 30.0) -> np.ndarray:
    """``encode(texts)`` in chunks, each saved under ``cache`` once done (named by ``key`` and its
    texts), so a killed run embeds only what it had not; a damaged chunk file is embedded again."""
    from semrec.common.io import atomic_write
    from semrec.common.progress import Progress

    cache.mkdir(parents=True, exist_ok=True)
    parts = []
    with Progress(len(texts), "sentence embeddings", every=progress_every) as bar:
        for start in range(0, len(texts), chunk):
            part = texts[start:start + chunk]
            digest = hashlib.sha256("\x00".join([key, *part]).encode("utf-8")).hexdigest()[:24]
            f = cache / f"{digest}.npy"
            emb = None
            if f.exists():
                try:
                    emb = np.load(f, allow_pickle=False)
                except (OSError, ValueError):
                    emb = None
                if emb is not None and (emb.ndim != 2 or len(emb) != len(part) or not np.isfinite(emb).all()):
                    emb = None
            if emb is None:
                emb = np.asarray(encode(part), dtype=np.float32)
                if emb.ndim != 2 or len(emb) != len(part) or not np.isfinite(emb).all():
                    raise ValueError(f"the encoder returned {emb.shape} (or NaN/inf) for {len(part)} sentences")
                buf = io.BytesIO()
                np.save(buf, emb, allow_pickle=False)
                atomic_write(f, buf.getvalue())
            parts.append(emb)
            bar.update(len(part))
    return np.concatenate(parts) if parts else np.zeros((0, 0), dtype=np.float32)


def choose(emb: np.ndarray, rows: list[np.ndarray], times: list[np.ndarray], sel: ReviewSelection,
           progress_every: float = 30.0) -> list[list[int]]:
    """Per item, the indices (into ``emb``) of its sentences chosen by MMR, in the order chosen."""
    from semrec.common.progress import Progress
    from semrec.generation.mmr import mmr_select, recency_weights

    unit = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12) if len(emb) else emb
    chosen = []
    with Progress(len(rows), "MMR over items", every=progress_every) as bar:
        for r, t in zip(rows, times):
            weights = None
            if sel.half_life_days > 0 and len(t) and np.isfinite(t).all():
                weights = recency_weights(t, sel.half_life_days * DAY)
            picked = mmr_select(unit[r], sel.sentences, sel.mmr_lambda, sel.dup_threshold, weights) if len(r) else []
            chosen.append([int(r[p]) for p in picked])
            bar.update()
    return chosen


def item_text(fields: str, sentences: list[str]) -> str:
    """An item's text: its metadata, then what its reviewers say."""
    if not sentences:
        return fields
    return f"{fields}\nReviewers say: " + " ".join(sentences)


def _settings_key(d: dict) -> str:
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def build(folder: Path, sel: ReviewSelection, emb_settings, log=print, progress_every: float = 30.0) -> dict:
    """Steps 2-4 on a prepared dataset folder; returns what ``rerec.json`` records."""
    from semrec.common.io import write_json, atomic_write
    from semrec.generation.emb.generate_emb import embed_dataset, make_encoder
    from semrec.generation.profiles import metadata_profiles, write_profiles
    from semrec.generation.prompts import DatasetText

    text = DatasetText(folder)
    encoder = make_encoder(emb_settings, folder)
    t0 = time.perf_counter()
    picked_text: list[list[str]] = [[] for _ in range(text.num_items)]
    stats: dict[str, Any] = {"items": text.num_items, "users": text.num_users}
    if sel.sentences:
        reviews = training_reviews(text)
        sentences, rows, times = item_sentences(reviews, sel.min_chars)
        stats.update(training_reviews=sum(map(len, reviews)), distinct_sentences=len(sentences))
        log(f"{stats['training_reviews']} training reviews, {len(sentences)} distinct sentences")
        key = f"{encoder.name}|{getattr(emb_settings, 'model_path', None) or emb_settings.encoder}"
        emb = embed_cached(sentences, encoder.encode, folder / "rerec_cache" / "sentences", key,
                           progress_every=progress_every)
        t1 = time.perf_counter()
        chosen = choose(emb, rows, times, sel, progress_every)
        stats.update(embed_s=round(t1 - t0, 2), mmr_s=round(time.perf_counter() - t1, 2),
                     items_without_reviews=sum(1 for r in rows if not len(r)))
        picked_text = [[sentences[j] for j in c] for c in chosen]
        atomic_write(folder / OUTPUT, "".join(json.dumps({"iid": i, "sentences": s}, ensure_ascii=False) + "\n"
                                              for i, s in enumerate(picked_text)).encode("utf-8"))
    else:
        (folder / OUTPUT).unlink(missing_ok=True)
    items = {i: {"profile": item_text(text.item_fields(i) or text.item_title(i), picked_text[i]),
                 "reasoning": f"metadata and {len(picked_text[i])} review sentences chosen by MMR"}
             for i in range(text.num_items)}
    write_profiles(folder, "item", items)
    write_profiles(folder, "user", metadata_profiles("user", text))
    embed_dataset(folder, emb_settings, log=log, encoder=encoder)
    stats["seconds"] = round(time.perf_counter() - t0, 2)
    write_json(folder / "rerec_stats.json", stats)
    return stats


# -------------------------------------------- CLI ---------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    from semrec.generation.emb.generate_emb import add_emb_arguments

    p = argparse.ArgumentParser(prog="semrec-rerec", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("path", help="Amazon reviews file, or a folder with it (and meta_* beside it)")
    p.add_argument("--name", required=True, help="dataset name (the output folder's name)")
    p.add_argument("--out-dir", help="parent folder (default: $SEMREC_HOME/data, or ./data)")
    p.add_argument("--meta", help="metadata file (default: meta_* beside the reviews)")
    p.add_argument("--kcore", type=int, default=5, help="k-core of users and items (default 5)")
    p.add_argument("--min-rating", type=float, help="drop interactions rated below this")
    p.add_argument("--seed", type=int, default=2023, help="seed of the preparation and of training")
    sel = p.add_argument_group("review sentences")
    d = ReviewSelection()
    sel.add_argument("--config", help="YAML with any of: " + ", ".join(f.name for f in dataclasses.fields(d)))
    sel.add_argument("--sentences", type=int, help=f"K, sentences per item (default {d.sentences}; 0: metadata only)")
    sel.add_argument("--mmr-lambda", type=float, help=f"relevance against redundancy (default {d.mmr_lambda})")
    sel.add_argument("--dup-threshold", type=float, help=f"near-duplicate cosine (default {d.dup_threshold})")
    sel.add_argument("--half-life-days", type=float, help=f"recency half-life (default {d.half_life_days}; 0: off)")
    sel.add_argument("--min-chars", type=int, help=f"shortest sentence (default {d.min_chars})")
    sel.add_argument("--progress-every", type=float, default=30.0,
                     help="seconds between progress lines when the output is not a terminal")
    add_emb_arguments(p)
    t = p.add_argument_group("training")
    t.add_argument("--train", action="store_true", help="then train LLM-ESR on the folder")
    t.add_argument("--model", default="llmesr", help="the model trained (default llmesr)")
    t.add_argument("--run-out", help="run folder (default runs/<name>/<model>/...)")
    t.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="passed to train_encoder.py")
    return p


def selection_from_args(args: argparse.Namespace) -> ReviewSelection:
    values: dict[str, Any] = {}
    if args.config:
        import yaml

        from semrec.common.io import read_text

        loaded = yaml.safe_load(read_text(args.config, ValueError)) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{args.config}: expected a mapping of review-selection settings")
        values.update(loaded)
    for f in dataclasses.fields(ReviewSelection):
        v = getattr(args, f.name)
        if v is not None:
            values[f.name] = v
    return ReviewSelection.from_mapping(values)


def prepare(args: argparse.Namespace, out: Path, log=print) -> None:
    """Step 1, skipped when ``out`` holds this source prepared with these options."""
    from semrec.data.prepare import convert
    from semrec.data.readers import PrepareError, read_amazon

    src = Path(args.path)
    options = {"source": str(src.resolve()), "meta": args.meta, "kcore": args.kcore, "min_rating": args.min_rating,
               "seed": args.seed, "split": "leave-one-out", "dedup": True}
    stats_file = out / "stats.json"
    if stats_file.exists():
        try:
            done = json.loads(stats_file.read_text()).get("options")
        except (OSError, ValueError):
            done = None
        if done == options:
            log(f"{out}: prepared already")
            return
        if (out / "trn_mat.pkl").exists() and (out / STATE).exists():
            log(f"{out}: prepared with other options; preparing again")
        elif (out / "trn_mat.pkl").exists():
            raise PrepareError(f"{out} holds a dataset this command did not make; choose another --name")
    if not src.exists():
        raise PrepareError(f"{src}: no such file or folder")
    raw = read_amazon(src, Path(args.meta) if args.meta else None)
    if raw.reviews is None or not any(raw.reviews):
        raise PrepareError(f"{src}: no review text found (RERec reads the reviews' text)")
    convert(raw, out, source=f"amazon:{src}", options=options, min_rating=args.min_rating, dedup=True,
            user_core=args.kcore, item_core=args.kcore, split="leave-one-out", seed=args.seed)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from semrec.common.io import DataError, check_name, data_root, write_json
    from semrec.data.readers import PrepareError
    from semrec.generation.emb.generate_emb import EmbeddingSettings
    from semrec.generation.llm import LLMError

    t0 = time.perf_counter()
    try:
        check_name(args.name, hint="--name is the folder's own name; choose its parent with --out-dir")
        sel = selection_from_args(args)
        emb = EmbeddingSettings.from_args(args)
        out = (Path(args.out_dir) if args.out_dir else data_root()) / args.name
        prepare(args, out)
        stats = build(out, sel, emb, progress_every=args.progress_every)
        write_json(out / STATE, {"selection": dataclasses.asdict(sel),
                                 "embeddings": {k: v for k, v in dataclasses.asdict(emb).items() if k != "emb_api_key"},
                                 "source": str(Path(args.path).resolve()), "meta": args.meta, "kcore": args.kcore,
                                 "min_rating": args.min_rating, "seed": args.seed, "stats": stats})
    except (PrepareError, DataError, ValueError, FileNotFoundError, RuntimeError, LLMError) as e:
        print(f"semrec-rerec: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"semrec-rerec: {e.filename or 'a file'}: {e.strerror or e}", file=sys.stderr)
        return 2
    print(f"item text and embeddings for {out} in {time.perf_counter() - t0:.1f} s")
    if not args.train:
        print(f"train with: semrec-train --model {args.model} --data-dir {out}")
        return 0
    from semrec.encoder.train_encoder import main as train

    cmd = ["--model", args.model, "--data-dir", str(out), "--dataset", args.name, "--seed", str(args.seed)]
    if args.run_out:
        cmd += ["--out", args.run_out]
    return train(cmd + [x for s in args.overrides for x in ("--set", s)])


if __name__ == "__main__":
    raise SystemExit(main())
