"""Would the orientation classifier do better averaged: over several orienter files (an
ensemble), or over the symbol sizes its views are brought to (test-time scales)?

    python benchmarks/orientation_ensembles.py --data data/crohme/val \
        --readings outputs/s26/val-readings.npz --floor 0.9804 \
        --orienters texlens/weights/orientation-small.pt runs/orientation/other.pt \
        [--symbols 12 14 16 19 22] [--view 768]

Every image of --data (validation) at all four angles, as benchmarks/orientation_rule.py
turns them. Each orienter's log-evidence is computed once per symbol size (the first
orienter's only, for sizes other than texlens's 16 px); each combination (every subset
of --orienters at 16 px, every subset of --symbols with the first orienter) averages them
and is scored with the rule grid of orientation_rule.py, the recogniser's readings from its
cache (--readings, written by orientation_rule.py on a first run). Printed per
combination: the classifier alone (with the first orienter's prior), and the rule chosen
as orientation_rule.py chooses, at the common upright --floor.

An average over k files or sizes costs k times the classifier's time: by the price
orientation_rule.py puts on a reading (about the classifier's cost), it should buy about
a point of macro F1 for each look added.
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import torch
from orientation_rule import cached_readings, choose, errors, grid

from texlens.data.datasets import read_layout
from texlens.data.image import load_image
from texlens.data.orientation import ANGLES, SYMBOL, rotate, view
from texlens.orientation import Orienter


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=Path("data/crohme/val"))
    ap.add_argument("--model", default="handwritten-small")
    ap.add_argument("--orienters", nargs="+", default=["orientation-small"])
    ap.add_argument("--symbols", type=int, nargs="*", default=[],
                    help="symbol sizes (px) to average the first orienter over")
    ap.add_argument("--view", type=int, default=768)
    ap.add_argument("--floor", type=float, required=True,
                    help="share of upright images every chosen rule must keep upright")
    ap.add_argument("--readings", type=Path, help="the recogniser's readings cache (.npz)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    orienters = [Orienter.load(p) for p in args.orienters]
    samples, _ = read_layout(args.data)
    grays = [load_image(s.image) for s in samples]
    turned = [rotate(g, a) for g in grays for a in ANGLES]
    score, right = cached_readings(args.readings, args.model, samples, grays)
    sizes = sorted({SYMBOL, *args.symbols})
    looks = {s: [view(g, args.view, s) for g in turned] for s in sizes}
    evidence = {(i, SYMBOL): o.evidence(looks[SYMBOL]) for i, o in enumerate(orienters)}
    evidence |= {(0, s): orienters[0].evidence(looks[s]) for s in sizes if s != SYMBOL}
    combos = [[(i, SYMBOL) for i in c] for k in range(1, len(orienters) + 1)
              for c in itertools.combinations(range(len(orienters)), k)]
    combos += [[(0, s) for s in c] for k in range(2, len(sizes) + 1)
               for c in itertools.combinations(sizes, k)]
    first = orienters[0]
    print(f"{args.data}: {len(grays)} images x 4 angles, view {args.view}, upright floor "
          f"{100 * args.floor:.2f}%\n")
    print("| orienters | symbol px | alone: macro F1 % | alone: upright kept % | chosen rule | "
          "macro F1 % | upright kept % | ExpRate % | ExpRate upright % | reads | where |")
    print("|---|---|---:|---:|---|---:|---:|---:|---:|---:|---|")
    for combo in combos:
        e = sum(evidence[c] for c in combo) / len(combo)
        probs = {name: Orienter(first.model, first.cfg, prior).decide(e).reshape(
            len(grays), len(ANGLES), len(ANGLES)) for name, prior in (("on", first.prior),
                                                                      ("off", None))}
        rows = grid(probs, score, right, args.view)
        alone = next(r for r in rows if r["weight"] == 0 and r["prior"] == "on")
        r = choose(rows, args.floor)
        names = " + ".join(sorted({Path(args.orienters[i]).stem for i, _ in combo}))
        rule = f"prior {r['prior']}, {r['weight']:g} below {r['below']:g}, top {r['top']}"
        print(f"| {names} | {' + '.join(str(s) for _, s in combo)} | "
              f"{100 * alone['macro_f1']:.2f} | {100 * alone['upright_kept']:.2f} | {rule} | "
              f"{100 * r['macro_f1']:.2f} | {100 * r['upright_kept']:.2f} | "
              f"{100 * r['exprate']:.2f} | {100 * r['exprate_upright']:.2f} | "
              f"{r['reads']:.2f} | {errors(probs[r['prior']], score, r, samples)} |")


if __name__ == "__main__":
    main()
