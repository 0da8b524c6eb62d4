"""Beam search's length normalisation on a validation set: finished readings are ranked by
log-probability / length**alpha (texlens.decoding.beam_search); which alpha reads best?

    python benchmarks/beam_alpha.py --model printed-base --data data/base/val-corpus \\
        --beam 4 --alpha 0.6 1.0 1.4 [--out outputs/beam_alpha]

Lines whose formula the model trained on are left out (``--held-out`` of `texlens
evaluate`). One JSON of metrics per alpha goes to --out.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from texlens.evaluate import evaluate
from texlens.recognizer import Recognizer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="printed-base")
    ap.add_argument("--data", required=True)
    ap.add_argument("--beam", type=int, default=4)
    ap.add_argument("--alpha", type=float, nargs="+", default=[0.6, 1.0, 1.4])
    ap.add_argument("--out", type=Path, default=Path("outputs/beam_alpha"))
    args = ap.parse_args()
    rec = Recognizer.load(args.model)
    args.out.mkdir(parents=True, exist_ok=True)
    print("| alpha | ExpRate | <=1 | BLEU | NED |\n|---:|---:|---:|---:|---:|")
    for alpha in args.alpha:
        rec.beam_alpha = alpha
        m = evaluate(rec, args.data, beam=args.beam, held_out=True)["metrics"]
        (args.out / f"alpha{alpha}.json").write_text(json.dumps(m, indent=1))
        print(f"| {alpha} | {m['sentence_acc']:.2%} | {m['exprate_le1']:.2%} | "
              f"{m['bleu']:.4f} | {m['ned']:.4f} |", flush=True)


if __name__ == "__main__":
    main()
