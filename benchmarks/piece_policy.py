"""When to read a long line in pieces (texlens/lines.py): a grid of widths and confidence
thresholds, each scored as `texlens evaluate` scores (run it on validation: the choice
is made there). Rows: the image read whole (`--no-lines`), lines only (pieces never),
then each (width, confidence) pair.

    python benchmarks/piece_policy.py --data data/base/val-corpus --out outputs/pieces.md
"""

from __future__ import annotations

import argparse
from pathlib import Path

from texlens.evaluate import evaluate
from texlens.recognizer import Recognizer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="printed-base")
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--beam", type=int, default=1)
    ap.add_argument("--widths", type=int, nargs="+", default=[320, 400, 480])
    ap.add_argument("--confidences", type=float, nargs="+", default=[0.005, 0.02, 0.1])
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    rec = Recognizer.load(args.model)
    rows = ["| policy | ExpRate | BLEU | NED | WER |", "|---|---:|---:|---:|---:|"]
    settings = [("whole (--no-lines)", False, 0, 0.0), ("lines, no pieces", True, 0, 0.0)]
    settings += [(f"lines, pieces wider than {w} px under confidence {c}", True, w, c)
                 for w in args.widths for c in args.confidences]
    for name, lines, width, conf in settings:
        rec.read_lines = lines
        rec.piece_width, rec.piece_confidence = width or 10**9, conf
        m = evaluate(rec, args.data, beam=args.beam, held_out=True)["metrics"]
        rows.append(f"| {name} | {m['sentence_acc']:.2%} | {m['bleu']:.4f} | {m['ned']:.4f} "
                    f"| {m['wer']:.4f} |")
        print(rows[-1], flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(rows) + "\n")


if __name__ == "__main__":
    main()
