"""Synthetic data speed: formulas rendered per second.

mathtext (`data synth`: generate + render + PNG encode), then real TeX (render_tex: one
latex + dvipng run over the batch, 150 dpi, one process) on the same kind of formulas.
With --formulas, every TeX font family typesets a sample of those files and its failure
rate is printed (the corpus check of texlens/data/synth/tex.py).

    python benchmarks/bench_render.py [--n 400] [--workers 1 2] [--tex-n 400]
    python benchmarks/bench_render.py --formulas ../shared/data/formulas/books/*.txt \
        ../shared/data/formulas/im2latex100k-val.txt --per-file 40
"""

from __future__ import annotations

import argparse
import platform
import random
import tempfile
import time

from texlens.data.synth.dataset import synth_dataset
from texlens.data.synth.generator import FormulaGenerator
from texlens.data.synth.tex import FONTS, RenderFailure, render_tex, tex_missing


def bench_tex(n: int, font: str = "cm", dpi: int = 150) -> None:
    gen = FormulaGenerator(seed=99)
    formulas = [" ".join(gen.generate()) for _ in range(n)]
    t0 = time.perf_counter()
    out = render_tex(formulas, font=font, dpi=dpi)
    dt = time.perf_counter() - t0
    failed = sum(isinstance(r, RenderFailure) for r in out)
    print(f"tex ({font}, {dpi} dpi, 1 process): {n / dt:.1f} formulas/s "
          f"({n} in {dt:.1f} s, {failed} failed)")


def check_families(files: list[str], per_file: int, seed: int = 0) -> None:
    """Typeset the same sample of real formulas in every family; failure rate and speed."""
    rng = random.Random(seed)
    formulas: list[str] = []
    for path in files:
        with open(path, encoding="utf-8") as f:
            lines = [line.rstrip("\n") for line in f if line.strip()]
        # key<TAB>caption files (CROHME captions) give their caption.
        lines = [line.split("\t", 1)[-1] for line in lines]
        formulas += rng.sample(lines, min(per_file, len(lines)))
    print(f"{len(formulas)} formulas from {len(files)} files")
    for font in FONTS:
        t0 = time.perf_counter()
        out = render_tex(formulas, font=font, dpi=150)
        dt = time.perf_counter() - t0
        bad = [(f, r.message) for f, r in zip(formulas, out, strict=True)
               if isinstance(r, RenderFailure)]
        print(f"{font:10s} failed {len(bad):3d}/{len(formulas)} "
              f"({100 * len(bad) / len(formulas):.1f}%), {len(formulas) / dt:.1f} formulas/s")
        for f, msg in bad[:3]:
            print(f"    {f[:70]!r}: {msg[:90]}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=400)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--tex-n", type=int, default=400, help="0: skip the TeX line")
    ap.add_argument("--formulas", nargs="+", help="check every TeX family on these files")
    ap.add_argument("--per-file", type=int, default=40)
    args = ap.parse_args()
    cpu = platform.processor() or platform.machine()
    print(f"machine: {cpu}, python {platform.python_version()}")
    if args.formulas:
        check_families(args.formulas, args.per_file)
        return
    for w in args.workers:
        with tempfile.TemporaryDirectory() as d:
            t0 = time.perf_counter()
            synth_dataset(d, args.n, seed=99, workers=w)
            dt = time.perf_counter() - t0
        print(f"mathtext workers={w}: {args.n / dt:.1f} images/s ({args.n} images in {dt:.1f} s)")
    if args.tex_n:
        missing = tex_missing()
        print(f"tex: skipped ({missing})") if missing else bench_tex(args.tex_n)


if __name__ == "__main__":
    main()
