"""Base vs ``_plus`` vs ``_gene`` vs shuffled controls: the installed ``semrec-align-check``
(:mod:`semrec.encoder.align_check`, where the options are documented), run from the repository.

    python benchmarks/bench_align.py --data-dir data/ml100k_text --markdown docs/benchmarks.md
"""
from semrec.encoder.align_check import main

if __name__ == "__main__":
    raise SystemExit(main(prog="bench_align.py"))
