"""The orientation classifier's accuracy by CROHME source (HAMEX, KAIST, MathBrush, ...):
every image of each dataset at all four angles, decided by the orienter file's own rule
without re-reading. For comparing validation sets that mix the sources differently, such
as `data crohme --val-writers`'s new writers against its validation of seen writers.

    python benchmarks/orientation_sources.py --orienter runs/orientation/writers-w.pt \\
        --data data/crohme-w3/val-writers --data data/crohme-w3/val
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

import numpy as np

from texlens.data.crohme import iter_inkml, key_of
from texlens.data.datasets import read_layout
from texlens.data.image import load_image
from texlens.data.orientation import ANGLES, rotate
from texlens.orientation import Orienter


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--orienter", default="orientation-small")
    ap.add_argument("--data", type=Path, action="append", required=True)
    ap.add_argument("--inkml", type=Path,
                    default=Path("../shared/data/crohme/train_inkml.tar.gz"),
                    help="The InkML the datasets were rendered from (its folders name the "
                         "sources).")
    args = ap.parse_args()
    source = {key_of(name): Path(name).parent.name for name, _ in iter_inkml(args.inkml)}
    orienter = Orienter.load(args.orienter)
    for data in args.data:
        samples, _ = read_layout(data)
        turned = [rotate(load_image(s.image), a) for s in samples for a in ANGLES]
        pred = orienter.decide(orienter.evidence(orienter.looks(turned))).argmax(-1)
        right = (pred == np.tile(np.arange(len(ANGLES)), len(samples))).reshape(-1, 4).sum(1)
        n, ok = Counter(), Counter()
        for s, r in zip(samples, right, strict=True):
            k = source.get(s.key.split("_aug")[0], "unknown")
            n[k] += 1
            ok[k] += int(r)
        cells = ", ".join(f"{k} {100 * ok[k] / (4 * n[k]):.1f}% of {n[k]}" for k in sorted(n))
        total = 100 * sum(ok.values()) / (4 * sum(n.values()))
        print(f"{data}: {total:.2f}% ({cells})")


if __name__ == "__main__":
    main()
