"""Throughput of profile generation's client side, and of the local MiniLM embedder.

    python benchmarks/bench_generation.py [--shared ../shared/data] [--concurrency 32]

1. Prepares MovieLens-100K (1,682 items, 943 users) in a temporary folder, starts
   ``generation/serve_local.py --model echo`` in a *separate process* (it answers at once with
   a valid profile), and runs the item and user profile commands against it. What is measured
   is the client: prompt building, the ``openai`` client, JSON parsing and the append-only
   cache. Target: at least 200 profiles/s with concurrency 32.
2. Encodes short profiles (the template profiles of ``data/text_benchmark.py``: 10-40 words)
   with all-MiniLM-L6-v2 on the CPU, at ``--precision auto`` (bfloat16 where the CPU has it)
   and in float32, and compares the two. Target: at least 500 profiles/s.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shared", default=str(REPO.parent / "shared" / "data"))
    p.add_argument("--concurrency", type=int, default=32)
    args = p.parse_args(argv)
    raw = Path(args.shared) / "ml-100k"
    if not raw.exists():
        print(f"skipped: {raw} not found", file=sys.stderr)
        return 0
    import torch

    from semrec.data.prepare import convert
    from semrec.data.readers import read_recbole
    from semrec.data.text_benchmark import ml100k_profiles
    from semrec.generation.embedding import LocalEncoder
    from semrec.generation.profiles import main as profiles

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "ml100k"
        convert(read_recbole(raw), folder, source="bench", options={}, split="random", ratios=(3.0, 1.0, 1.0), seed=2023)
        port = free_port()
        server = subprocess.Popen([sys.executable, str(REPO / "generation" / "serve_local.py"), "--model", "echo",
                                   "--port", str(port)], stdout=subprocess.PIPE, text=True)
        try:
            server.stdout.readline()  # "serving echo at ..."
            rates = {}
            for kind in ("item", "user"):
                t0 = time.perf_counter()
                code = profiles(kind, ["--data-dir", str(folder), "--base-url", f"http://127.0.0.1:{port}/v1",
                                       "--api-key", "local", "--model", "echo", "--concurrency", str(args.concurrency)])
                dt = time.perf_counter() - t0
                assert code == 0, f"{kind} profiles failed"
                n = len((folder / ("itm_prf.jsonl" if kind == "item" else "usr_prf.jsonl")).read_text().splitlines())
                rates[kind] = (n, dt)
        finally:
            server.terminate()
            server.wait()
        user_prf, item_prf = ml100k_profiles(folder)
        texts = [v["profile"] for v in item_prf.values()] + [v["profile"] for v in user_prf.values()]
        emb = {}
        for precision in ("auto", "float32"):
            enc = LocalEncoder(precision=precision)
            enc.encode(texts[:256])  # warm-up
            t0 = time.perf_counter()
            vectors = enc.encode(texts)
            emb[precision] = (enc.precision, time.perf_counter() - t0, vectors)
    words = sum(len(t.split()) for t in texts) / len(texts)
    print(f"machine: {os.cpu_count()} CPUs, torch {torch.__version__}, {torch.get_num_threads()} threads")
    for kind, (n, dt) in rates.items():
        print(f"{kind} profiles: {n} in {dt:.2f} s end to end (prompts + requests + cache + outputs) = "
              f"{n / dt:.0f} profiles/s (target >= 200, ratio {n / dt / 200:.1f}x)")
    for precision, dt, _ in emb.values():
        print(f"MiniLM embeddings ({precision}): {len(texts)} profiles of {words:.0f} words on average in {dt:.2f} s = "
              f"{len(texts) / dt:.0f} profiles/s (target >= 500, ratio {len(texts) / dt / 500:.1f}x)")
    (p_auto, dt_auto, v_auto), (_, dt_full, v_full) = emb["auto"], emb["float32"]
    print(f"{p_auto} vs float32: {dt_full / dt_auto:.1f}x faster, lowest cosine between the two vectors of a "
          f"profile {float((v_auto * v_full).sum(1).min()):.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
