"""ExpRate of test-time view sets (``Recognizer.tta``) on one dataset, for choosing them.

    python benchmarks/tta_views.py --model handwritten-small --data data/crohme/val \
        --views 1 --views 1.1 --views 1,1.1,1.2 --views 0.9,1,1.1,1.2,1.3
    python benchmarks/tta_views.py --model printed-base --data data/base/val-corpus \
        --held-out --max-tokens 30 --views 1,1.1,1.2 ...

Each ``--views`` is a comma-separated set of size factors (times the model's input
scale); a set of one is plain greedy decoding at that size. Greedy, every sample
scored as `texlens evaluate` scores it.
"""

from __future__ import annotations

import argparse

import torch

from texlens.evaluate import evaluate
from texlens.recognizer import Recognizer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="handwritten-small")
    ap.add_argument("--data", required=True)
    ap.add_argument("--views", action="append", required=True)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--max-tokens", type=int, default=0,
                    help="only the lines whose caption has at most N tokens (0: all)")
    ap.add_argument("--held-out", action="store_true",
                    help="leave out the lines whose formula the model trained on")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rec = Recognizer.load(args.model)
    for views in args.views:
        factors = [float(f) for f in views.split(",")]
        rec.set_tta(factors)
        m = evaluate(rec, args.data, max_tokens=args.max_tokens,
                     held_out=args.held_out)["metrics"]
        print(f"views {views}: ExpRate {m['sentence_acc'] * 100:.1f}%, "
              f"<=1 {m['exprate_le1'] * 100:.1f}%, <=2 {m['exprate_le2'] * 100:.1f}%, "
              f"BLEU {m['bleu']:.4f} ({m['n']} lines)", flush=True)


if __name__ == "__main__":
    main()
