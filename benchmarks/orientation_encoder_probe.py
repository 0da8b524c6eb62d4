"""A probe for issue 17: does the recogniser's encoder know which way up handwriting is,
beyond what orientation-small's classifier knows?

    python benchmarks/orientation_encoder_probe.py [--model handwritten-small]
        [--train data/crohme/train --n-train 4000] [--val data/crohme/val] [--threads 1]

Every image is turned by 0/90/180/270 degrees; the recogniser's (frozen) encoder reads
each turn, and its output is pooled over positions (mean, max, standard deviation). A
small MLP learns to score "this turn is upright": trained on --train images, the four
turns of an image compete in a softmax. On --val (images neither model trained on), each
image's evidence for angle a is the classifier's log-probability (test-time rotations, no
prior: every angle equally likely) plus w times the scorer's log-probability of the turn
that undoes a. Both are rotation-equivariant, so the accuracy of the upright copy is the
balanced accuracy over the four angles.

w is chosen on one half of --val (split by expression) and reported on the other, both
ways round; the table also gives every w on the whole of --val (chosen there: optimistic).
A probe, not a shipped rule: nothing is written.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from texlens.data.datasets import read_layout
from texlens.data.image import load_image
from texlens.orientation import Orienter, angle_log_probs
from texlens.train.orientation import SCORER_WEIGHTS as WEIGHTS
from texlens.train.orientation import fit_scorer, scorer_features, scorer_from


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="handwritten-small")
    ap.add_argument("--orienter", default="orientation-small")
    ap.add_argument("--train", type=Path, default=Path("data/crohme/train"))
    ap.add_argument("--n-train", type=int, default=4000)
    ap.add_argument("--val", type=Path, default=Path("data/crohme/val"))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    shipped = Orienter.load(args.orienter)
    orienter = Orienter(shipped.model, shipped.cfg, prior=None, tta=True)
    train, _ = read_layout(args.train)
    rng = np.random.default_rng(args.seed)
    if args.n_train < len(train):
        train = [train[i] for i in sorted(rng.choice(len(train), args.n_train, replace=False))]
    val, _ = read_layout(args.val)
    overlap = {" ".join(s.tokens) for s in train} & {" ".join(s.tokens) for s in val}
    scorer = scorer_from(args.model)
    t0 = time.perf_counter()
    f_train = scorer_features(scorer, [load_image(s.image) for s in train])
    f_val = scorer_features(scorer, [load_image(s.image) for s in val])
    print(f"encoder features: {len(train)} + {len(val)} images x 4 turns, "
          f"{time.perf_counter() - t0:.0f} s; expressions shared by --train and --val: "
          f"{len(overlap)}")
    fit_scorer(scorer, f_train, args.seed)
    with torch.no_grad():
        enc = angle_log_probs(scorer.net.score(f_val).numpy())
    cls = np.log(np.clip(orienter.angle_probs([load_image(s.image) for s in val]), 1e-9, 1))
    right = {w: (cls + w * enc).argmax(-1) == 0 for w in WEIGHTS}
    print(f"\n{args.val} ({len(val)} images), balanced accuracy over the four angles:\n")
    print("| evidence | accuracy % |\n|---|---:|")
    print(f"| scorer alone | {100 * (enc.argmax(-1) == 0).mean():.2f} |")
    for w in WEIGHTS:
        print(f"| classifier + {w:g} x scorer (w chosen on all of val) | "
              f"{100 * right[w].mean():.2f} |")
    # Honest estimate: w chosen on one half (by expression), scored on the other.
    exprs = sorted({" ".join(s.tokens) for s in val})
    half = dict(zip(exprs, rng.permutation(len(exprs)) % 2, strict=True))
    fold = np.array([half[" ".join(s.tokens)] for s in val])
    hits = 0
    for f in (0, 1):
        w = max(WEIGHTS, key=lambda w: right[w][fold == f].mean())
        hits += right[w][fold != f].sum()
        print(f"| classifier + scorer, w = {w:g} chosen on half {f}, scored on half {1 - f} "
              f"({(fold != f).sum()} images) | {100 * right[w][fold != f].mean():.2f} |")
    print(f"| classifier + scorer, cross-fitted over both halves | {100 * hits / len(val):.2f} |")


if __name__ == "__main__":
    main()
