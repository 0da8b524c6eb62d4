"""How long `texlens evaluate --render` spends typesetting, on predictions that fail a lot.

The predictions are made from held-out real formulas by the kinds of error an early
checkpoint makes (a wrong, missing or extra token, a formula cut short, a token repeated
until the length limit); a third are left exact. Every prediction and truth goes through
:func:`texlens.evaluate.render_scores`, as `evaluate --render` does.

    python benchmarks/render_match_speed.py --formulas data/base/corpus/heldout.txt --n 2000
"""

from __future__ import annotations

import argparse
import random
import time

from texlens.data.datasets import read_pairs
from texlens.evaluate import render_scores


def damaged(tokens: list[str], vocab: list[str], rng: random.Random) -> list[str]:
    kind = rng.random()
    out = list(tokens)
    if kind < 0.33 or not out:
        return out
    if kind < 0.63:  # one to three token errors
        for _ in range(rng.randint(1, 3)):
            i = rng.randrange(len(out) + 1)
            op = rng.choice(("sub", "del", "ins"))
            if op == "ins" or i == len(out):
                out.insert(i, rng.choice(vocab))
            elif op == "del":
                del out[i]
            else:
                out[i] = rng.choice(vocab)
        return out
    if kind < 0.85:  # cut short
        return out[: rng.randrange(1, len(out) + 1)]
    i = rng.randrange(len(out))  # a loop until the length limit
    return out[:i] + [out[i]] * 150


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--formulas", default="data/base/corpus/heldout.txt")
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=None)
    args = ap.parse_args()
    rows = read_pairs(args.formulas)
    rng = random.Random(args.seed)
    rows = rng.sample(rows, min(args.n, len(rows)))
    truths = [value.split() for _, _, value in rows]
    vocab = sorted({t for tokens in truths for t in tokens})
    preds = [damaged(t, vocab, rng) for t in truths]
    wheres = [f"{args.formulas}:{line}" for line, _, _ in rows]
    start = time.perf_counter()
    kw = {} if args.workers is None else {"workers": args.workers}
    got = render_scores(preds, truths, [True] * len(truths), wheres, **kw)
    seconds = time.perf_counter() - start
    m = got["metrics"]
    exact = sum(p == t for p, t in zip(preds, truths, strict=True))
    print(f"{len(preds)} predictions ({exact} exact): "
          f"{seconds:.1f} s; render_match {m['render_match']:.3f}, compiles "
          f"{m['compiles']:.3f}, truths that do not typeset {m['n_truth_untypeset']}")


if __name__ == "__main__":
    main()
