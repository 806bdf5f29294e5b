"""Build the text-bearing benchmark datasets for alignment: Yelp-text and MovieLens-100K-text.

    python data/text_benchmark.py yelp_text   [--shared ../shared/data] [--out-dir data]
    python data/text_benchmark.py ml100k_text

RLMRec's own profiles are not public, so these datasets carry real text of their own:

* ``yelp_text``: the S3-Rec Yelp interactions with the Yelp business names and categories
  (GAMER's ``Yelp.item.json``: its item k is S3-Rec item k+1);
* ``ml100k_text``: MovieLens-100K with titles, years, genres and user age/gender/occupation.

Both are converted with ``data/prepare.py`` (random 3:1:1 split per user, seed 2023).
Item profiles come from the item's own metadata; user profiles from the items of the user's
*training* interactions only (never validation or test items). Profiles are embedded with
the local sentence encoder (all-MiniLM-L6-v2, 384-d). When LLM profiles are generated
(``generation/``), they replace these template profiles.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np

from semrec.common.io import load_pickle, write_pickle

if __package__ in (None, ""):
    from semrec.data.prepare import convert
    from semrec.data.readers import read_recbole, read_s3rec
else:
    from .prepare import convert
    from .readers import read_recbole, read_s3rec

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def _items(folder: Path) -> list[dict]:
    return [json.loads(x) for x in (folder / "items.jsonl").read_text().splitlines()]


def _train_items(folder: Path) -> list[np.ndarray]:
    trn = load_pickle(folder / "trn_mat.pkl").tocsr()
    return [trn.indices[trn.indptr[u]:trn.indptr[u + 1]] for u in range(trn.shape[0])]


def yelp_profiles(folder: Path) -> tuple[dict, dict]:
    items = _items(folder)
    cats = [[c.strip() for c in it.get("description", "").split(",") if c.strip()] for it in items]
    item_prf = {it["iid"]: {"profile": f"{it.get('title', 'A business')}: {', '.join(cats[k]) or 'no category listed'}.",
                            "reasoning": "Name and Yelp categories of the business."} for k, it in enumerate(items)}
    user_prf = {}
    for u, seen in enumerate(_train_items(folder)):
        top = [c for c, _ in Counter(c for i in seen for c in cats[i] if c not in ("Restaurants", "Food")).most_common(5)]
        names = ", ".join(items[i].get("title", "") for i in seen[:8])
        user_prf[u] = {"profile": f"Enjoys {', '.join(top) or 'local businesses'}; has visited {names}.",
                       "reasoning": f"Categories and names of the {len(seen)} businesses in the user's training history."}
    return user_prf, item_prf


def ml100k_profiles(folder: Path) -> tuple[dict, dict]:
    items = _items(folder)
    users = [json.loads(x) for x in (folder / "users.jsonl").read_text().splitlines()]
    genres = [it.get("class", "").split() for it in items]
    item_prf = {it["iid"]: {"profile": f"{it.get('movie_title', 'A movie')} ({it.get('release_year', 'year unknown')}), "
                                       f"a {' / '.join(genres[k]) or 'film'} movie.",
                            "reasoning": "Title, year and genres of the movie."} for k, it in enumerate(items)}
    gender = {"M": "man", "F": "woman"}
    user_prf = {}
    for u, seen in enumerate(_train_items(folder)):
        meta = users[u]
        top = [g for g, _ in Counter(g for i in seen for g in genres[i]).most_common(3)]
        titles = ", ".join(items[i].get("movie_title", "") for i in seen[:8])
        user_prf[u] = {"profile": (f"A {meta.get('age', '?')}-year-old {gender.get(meta.get('gender'), 'person')} working as "
                                   f"{meta.get('occupation', 'unknown')} who likes {', '.join(top) or 'films'} movies "
                                   f"such as {titles}."),
                       "reasoning": f"Demographics and the {len(seen)} movies in the user's training history."}
    return user_prf, item_prf


def _yelp(shared: Path):
    raw = read_s3rec(shared / "s3rec" / "Yelp.txt", shared / "gamer_yelp_text" / "Yelp.item.json", 1)
    for meta in raw.item_meta.values():  # GAMER's "description" is the business's Yelp categories
        if meta.get("description"):
            meta["categories"] = meta["description"]
    return raw


# name -> (reader, profile maker, metadata fields that become item attributes; None: all)
DATASETS = {
    # Yelp: the category names (S3-Rec's attribute ids are the same categories, unnamed)
    "yelp_text": (_yelp, yelp_profiles, ("categories",)),
    # MovieLens-100K: genres and the Freebase facts (director, actors, ...)
    "ml100k_text": (lambda s: read_recbole(s / "ml-100k"), ml100k_profiles, None),
}


def convert_dataset(name: str, shared: Path, out_dir: Path) -> Path:
    """The interactions, metadata and item attributes of ``name`` (no profiles or embeddings)."""
    read, _, fields = DATASETS[name]
    folder = out_dir / name
    convert(read(shared), folder, source=f"{name}:{shared}", options={"builder": "text_benchmark.py"},
            split="random", ratios=(3.0, 1.0, 1.0), seed=2023, attribute_fields=fields)
    return folder


def build(name: str, shared: Path, out_dir: Path, model_path: str | None = None) -> Path:
    from semrec.generation.embedding import LocalEncoder

    folder = convert_dataset(name, shared, out_dir)
    user_prf, item_prf = DATASETS[name][1](folder)
    encoder = LocalEncoder(model_path)
    files = {"usr_prf.pkl": user_prf, "itm_prf.pkl": item_prf,
             "usr_emb_np.pkl": encoder.encode([user_prf[u]["profile"] for u in range(len(user_prf))]),
             "itm_emb_np.pkl": encoder.encode([item_prf[i]["profile"] for i in range(len(item_prf))])}
    for fname, obj in files.items():
        write_pickle(folder / fname, obj)
    return folder


def _out_dir(args) -> Path:
    from semrec.common.io import data_root

    return Path(args.out_dir) if args.out_dir else data_root()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("name", choices=sorted(DATASETS))
    p.add_argument("--shared", default=str(SHARED), help="the folder holding s3rec/, gamer_yelp_text/, ml-100k/")
    p.add_argument("--out-dir", default=None, help="parent folder (default: $SEMREC_HOME/data, or ./data)")
    p.add_argument("--model-path", help="sentence-transformers model folder (default: all-MiniLM-L6-v2 package)")
    p.add_argument("--no-text", action="store_true", help="only the interactions, metadata and item attributes "
                                                          "(no profiles or embeddings: enough for graph models)")
    args = p.parse_args(argv)
    shared = Path(args.shared)
    if not shared.is_dir():
        print(f"text_benchmark.py: {shared} not found (pass --shared DIR)", file=sys.stderr)
        return 2
    if args.no_text:
        folder = convert_dataset(args.name, shared, _out_dir(args))
    else:
        folder = build(args.name, shared, _out_dir(args), args.model_path)
    print(f"wrote {folder}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
