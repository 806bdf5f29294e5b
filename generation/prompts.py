"""Prompts for item and user profiles, built from a prepared dataset's *training* split only.

A dataset prepared by ``data/prepare.py`` carries ``items.jsonl`` (metadata), ``users.jsonl``
(attributes, when the source has them), ``interactions.jsonl`` (split, rating, review) and the
matrices. :class:`DatasetText` reads them and keeps, for every user and item, only what the
training matrix ``trn_mat.pkl`` contains: a validation or test interaction, its rating and its
review never reach a prompt.

Instructions are text files in ``generation/instruction/<dataset>/`` (falling back to
``default/``): ``item_system.txt`` / ``user_system.txt`` (what the model is asked) and
``item_input.txt`` / ``user_input.txt`` (the message, with ``{item}``, ``{reviews}``, ``{user}``,
``{items}`` filled in). Reviews and items are sampled with a fixed seed per entity and added
until the message reaches ``token_budget`` (estimated as characters / 4).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

INSTRUCTIONS = Path(__file__).resolve().parent / "instruction"
KINDS = ("item", "user")
CHARS_PER_TOKEN = 4
_TITLE_KEYS = ("title", "movie_title", "name", "business_name")
# ids, not text: raw ids, S3-Rec attribute ids and knowledge-graph entities (the attribute graph reads them)
_HIDDEN = {"iid", "uid", "item_id", "user_id", "zip_code", "attributes", "attribute_names", "kg"}
_LABELS = {"class": "genres", "movie_title": "title"}  # RecBole's field names, as a reader would say them


def estimate_tokens(text: str) -> int:
    """A model-independent token estimate (about four characters per token for English)."""
    return -(-len(text) // CHARS_PER_TOKEN)


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    rows = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise ValueError(f"{path}:{n}: not JSON ({e.msg})") from None
    return rows


def _label(key: str) -> str:
    return _LABELS.get(key, key.replace("_", " "))


def _value(v: Any, limit: int = 300) -> str:
    """A field as one line: a list joined by commas; a list of lists (category paths) as
    ``a > b > c`` paths joined by semicolons."""
    if isinstance(v, (list, tuple)) and v and all(isinstance(x, (list, tuple)) for x in v):
        text = "; ".join(" > ".join(map(str, path)) for path in v)
    else:
        text = ", ".join(map(str, v)) if isinstance(v, (list, tuple)) else str(v)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit].rsplit(" ", 1)[0] + " ..."


class DatasetText:
    """The text side of a prepared dataset, restricted to its training interactions.

    Args:
        folder: a dataset folder written by ``data/prepare.py``.
    """

    def __init__(self, folder: str | Path):
        from semrec.common.io import load_pickle

        self.folder = Path(folder)
        for need in ("trn_mat.pkl", "items.jsonl"):
            if not (self.folder / need).exists():
                raise FileNotFoundError(f"{self.folder / need} not found: profiles need a dataset prepared by "
                                        "data/prepare.py (it writes the matrices and items.jsonl with the metadata)")
        self.train = load_pickle(self.folder / "trn_mat.pkl").tocsr()
        self.num_users, self.num_items = self.train.shape
        items = _read_jsonl(self.folder / "items.jsonl")
        self.items: list[dict[str, Any]] = [{} for _ in range(self.num_items)]
        for row in items:
            if not 0 <= int(row.get("iid", -1)) < self.num_items:
                raise ValueError(f"{self.folder / 'items.jsonl'}: iid {row.get('iid')} outside 0..{self.num_items - 1}")
            self.items[int(row["iid"])] = row
        self.users: list[dict[str, Any]] = [{} for _ in range(self.num_users)]
        if (self.folder / "users.jsonl").exists():
            for row in _read_jsonl(self.folder / "users.jsonl"):
                if 0 <= int(row.get("uid", -1)) < self.num_users:
                    self.users[int(row["uid"])] = row
        # training reviews and ratings, keyed by (user, item); anything outside trn_mat is dropped
        self.feedback: dict[tuple[int, int], dict[str, Any]] = {}
        # and each user's training items in time order, where the interactions file gives it
        self.train_order: list[list[int]] | None = None
        path = self.folder / "interactions.jsonl"
        if path.exists():
            coo = self.train.tocoo()
            in_train = set((coo.row.astype(np.int64) * self.num_items + coo.col).tolist())
            self.train_order = [[] for _ in range(self.num_users)]
            for row in _read_jsonl(path):
                u, i = int(row["uid"]), int(row["iid"])
                if row.get("split") == "train" and u * self.num_items + i in in_train:
                    if (u, i) not in self.feedback:
                        self.train_order[u].append(i)
                    self.feedback[(u, i)] = {k: row[k] for k in ("rating", "review", "timestamp") if k in row}
        self.item_reviews: list[list[tuple[int, str]]] = [[] for _ in range(self.num_items)]
        for (u, i), fb in self.feedback.items():
            if fb.get("review"):
                self.item_reviews[i].append((u, fb["review"]))

    def user_items(self, u: int) -> np.ndarray:
        """Items of user ``u``'s training interactions."""
        return self.train.indices[self.train.indptr[u]:self.train.indptr[u + 1]]

    def user_recent(self, u: int, n: int) -> list[int]:
        """User ``u``'s newest ``n`` training items, oldest first (time order where the dataset
        records it, else item order)."""
        items = self.train_order[u] if self.train_order is not None else self.user_items(u).tolist()
        return list(items[-n:]) if n > 0 else []

    def item_title(self, i: int) -> str:
        meta = self.items[i]
        for k in _TITLE_KEYS:
            if meta.get(k):
                return _value(meta[k], 120)
        return f"item {i}"

    def item_fields(self, i: int) -> str:
        meta = self.items[i]
        return "\n".join(f"{_label(k)}: {_value(v)}" for k, v in meta.items() if k not in _HIDDEN and v not in (None, "", []))

    def user_fields(self, u: int) -> str:
        meta = self.users[u]
        lines = [f"{_label(k)}: {_value(v)}" for k, v in meta.items() if k not in _HIDDEN and v not in (None, "", [])]
        return "\n".join(lines) or "(no attributes recorded)"


@dataclass
class Templates:
    system: str
    input: str


def instruction_folder(dataset: str, root: str | Path | None = None) -> Path:
    """``root/<name>`` for the longest folder name that ``dataset`` starts with (``ml100k_text`` ->
    ``ml100k``), else ``root/default``."""
    root = Path(root) if root else INSTRUCTIONS
    names = sorted((d.name for d in root.iterdir() if d.is_dir() and d.name != "default"), key=len, reverse=True) \
        if root.is_dir() else []
    return root / next((n for n in names if dataset.startswith(n)), "default")


def load_templates(kind: str, dataset: str, root: str | Path | None = None) -> Templates:
    """The ``kind`` templates for ``dataset`` (see :func:`instruction_folder`), part by part
    falling back to ``root/default/``."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    root = Path(root) if root else INSTRUCTIONS
    parts = {}
    for part in ("system", "input"):
        for folder in (instruction_folder(dataset, root), root / "default"):
            if (folder / f"{kind}_{part}.txt").exists():
                parts[part] = (folder / f"{kind}_{part}.txt").read_text(encoding="utf-8").strip()
                break
        else:
            raise FileNotFoundError(f"no {kind}_{part}.txt in {root / dataset} or {root / 'default'}")
    return Templates(**parts)


class PromptBuilder:
    """Chat messages for every item or user of a dataset.

    Args:
        text: the dataset's :class:`DatasetText`.
        kind: ``item`` or ``user``.
        templates: the instruction and message templates.
        token_budget: estimated tokens of the user message at most (metadata always fits first).
        max_reviews: reviews sampled per item (items) or per user (users).
        max_items: training items sampled per user.
        seed: sampling seed (each entity draws from its own stream, so one entity's prompt does
            not change when another's does).
        item_profiles: generated item profiles, shown beside each item in user prompts.
        review_selector: reviews -> sentences to show for an item instead of a random sample of
            reviews (e.g. the MMR selection of :func:`semrec.generation.mmr.select_sentences`).
    """

    def __init__(self, text: DatasetText, kind: str, templates: Templates, token_budget: int = 1024,
                 max_reviews: int = 10, max_items: int = 20, seed: int = 2023,
                 item_profiles: dict[int, dict[str, str]] | None = None,
                 review_selector: Callable[[list[str]], list[str]] | None = None):
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
        self.text, self.kind, self.templates = text, kind, templates
        self.token_budget, self.max_reviews, self.max_items, self.seed = token_budget, max_reviews, max_items, seed
        self.item_profiles = item_profiles or {}
        self.review_selector = review_selector

    def __len__(self) -> int:
        return self.text.num_items if self.kind == "item" else self.text.num_users

    def _rng(self, entity: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, KINDS.index(self.kind), entity])

    def _fill(self, fixed: dict[str, str], key: str, candidates: list[str], empty: str) -> str:
        """The input template with ``fixed`` fields and as many ``candidates`` lines as the budget allows."""
        taken: list[str] = []
        for line in candidates:
            trial = self.templates.input.format(**fixed, **{key: "\n".join(taken + [line])})
            if taken and estimate_tokens(trial) > self.token_budget:
                break
            taken.append(line)
        return self.templates.input.format(**fixed, **{key: "\n".join(taken) if taken else empty})

    def messages(self, entity: int) -> list[dict[str, str]]:
        """``[system, user]`` messages for item or user ``entity``."""
        t = self.text
        rng = self._rng(entity)
        if self.kind == "item":
            reviews = t.item_reviews[entity]
            if self.review_selector is not None and reviews:
                lines = [f'- "{_value(x, 600)}"' for x in self.review_selector([r for _, r in reviews])]
            else:
                pick = rng.permutation(len(reviews))[:self.max_reviews]
                lines = [f'- "{_value(reviews[k][1], 600)}"' for k in pick]
            body = self._fill({"item": t.item_fields(entity) or t.item_title(entity)}, "reviews", lines,
                              "(no reviews in the training data)")
        else:
            seen = t.user_items(entity)
            pick = seen[rng.permutation(len(seen))[:self.max_items]]
            lines = []
            for i in pick.tolist():
                fb = t.feedback.get((entity, i), {})
                line = f"- {t.item_title(i)}"
                if "rating" in fb:
                    line += f" (rated {fb['rating']:g})"
                prf = self.item_profiles.get(i)
                if prf:
                    line += f": {_value(prf['profile'], 400)}"
                if len(lines) < self.max_reviews and fb.get("review"):
                    line += f'\n  their review: "{_value(fb["review"], 400)}"'
                lines.append(line)
            body = self._fill({"user": t.user_fields(entity)}, "items", lines, "(no training interactions)")
        return [{"role": "system", "content": self.templates.system}, {"role": "user", "content": body}]
