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
from torch import nn

from texlens.data.datasets import Sample, read_layout
from texlens.data.image import load_image
from texlens.data.orientation import ANGLES, rotate
from texlens.data.transforms import preprocess, to_tensor_array
from texlens.orientation import Orienter
from texlens.recognizer import Recognizer

WEIGHTS = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0)


@torch.no_grad()
def pooled_features(rec: Recognizer, samples: list[Sample]) -> np.ndarray:
    """(N, 4 turns, 3 d) pooled encoder outputs of each image turned by 0/90/180/270."""
    model = rec.models[0]
    out = []
    for s in samples:
        gray = load_image(s.image)
        looks = []
        for a in ANGLES:
            x = torch.from_numpy(to_tensor_array(preprocess(rotate(gray, a), rec.cfg.data)))
            memory, _ = model.encode(x[None], None)  # one image: nothing padded
            m = memory[0]
            looks.append(torch.cat([m.mean(0), m.amax(0), m.std(0)]).numpy())
        out.append(np.stack(looks))
    return np.stack(out)


def train_scorer(feats: np.ndarray, seed: int = 0, epochs: int = 60) -> nn.Module:
    """An MLP scoring each turn; the upright turn (index 0) is the target of a softmax
    over the four. Inputs standardised with the training statistics (kept on the module)."""
    torch.manual_seed(seed)
    flat = feats.reshape(-1, feats.shape[-1])
    mu, sd = flat.mean(0), flat.std(0) + 1e-6
    x = torch.tensor((feats - mu) / sd, dtype=torch.float32)
    net = nn.Sequential(nn.Linear(x.shape[-1], 64), nn.GELU(), nn.Dropout(0.2), nn.Linear(64, 1))
    net.mu, net.sd = mu, sd
    opt = torch.optim.AdamW(net.parameters(), 1e-3, weight_decay=1e-2)
    target = torch.zeros(128, dtype=torch.long)
    for _ in range(epochs):
        net.train()
        perm = torch.randperm(len(x))
        for b in range(0, len(x), 128):
            scores = net(x[perm[b:b + 128]]).squeeze(-1)
            loss = nn.functional.cross_entropy(scores, target[:len(scores)])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return net.eval()


@torch.no_grad()
def scorer_logp(net: nn.Module, feats: np.ndarray) -> np.ndarray:
    """(N, 4) log-probability that the image is at angle a: the turn by -a is upright."""
    x = torch.tensor((feats - net.mu) / net.sd, dtype=torch.float32)
    by_turn = net(x).squeeze(-1).log_softmax(-1).numpy()
    return by_turn[:, [(-k) % len(ANGLES) for k in range(len(ANGLES))]]


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
    rec = Recognizer.load(args.model)
    shipped = Orienter.load(args.orienter)
    orienter = Orienter(shipped.model, shipped.cfg, prior=None, tta=True)
    train, _ = read_layout(args.train)
    rng = np.random.default_rng(args.seed)
    if args.n_train < len(train):
        train = [train[i] for i in sorted(rng.choice(len(train), args.n_train, replace=False))]
    val, _ = read_layout(args.val)
    overlap = {" ".join(s.tokens) for s in train} & {" ".join(s.tokens) for s in val}
    t0 = time.perf_counter()
    f_train, f_val = pooled_features(rec, train), pooled_features(rec, val)
    print(f"encoder features: {len(train)} + {len(val)} images x 4 turns, "
          f"{time.perf_counter() - t0:.0f} s; expressions shared by --train and --val: "
          f"{len(overlap)}")
    net = train_scorer(f_train, args.seed)
    enc = scorer_logp(net, f_val)
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
