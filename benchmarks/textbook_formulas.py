"""Sixteen short textbook formulas (physics, analysis, linear algebra, probability),
typeset by TeX in three font families: a quick look at what a full-LaTeX model reads.

    python benchmarks/textbook_formulas.py --model MODEL [--model ...] [--dpi 150] [--show]

Written for texlens, not drawn from ../shared/data/formulas, so they are no model's training
formulas (the script checks each model's record and says so). Each image is the TeX
rendering with a 12-pixel margin, as training images have; a reading counts when its
canonical tokens equal the truth's in the model's caption style. A model that cannot write
a truth (tokens outside its vocabulary) scores it wrong. --show prints the misses.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from texlens.data.splits import expression, seen_formulas  # noqa: E402
from texlens.data.synth.tex import render_tex, tex_missing  # noqa: E402
from texlens.recognizer import Recognizer  # noqa: E402
from texlens.tokens import normalizer  # noqa: E402

# The textbook lines of the typeset examples (examples/typeset/caption.txt).
EXAMPLES = ROOT / "examples" / "typeset" / "caption.txt"
FORMULAS = [line.split("\t", 1)[1].rstrip("\n") for line in EXAMPLES.open(encoding="utf-8")
            if line.startswith("textbook_")]
FONTS = ("cm", "times", "palatino")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", action="append", required=True)
    ap.add_argument("--dpi", type=int, default=150)
    ap.add_argument("--show", action="store_true", help="print each miss")
    args = ap.parse_args()
    if (why := tex_missing()) is not None:
        sys.exit(f"needs TeX: {why}")
    images = {font: [255 - np.pad(ink, 12) for ink in render_tex(FORMULAS, font, args.dpi)]
              for font in FONTS}
    for name in args.model:
        rec = Recognizer.load(name)
        style = rec.cfg.data.style
        truths = [normalizer(style)(f) for f in FORMULAS]
        known = getattr(rec, "train_formulas", None)
        seen = (int(seen_formulas(known, [expression(t) for t in truths]).sum())
                if known is not None else "not recorded")
        writable = sum(not rec.vocab.unknown(t) for t in truths)
        right = {}
        for font in FONTS:
            preds = rec.predict(images[font])
            right[font] = [p.tokens == t for p, t in zip(preds, truths, strict=True)]
            if args.show:
                for p, t, ok in zip(preds, truths, right[font], strict=True):
                    if not ok:
                        print(f"  {font}: {' '.join(t)}\n  {' ' * len(font)}  read {p.latex}")
        total = sum(map(sum, right.values()))
        per_font = ", ".join(f"{f} {sum(r)}" for f, r in right.items())
        print(f"{rec.name} ({style} style): {total} of {len(FORMULAS) * len(FONTS)} read "
              f"({per_font}); {writable} of {len(FORMULAS)} writable; "
              f"training formulas among them: {seen}")


if __name__ == "__main__":
    main()
