"""What a change of the normaliser (texlens/latex.py) does to data made with an older one.

    python benchmarks/canonical_drift.py --old REV [--train data/base/corpus/train.txt
        --train data/base/crohme/train.txt] [--data data/base/val-corpus ...]

Captions are stored in the canonical form of the day they were made, and the split rule
hashes that form (texlens/data/splits.py). For each --data set: its lines, those whose
caption the current normaliser writes differently, those whose side of the split rule
moves, and those whose new form equals the new form of a --train formula (held out no
more). The normaliser of git revision --old is read with `git show` and, for the
training formulas, counted the same way.
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
from pathlib import Path

from texlens.data.datasets import read_pairs
from texlens.data.splits import expression_split
from texlens.latex import LatexError, normalize

ROOT = Path(__file__).resolve().parents[1]


def old_normalizer(rev: str):
    source = subprocess.run(["git", "show", f"{rev}:texlens/latex.py"], cwd=ROOT, check=True,
                            capture_output=True, text=True).stdout
    path = Path(tempfile.mkdtemp()) / "old_latex.py"
    path.write_text(source, encoding="utf-8")
    spec = importlib.util.spec_from_file_location("old_latex", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["old_latex"] = module
    spec.loader.exec_module(module)
    return module.normalize


def canon(norm, caption: str) -> str | None:
    try:
        return " ".join(norm(caption))
    except (LatexError, ValueError):
        return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--old", required=True, help="git revision of the older normaliser")
    ap.add_argument("--train", type=Path, action="append",
                    default=None, help="key<TAB>caption files of training formulas")
    ap.add_argument("--data", type=Path, action="append", default=None,
                    help="dataset directories (caption.txt) to check")
    args = ap.parse_args()
    trains = args.train or [Path("data/base/corpus/train.txt"), Path("data/base/crohme/train.txt")]
    sets = args.data or [Path(f"data/base/{d}") for d in ("val-corpus", "test-corpus",
                                                             "test2014-tex", "test-crohme")]
    old = old_normalizer(args.old)
    train, train_before, n_train, changed_train = set(), set(), 0, 0
    for f in trains:
        for _, _, caption in read_pairs(f):
            new, before = canon(normalize, caption), canon(old, caption)
            if new is None:
                continue
            n_train += 1
            changed_train += new != before
            train.add(new)
            train_before.add(before)
    print(f"training formulas: {n_train}, written differently now: {changed_train} "
          f"({100 * changed_train / max(n_train, 1):.2f}%)\n")
    print("| data | lines | written differently | split side moved | equal to a training "
          "formula now, not before |\n|---|---:|---:|---:|---:|")
    for d in sets:
        n = changed = moved = leaked = 0
        for _, _, caption in read_pairs(d / "caption.txt"):
            new, before = canon(normalize, caption), canon(old, caption)
            if new is None or before is None:
                continue
            n += 1
            changed += new != before
            moved += expression_split(new) != expression_split(before)
            leaked += new in train and before not in train_before
        print(f"| {d} | {n} | {changed} | {moved} | {leaked} |")


if __name__ == "__main__":
    main()
