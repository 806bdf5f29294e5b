"""Print generated profiles from a dataset folder (``usr_prf.pkl`` / ``itm_prf.pkl``).

    python data/read_profile.py --dataset yelp                 # one random user
    python data/read_profile.py --dataset demo --item 12 --item 40
    python data/read_profile.py --data-dir data/yelp --user 7

Profiles are indexed by id; each entry holds ``profile`` (RLMRec's summarisation) and
``reasoning``. Pickles are read with semrec's restricted unpickler.
"""
from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

FILES = {"user": "usr_prf.pkl", "item": "itm_prf.pkl"}


def read_profiles(folder: str | Path, kind: str = "user"):
    """The profiles of ``kind`` ('user' or 'item') in ``folder``, indexable by id.

    Raises:
        FileNotFoundError: no profile file.
        DataError: a refused or unreadable pickle, or one that is not ``{id: {"profile": ...}}``.
    """
    from semrec.common.io import DataError, load_pickle

    path = Path(folder) / FILES[kind]
    if not path.exists():
        raise FileNotFoundError(f"{path}: no {kind} profiles; generate them with "
                                f"`python generation/{kind}/generate_profile.py`")
    profiles = load_pickle(path)
    entries = profiles.values() if isinstance(profiles, dict) else profiles if isinstance(profiles, list) else None
    if entries is None or not all(isinstance(e, dict) and isinstance(e.get("profile"), str) for e in entries):
        raise DataError(f"{path}: not a profile file (expected {{id: {{'profile': str, 'reasoning': str}}}}, "
                        f"got {type(profiles).__name__} with other entries)")
    return profiles


def printable(text: str) -> str:
    """``text`` safe for a terminal: control characters (escape sequences, NUL, ...) shown as
    ``\\x..`` / ``\\u....`` escapes; line breaks and tabs kept. A profile is an LLM's reply and a
    pickle anyone may have written: printed raw, it could rewrite the screen."""
    return "".join(c if c in "\n\t" or (c.isprintable()) else repr(c)[1:-1] for c in text)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Show user or item profiles.")
    p.add_argument("--dataset", help="a folder name under data/")
    p.add_argument("--data-dir", help="a dataset folder")
    p.add_argument("--user", type=int, action="append", default=[], help="user id (repeatable)")
    p.add_argument("--item", type=int, action="append", default=[], help="item id (repeatable)")
    p.add_argument("--seed", type=int, default=None, help="seed for the random pick")
    args = p.parse_args(argv)
    if not args.data_dir and not args.dataset:
        p.error("give --dataset NAME or --data-dir DIR")
    from semrec.common.io import DataError, data_root

    folder = Path(args.data_dir) if args.data_dir else data_root() / args.dataset
    wanted = [("user", i) for i in args.user] + [("item", i) for i in args.item]
    try:
        if not wanted:
            wanted = [("user", random.Random(args.seed).randrange(len(read_profiles(folder, "user"))))]
        for kind, idx in wanted:
            profiles = read_profiles(folder, kind)
            try:
                entry = profiles[idx]
            except (KeyError, IndexError):
                raise KeyError(f"{kind} {idx} has no profile ({len(profiles)} {kind} profiles)") from None
            print(f"{kind.capitalize()} {idx}'s profile:\n")
            print(f"PROFILE: {printable(entry['profile'])}\n")
            print(f"REASONING: {printable(str(entry.get('reasoning', '')))}\n")
    except (FileNotFoundError, KeyError, DataError) as e:
        print(f"read_profile.py: error: {e.args[0]}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
