"""Synthetic data speed: formulas rendered per second (generate + render + PNG encode).

    python benchmarks/bench_render.py [--n 400] [--workers 1 2]
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time

from texlens.data.synth.dataset import synth_dataset


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=400)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = ap.parse_args()
    cpu = platform.processor() or platform.machine()
    print(f"machine: {cpu}, python {platform.python_version()}")
    for w in args.workers:
        with tempfile.TemporaryDirectory() as d:
            t0 = time.perf_counter()
            synth_dataset(d, args.n, seed=99, workers=w)
            dt = time.perf_counter() - t0
        print(f"workers={w}: {args.n / dt:.1f} images/s ({args.n} images in {dt:.1f} s)")


if __name__ == "__main__":
    main()
