"""The demo dataset: a small, deterministic city-guide dataset that semrec makes itself.

    python data/demo.py [--out data/demo]      # or: --dataset demo makes it on first use

Venues belong to one of 16 themes (Italian food, climbing gyms, jazz bars, ...). Every user
has a taste for a few themes and visits venues by taste × popularity, with some noise;
each user's visits are split 3:1:1 into train / validation / test. Every venue gets a text
profile from its theme's vocabulary; every user gets a profile written from the venues of
their *training* visits only. The semantic embeddings are computed from those texts by a
small deterministic bag-of-words encoder (each word a fixed pseudo-random vector), so the
signal in them is the text's, as with an LLM profile and a sentence encoder.

Output, in RLMRec's layout: ``trn_mat.pkl``, ``val_mat.pkl``, ``tst_mat.pkl``,
``usr_prf.pkl``, ``itm_prf.pkl`` (``{id: {"profile", "reasoning"}}``), ``usr_emb_np.pkl``,
``itm_emb_np.pkl``, plus ``README.md``. The same seed always gives the same bytes.
"""
from __future__ import annotations

import re
import zlib
from collections import Counter
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from semrec.common.io import write_pickle

THEMES = {
    "italian restaurant": "pasta pizza risotto tiramisu espresso trattoria wine basil",
    "sushi bar": "sushi sashimi nigiri ramen sake miso wasabi omakase",
    "craft brewery": "beer ale stout taproom hops pretzels brewery pints",
    "vegan cafe": "vegan salads smoothies tofu organic bowls oat plant",
    "steakhouse": "steak ribeye grill bourbon fries brisket smokehouse beef",
    "jazz club": "jazz saxophone trio cocktails live music lounge vinyl",
    "climbing gym": "bouldering climbing ropes chalk workout fitness routes belay",
    "yoga studio": "yoga meditation pilates stretching breathing calm mats wellness",
    "bookshop": "books novels poetry reading authors paperbacks quiet browsing",
    "art museum": "paintings sculpture exhibitions gallery modern artists collection curator",
    "taco stand": "tacos salsa burritos tortillas carnitas guacamole spicy mexican",
    "bakery": "bread croissants pastries sourdough cakes baguette cookies butter",
    "nail salon": "manicure pedicure nails polish spa beauty gel pampering",
    "auto repair": "mechanic brakes tires oil engine repair garage diagnostics",
    "karaoke lounge": "karaoke singing songs friends party microphone booths night",
    "dim sum house": "dumplings dimsum buns tea cantonese noodles wontons brunch",
}
PLACE_WORDS = ["Corner", "House", "Place", "Spot", "Hall", "Room", "Garden", "Works", "Club", "Yard"]
ADJECTIVES = ["Golden", "Little", "Blue", "Old", "Urban", "Happy", "Silver", "North", "Red", "Quiet"]


def encode_texts(texts: list[str], dim: int = 64) -> np.ndarray:
    """Deterministic bag-of-words sentence encoder: mean of fixed per-word random vectors, L2-normalised."""
    out = np.zeros((len(texts), dim), dtype=np.float32)
    cache: dict[str, np.ndarray] = {}
    for row, text in enumerate(texts):
        words = [w for w in re.findall(r"[a-z]+", text.lower()) if len(w) > 3]
        for w in words:
            if w not in cache:
                cache[w] = np.random.default_rng(zlib.crc32(w.encode())).standard_normal(dim).astype(np.float32)
            out[row] += cache[w]
        norm = np.linalg.norm(out[row])
        if norm > 0:
            out[row] /= norm
    return out


def _split_per_user(rng: np.random.Generator, items: np.ndarray, ratios=(3, 1, 1)) -> list[np.ndarray]:
    items = rng.permutation(items)
    n = len(items)
    n_val = max(1, round(n * ratios[1] / sum(ratios)))
    n_tst = max(1, round(n * ratios[2] / sum(ratios)))
    n_trn = n - n_val - n_tst
    return [items[:n_trn], items[n_trn:n_trn + n_val], items[n_trn + n_val:]]


def make_demo(out: str | Path, num_users: int = 800, num_items: int = 1000, seed: int = 7) -> Path:
    """Write the demo dataset into ``out`` and return the folder."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    names = list(THEMES)
    vocab = [THEMES[n].split() for n in names]
    n_themes = len(names)

    # venues: one theme each, a popularity, and a name + words drawn from the theme
    item_theme = rng.integers(0, n_themes, num_items)
    popularity = rng.pareto(1.5, num_items) + 1.0
    item_words = [list(rng.choice(vocab[t], size=4, replace=False)) for t in item_theme]
    item_names = [f"{ADJECTIVES[rng.integers(10)]} {w[0].capitalize()} {PLACE_WORDS[rng.integers(10)]}"
                  for w in item_words]

    # users: a taste over 1-3 themes, visits by taste × popularity, 10% noise
    rows, cols = [], []
    for u in range(num_users):
        liked = rng.choice(n_themes, size=rng.integers(1, 4), replace=False)
        taste = np.full(n_themes, 0.02)
        taste[liked] = rng.dirichlet(np.ones(len(liked))) + 0.2
        p = taste[item_theme] * popularity
        p /= p.sum()
        n = int(np.clip(rng.geometric(1 / 14) + 4, 5, 60))
        chosen = rng.choice(num_items, size=n, replace=False, p=0.9 * p + 0.1 / num_items)
        rows += [u] * n
        cols += list(chosen)
    rows, cols = np.asarray(rows), np.asarray(cols)

    splits = [([], []), ([], []), ([], [])]
    for u in range(num_users):
        for s, part in enumerate(_split_per_user(rng, cols[rows == u])):
            splits[s][0].extend([u] * len(part))
            splits[s][1].extend(part)
    shape = (num_users, num_items)
    mats = [sp.coo_matrix((np.ones(len(r)), (np.asarray(r), np.asarray(c))), shape=shape) for r, c in splits]

    item_prf = {}
    for i in range(num_items):
        theme, words = names[item_theme[i]], item_words[i]
        item_prf[i] = {
            "profile": (f"{item_names[i]} is a {theme} known for {words[1]}, {words[2]} and {words[3]}. "
                        f"It attracts people who enjoy {words[0]} and {theme} outings."),
            "reasoning": f"Its description centres on {', '.join(words)}, typical of a {theme}.",
        }
    train = mats[0].tocsr()
    user_prf = {}
    for u in range(num_users):
        seen = train.indices[train.indptr[u]:train.indptr[u + 1]]
        themes = Counter(names[item_theme[i]] for i in seen).most_common(2)
        words = Counter(w for i in seen for w in item_words[i]).most_common(5)
        liked = " and ".join(t for t, _ in themes)
        user_prf[u] = {
            "profile": f"This user mostly visits {liked} venues and likes {', '.join(w for w, _ in words)}.",
            "reasoning": f"Most of their {len(seen)} visited venues are {liked} places.",
        }

    files = {"trn_mat.pkl": mats[0], "val_mat.pkl": mats[1], "tst_mat.pkl": mats[2],
             "itm_prf.pkl": item_prf, "usr_prf.pkl": user_prf,
             "itm_emb_np.pkl": encode_texts([item_prf[i]["profile"] for i in range(num_items)]),
             "usr_emb_np.pkl": encode_texts([user_prf[u]["profile"] for u in range(num_users)])}
    for fname, obj in files.items():
        write_pickle(out / fname, obj)
    (out / "README.md").write_text(
        "# demo\n\nMade by `python data/demo.py` (semrec's synthetic city-guide dataset, seed "
        f"{seed}): {num_users} users, {num_items} venues, {sum(m.nnz for m in mats)} visits split "
        "3:1:1 per user. Profiles are template text; embeddings are a bag-of-words encoding of them.\n")
    return out
