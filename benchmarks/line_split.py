"""How well texlens/lines.py finds the text lines of typeset formulas.

Draws formulas from a corpus file (``key<TAB>caption``, canonical tokens): ``--multi``
of the aligned/gathered blocks and ``--single`` of the rest, typesets them with TeX
(``texlens data render``'s families, sizes and styles) and compares the number of lines
``line_rows`` finds with the block's rows (top-level ``\\\\`` + 1; 1 for the rest).

    python benchmarks/line_split.py --corpus data/base/corpus/train.txt --out outputs/lines
"""

from __future__ import annotations

import argparse
import random
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image

from texlens.data.synth.tex_dataset import read_formulas, render_dataset
from texlens.lines import line_rows

BLOCKS = ("\\begin{aligned}", "\\begin{gathered}")


def block_rows(tokens: list[str]) -> int:
    """Rows of a formula that is one aligned/gathered block; 1 for any other formula."""
    if not tokens or tokens[0] not in BLOCKS or tokens[-1] != tokens[0].replace("begin", "end"):
        return 1
    depth, rows = 0, 1
    for t in tokens[1:-1]:
        depth += t.startswith("\\begin") - t.startswith("\\end")
        rows += t == "\\\\" and depth == 0
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", type=Path, required=True)
    ap.add_argument("--multi", type=int, default=800)
    ap.add_argument("--single", type=int, default=3000)
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--show", type=int, default=0, help="print this many misses")
    args = ap.parse_args()
    formulas = read_formulas(args.corpus)
    multi = [f for f in formulas if block_rows(f.caption.split()) > 1]
    single = [f for f in formulas if block_rows(f.caption.split()) == 1]
    rng = random.Random(args.seed)
    chosen = (rng.sample(multi, min(args.multi, len(multi)))
              + rng.sample(single, min(args.single, len(single))))
    data = args.out / "images"
    if not (data / "caption.txt").exists():
        render_dataset(data, chosen, seed=args.seed, workers=args.workers)
    counts: Counter[str] = Counter()
    misses = []
    for line in (data / "caption.txt").read_text(encoding="utf-8").splitlines():
        key, caption = line.split("\t", 1)
        want = block_rows(caption.split())
        found = len(line_rows(np.array(Image.open(data / f"{key}.png").convert("L"))))
        kind = "several lines" if want > 1 else "one line"
        verdict = ("right" if found == want else "not split" if found == 1
                   else "split" if want == 1 else "wrong count")
        counts[kind, verdict] += 1
        if found != want:
            misses.append(f"{key}\twant {want}, found {found}\t{caption[:100]}")
    report = [f"{kind}: {verdict} {n}" for (kind, verdict), n in sorted(counts.items())]
    (args.out / "line_split.txt").write_text("\n".join(report + [""] + misses) + "\n")
    print("\n".join(report + misses[:args.show]))


if __name__ == "__main__":
    main()
