"""Choose the orientation decision rule on validation: the prior on or off, and the
recogniser's re-reading of an unsure image's likeliest angles (texlens/orientation.py,
``reread``).

    python benchmarks/orientation_rule.py --data data/crohme/val --model handwritten-small \
        [--orienter orientation-small] [--views 0 256 384] \
        [--csv ALL.csv] [--write texlens/weights/orientation-small.pt]

Every image of --data (a validation set: the orienter must not have trained on its
expressions, nor should the recogniser, though handwritten-small has on nearly all of
data/crohme/val, docs/RESULTS.md) is turned to all four angles. The classifier's probabilities come
once per angle; the recogniser reads each image once per net rotation (a reading depends
only on how far the image ends up from upright), so every rule of the grid is scored
without decoding again. For each rule: accuracy and macro F1 over the four angles, the
share of upright images kept upright, ExpRate when the recognition follows the decision,
and how many images the recogniser re-reads (and how many readings that makes, an image
read at its `top` likeliest angles). --views also tries how much of the image the
classifier sees (``Orienter.view``: 0 is its square training canvas, L the whole formula
up to L px). Among the rules that keep at least as many upright images upright as the
classifier alone at the first view (or --floor), the chosen one has the best macro F1 less
PRICE_PER_READ for each reading an image, and where it errs is printed (formulas that
read as a formula turned by half, short ones, the others); --write stores it (view, prior
and re-reading) in the orienter file.
"""

from __future__ import annotations

import argparse
import csv
import itertools
from pathlib import Path

import numpy as np
import torch

from texlens.data.datasets import read_layout
from texlens.data.image import load_image
from texlens.data.orientation import ANGLES, half_turn_lookalike, rotate
from texlens.data.transforms import preprocess, to_tensor_array
from texlens.orientation import Orienter, reread_choice
from texlens.recognizer import Recognizer, mean_log_prob
from texlens.train.orientation import classification

WEIGHTS = (0.0, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0)
BELOW = (0.6, 0.8, 0.9, 0.95, 0.99, 1.0)
TOPS = (2, 3, 4)
# What a recogniser reading is worth: a rule that reads every image once more must buy
# at least a point of macro F1 over one that reads none. A reading costs about what the
# classifier's four looks do (handwritten-small on onnx, batch 1: 5-10 ms; the classifier
# about 10 ms an image, benchmarks/orientation.py), and the image is read once anyway.
PRICE_PER_READ = 0.01


def readings(rec: Recognizer, grays: list[np.ndarray], truths: list[list[str]]
             ) -> tuple[np.ndarray, np.ndarray]:
    """(N, 4) mean token log-probability and correctness of the reading of each image
    turned by 0/90/180/270 degrees."""
    score = np.zeros((len(grays), len(ANGLES)))
    right = np.zeros((len(grays), len(ANGLES)), bool)
    for k, a in enumerate(ANGLES):
        arrays = [to_tensor_array(preprocess(rotate(g, a), rec.cfg.data)) for g in grays]
        for i, p in enumerate(rec.predict_arrays(arrays, 16)):
            score[i, k] = mean_log_prob(p)
            right[i, k] = p.tokens == truths[i]
    return score, right


def cached_readings(path: Path | None, model: str, samples: list, grays: list[np.ndarray]
                    ) -> tuple[np.ndarray, np.ndarray]:
    """:func:`readings` of ``model``, from the .npz cache ``path`` when it holds this model's
    readings of these images, else decoded (and written to ``path`` when given)."""
    keys = np.array([str(s.image) for s in samples])
    if path and path.exists():
        cached = np.load(path)
        if str(cached["model"]) != model or not np.array_equal(cached["keys"], keys):
            raise SystemExit(f"{path}: readings of another model or data set; "
                             "delete it or name another file")
        return cached["score"], cached["right"]
    score, right = readings(Recognizer.load(model), grays, [list(s.tokens) for s in samples])
    if path:
        with open(path, "wb") as f:  # the name as given: savez adds no suffix
            np.savez(f, model=model, keys=keys, score=score, right=right)
    return score, right


def by_candidate(per_turn: np.ndarray) -> np.ndarray:
    """(N, 4) values of each image's reading turned by 0/90/180/270 -> (N, 4 true angles,
    4 candidates): an image at angle t turned back by candidate c ends up (t - c) from
    upright, and its reading depends only on that."""
    k = per_turn.shape[1]
    return per_turn[:, (np.arange(k)[:, None] - np.arange(k)[None, :]) % k]


def grid(probs: dict[str, np.ndarray], score: np.ndarray, right: np.ndarray,
         view: int = 0) -> list[dict]:
    """Every rule scored. probs[prior]: (N, 4 true angles, 4 candidates)."""
    n, k = score.shape
    truth = np.broadcast_to(np.arange(k), (n, k))
    reading, correct = by_candidate(score), by_candidate(right)
    idx = np.indices(truth.shape)
    rows = []
    for (prior, p), weight, below, top in itertools.product(probs.items(), WEIGHTS, BELOW,
                                                            TOPS):
        if weight == 0 and (below, top) != (BELOW[-1], TOPS[0]):
            continue  # no re-reading: one rule
        unsure = (p.max(-1) < below) & (weight > 0)
        pred = reread_choice(p, reading, weight, below, top)
        c = classification(truth.ravel(), pred.ravel())
        rows.append({"view": view, "prior": prior, "weight": weight, "below": below,
                     "top": top if weight > 0 else 0,
                     "accuracy": c["accuracy"], "macro_f1": c["macro_f1"],
                     "upright_kept": float((pred[:, 0] == 0).mean()),
                     "exprate": float(correct[idx[0], idx[1], pred].mean()),
                     "exprate_upright": float(correct[np.arange(n), 0, pred[:, 0]].mean()),
                     "reread_share": float(unsure.mean()),
                     # Recognizer.upright_angle reads every candidate of an unsure image
                     "reads": float(unsure.mean()) * top})
    return rows


def choose(rows: list[dict], floor: float) -> dict:
    """Among the rules that keep at least ``floor`` of upright images upright, the best
    macro F1 less PRICE_PER_READ a reading (ties: fewer readings)."""
    fit = [r for r in rows if r["upright_kept"] >= floor]
    if not fit:
        raise SystemExit(f"no rule keeps {100 * floor:.2f}% of upright images upright")
    return max(fit, key=lambda r: (r["macro_f1"] - PRICE_PER_READ * r["reads"], -r["reads"]))


def errors(probs: np.ndarray, score: np.ndarray, rule: dict, samples: list) -> str:
    """Where a rule errs: on formulas that read as a formula turned by half, on short ones
    (1-3 tokens), on the others. probs: (N, 4 true angles, 4 candidates)."""
    wrong = reread_choice(probs, by_candidate(score), rule["weight"], rule["below"],
                          rule["top"] or 2) != np.arange(len(ANGLES))
    alike = np.array([half_turn_lookalike(s.tokens) for s in samples])
    short = np.array([len(s.tokens) <= 3 for s in samples])
    return (f"errors: {wrong.sum()} of {wrong.size}; on the {alike.sum()} formulas that read "
            f"as a formula turned by half {wrong[alike].sum()}, on the {short.sum()} of 1-3 "
            f"tokens {wrong[short].sum()}, on the others {wrong[~alike & ~short].sum()}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=Path("data/crohme/val"))
    ap.add_argument("--model", default="handwritten-small")
    ap.add_argument("--orienter", default="orientation-small")
    ap.add_argument("--views", type=int, nargs="+",
                    help="views to try (0: the training canvas); default: the file's")
    ap.add_argument("--limit", type=int, default=0, help="first N images only (0: all)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--floor", type=float,
                    help="share of upright images the rule must keep upright (default: the "
                         "classifier alone at the first view), to compare orienters at one")
    ap.add_argument("--csv", type=Path, help="write every rule's scores to this CSV file")
    ap.add_argument("--write", type=Path, help="store the chosen rule in this orienter file")
    ap.add_argument("--readings", type=Path,
                    help="cache of the recogniser's readings (.npz): written on the first "
                         "run, read on the next, so that orienters compare on one decode")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    orienter = Orienter.load(args.orienter)
    samples, _ = read_layout(args.data)
    samples = samples[:args.limit or None]
    grays = [load_image(s.image) for s in samples]
    turned = [rotate(g, a) for g in grays for a in ANGLES]
    views = args.views or [orienter.view]
    scored = orienter.scorer_evidence(turned)  # the encoder scorer's, when the file has one
    probs = {}  # [view][prior]
    for v in views:
        looker = Orienter(orienter.model, orienter.cfg, tta=orienter.tta, view=v)
        evidence = looker.evidence(looker.looks(turned)) + scored
        probs[v] = {}
        for name, prior in (("on", orienter.prior), ("off", None)):
            o = Orienter(orienter.model, orienter.cfg, prior, orienter.tta)
            probs[v][name] = o.decide(evidence).reshape(len(grays), len(ANGLES), len(ANGLES))
    score, right = cached_readings(args.readings, args.model, samples, grays)
    rows = [r for v in views for r in grid(probs[v], score, right, v)]
    alone = {(r["view"], r["prior"]): r for r in rows if r["weight"] == 0}
    floor = (args.floor if args.floor is not None else
             alone[views[0], "on" if orienter.prior is not None else "off"]["upright_kept"])
    chosen = choose(rows, floor)
    print(f"{args.data}: {len(grays)} images x 4 angles; upright ExpRate of {args.model}: "
          f"{100 * right[:, 0].mean():.2f}%; upright floor {100 * floor:.2f}%\n")
    print("| view | prior | re-read weight | below | top | accuracy % | macro F1 % | "
          "upright kept % | ExpRate % | ExpRate upright % | re-read share | reads |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    shown = sorted(rows, key=lambda r: -r["macro_f1"])[:12]
    for r in [chosen, *alone.values()]:  # the chosen rule is shown even outside the top 12
        if not any(r is s for s in shown):
            shown.append(r)
    for r in shown:
        mark = " **(chosen)**" if r is chosen else ""
        print(f"| {r['view']} | {r['prior']}{mark} | {r['weight']:g} | {r['below']:g} | "
              f"{r['top']} | {100 * r['accuracy']:.2f} | {100 * r['macro_f1']:.2f} | "
              f"{100 * r['upright_kept']:.2f} | {100 * r['exprate']:.2f} | "
              f"{100 * r['exprate_upright']:.2f} | {r['reread_share']:.3f} | "
              f"{r['reads']:.3f} |")
    where = errors(probs[chosen["view"]][chosen["prior"]], score, chosen, samples)
    print(f"\nthe chosen rule's {where}")
    if args.csv:
        with open(args.csv, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    if args.write:
        o = Orienter(orienter.model, orienter.cfg,
                     orienter.prior if chosen["prior"] == "on" else None, orienter.tta,
                     info=orienter.info, reread=chosen["weight"], reread_below=chosen["below"],
                     scorer=orienter.scorer, view=chosen["view"],
                     reread_top=chosen["top"] or 2)
        o.save(args.write, extra={"rule_chosen_on": str(args.data), "rule_model": args.model})
        print(f"\nwrote the rule to {args.write}")


if __name__ == "__main__":
    main()
