"""Pack dataset folders into one .tar.xz small enough to travel to a lent GPU machine.

A device call carries at most 64 MiB with the working tree, and that machine has no TeX,
so printed training data is rendered here and shipped. Each image goes in as a raw 8-bit
graymap (.pgm, which texlens reads like any image): xz over raw pixels came out a third
smaller than the same renderings as PNG files (the 1,000 of data/base/val-corpus:
`tar cf - data/base/val-corpus | xz -6 | wc -c` 1.03 MB, this script at its default
level 0.67 MB). Scaling the renderings down first made them larger (the
resampling adds grey levels), so the pixels are kept as rendered.

    python benchmarks/pack_for_device.py data/base/train-corpus=30000 data/base/val-corpus \\
        --out .device/base.tar.xz

DIR=N keeps the first N lines of DIR's caption.txt (rendered sets are already random
samples); the folders keep their paths, so the archive unpacks into the repository root
and configs find them: `python3 -m tarfile -e .device/base.tar.xz .`.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import cv2

from texlens.data.datasets import read_layout, read_pairs
from texlens.data.image import load_image


def _convert(job: tuple[str, str]) -> None:
    src, dst = job
    cv2.imwrite(dst, load_image(src))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dirs", nargs="+", help="DIR or DIR=N (the first N samples)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--xz-level", type=int, default=6)
    args = ap.parse_args()
    stage = Path(tempfile.mkdtemp(prefix="pack-"))
    try:
        jobs = []
        for spec in args.dirs:
            name, _, n = spec.partition("=")
            samples, problems = read_layout(name)
            if problems:
                print(f"{name}: {len(problems)} samples left out, e.g. {problems[0]}")
            samples = samples[: int(n)] if n else samples
            captions = {key: cap for _, key, cap in read_pairs(Path(name) / "caption.txt")}
            out = stage / name
            out.mkdir(parents=True)
            with open(out / "caption.txt", "w", encoding="utf-8") as f:
                for s in samples:
                    f.write(f"{s.key}\t{captions[s.key]}\n")
                    jobs.append((str(s.image), str(out / f"{s.key}.pgm")))
            print(f"{name}: {len(samples)} samples")
        with ProcessPoolExecutor(args.workers) as pool:
            list(pool.map(_convert, jobs, chunksize=256))
        args.out.parent.mkdir(parents=True, exist_ok=True)
        tops = sorted({Path(spec.partition("=")[0]).parts[0] for spec in args.dirs})
        with open(args.out, "wb") as f:
            tar = subprocess.Popen(["tar", "-C", str(stage), "-cf", "-", *tops],
                                   stdout=subprocess.PIPE)
            subprocess.run(["xz", f"-{args.xz_level}", f"-T{args.workers}"],
                           stdin=tar.stdout, stdout=f, check=True)
            if tar.wait():
                raise SystemExit("tar failed")
        print(f"wrote {args.out}: {args.out.stat().st_size / 2**20:.1f} MiB, "
              f"{len(jobs)} images")
    finally:
        shutil.rmtree(stage)


if __name__ == "__main__":
    main()
