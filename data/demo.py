"""Write semrec's demo dataset (:mod:`semrec.common.demo`: what it holds and how it is made).

    python data/demo.py [--out data/demo] [--seed 7]

``train_encoder.py --dataset demo`` makes it on first use; this script writes it anywhere.
"""
from __future__ import annotations

import argparse
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    from semrec.common.demo import make_demo
    from semrec.common.io import data_root

    p = argparse.ArgumentParser(description="Write semrec's demo dataset.")
    p.add_argument("--out", default=str(data_root() / "demo"))
    p.add_argument("--seed", type=int, default=7)
    args = p.parse_args(argv)
    print(f"wrote {make_demo(Path(args.out), seed=args.seed)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
