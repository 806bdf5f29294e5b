"""One command: item profiles, then user profiles (which show the item profiles), then embeddings.

    python generation/generate_all.py --dataset ml100k --model gpt-4o-mini
    python generation/generate_all.py --dataset ml100k --base-url http://127.0.0.1:8000/v1 --api-key local \\
        --model smollm2 --json-mode --max-tokens 80 --token-budget 300

Takes every flag of ``generation/item/generate_profile.py`` and ``generation/emb/generate_emb.py``.
Each step resumes from its cache, so after an interruption the same command continues where it
stopped. ``--dry-run`` estimates the item step exactly and the user step without item profiles
(they are not written yet), then stops.
"""
from __future__ import annotations

import argparse
import sys
import time

from semrec.generation.emb.generate_emb import EmbeddingSettings, add_emb_arguments, embed_dataset
from semrec.generation.llm import LLMError
from semrec.generation.profiles import ProfileOptions, add_llm_arguments, dataset_folder, generate, settings_from_args
from semrec.generation.prompts import DatasetText


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--dataset", help="a folder name under $SEMREC_HOME/data (or ./data)")
    src.add_argument("--data-dir", help="a dataset folder")
    add_llm_arguments(p)
    add_emb_arguments(p)
    args = p.parse_args(argv)
    folder = dataset_folder(args)
    t0 = time.perf_counter()
    try:
        text = DatasetText(folder)
        settings, options = settings_from_args(args), ProfileOptions.from_args(args)
        for kind in ("item", "user"):
            code = generate(kind, folder, settings, options, text=text)
            if code:
                return code
        if args.dry_run or args.limit is not None:
            return 0
        embed_dataset(folder, EmbeddingSettings.from_args(args))
    except (FileNotFoundError, ValueError, RuntimeError, LLMError) as e:
        print(f"generate_all.py: {e}", file=sys.stderr)
        return 2
    print(f"profiles and embeddings for {folder} in {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
