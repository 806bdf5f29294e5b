"""Mamba's selective scan on a CPU: semrec's two PyTorch scans and mambapy's, side by side.

    OMP_NUM_THREADS=1 python benchmarks/bench_scan.py [--batch 256] [--inner 128] [--state 16] [--lengths 50 200]

One forward and backward pass of the scan alone (the part ``mamba-ssm`` runs as a CUDA kernel),
at SEAR's sizes: a batch of sequences, ``inner`` channels (Mamba's 2 x d with d 64), ``state``
states per channel, sequence lengths of Beauty (50) and MovieLens (200). Prints seconds per pass
and each method's ratio to semrec's ``loop``. mambapy (a pure-PyTorch Mamba whose scan is a
Blelloch parallel scan) is timed where it is installed (``pip install mambapy``; not a dependency),
and so is autograd through the plain loop (semrec's ``loop`` before its backward pass was written out).
"""
from __future__ import annotations

import argparse
import platform
import time

import torch


def _mambapy():
    try:
        from mambapy.pscan import pscan
    except ImportError:
        return None

    def scan(x, delta, A, B, C):
        h = pscan(torch.exp(delta.unsqueeze(-1) * A), (delta * x).unsqueeze(-1) * B.unsqueeze(2))
        return (h @ C.unsqueeze(-1)).squeeze(-1)

    return scan


def _autograd_loop(x, delta, A, B, C):
    """The recurrence one position a step, differentiated by autograd (the baseline of ``loop``)."""
    h = x.new_zeros(x.shape[0], x.shape[2], A.shape[1])
    out = []
    for t in range(x.shape[1]):
        h = torch.exp(delta[:, t, :, None] * A) * h + (delta[:, t] * x[:, t])[..., None] * B[:, t, None, :]
        out.append((h * C[:, t, None, :]).sum(-1))
    return torch.stack(out, dim=1)


def main(argv: list[str] | None = None) -> int:
    from semrec.encoder.models.sequential.mamba import selective_scan

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--inner", type=int, default=128)
    p.add_argument("--state", type=int, default=16)
    p.add_argument("--lengths", type=int, nargs="+", default=[50, 200])
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    print(f"{platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} torch thread(s)")
    methods = {"loop": lambda *a: selective_scan(*a, method="loop"),
               "parallel": lambda *a: selective_scan(*a, method="parallel"), "autograd loop": _autograd_loop}
    if _mambapy() is not None:
        methods["mambapy pscan"] = _mambapy()
    g = torch.Generator().manual_seed(0)
    for length in args.lengths:
        b, d, n = args.batch, args.inner, args.state
        x, delta = torch.randn(b, length, d, generator=g), torch.rand(b, length, d, generator=g) * 0.1
        A = (-torch.rand(d, n, generator=g)).requires_grad_(True)  # learned in the model
        B, C = torch.randn(b, length, n, generator=g), torch.randn(b, length, n, generator=g)
        seconds = {}
        for name, scan in methods.items():
            leaves = [t.clone().requires_grad_(True) for t in (x, delta, B, C)]
            scan(leaves[0], leaves[1], A, leaves[2], leaves[3]).sum().backward()  # warm-up
            t0 = time.perf_counter()
            for _ in range(args.repeats):
                scan(leaves[0], leaves[1], A, leaves[2], leaves[3]).sum().backward()
            seconds[name] = (time.perf_counter() - t0) / args.repeats
        shown = "  ".join(f"{k} {v:.3f} s ({v / seconds['loop']:.1f}x)" for k, v in seconds.items())
        print(f"L {length}: {shown}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
