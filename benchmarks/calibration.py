"""How well a model's formula confidence predicts that the formula is right.

    python benchmarks/calibration.py --model printed-small --fit data/printed/val-synth \
        --test data/printed/test-synth [--test DIR ...] [--write] [--threads 1] [--tta]
    python benchmarks/calibration.py --model handwritten-small --crossfit data/crohme/test2014

Greedy-decodes each set once (cached in outputs/calibration/), then compares candidate
scores, each as it is and after Platt scaling (a logistic fit of right/wrong on the
score's logit, fitted on --fit, or in 2 folds on --crossfit and scored on the other
fold): the geometric mean of the token probabilities (the old confidence), their
product (the sequence probability) and their minimum (the <eos> included). It prints
ECE (10 equal-width bins), AUROC, and accuracy above/below the threshold, and draws
the reliability diagram to outputs/calibration-MODEL.png. --tta decodes with test-time
views (Recognizer.tta). --write stores the Platt
parameters of the minimum next to the shipped weights (NAME.calibration.json), which
Recognizer reads.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import numpy as np
import torch

from texlens.evaluate import check_truths, list_samples
from texlens.recognizer import CONFIDENCE_THRESHOLD, Recognizer, resolve_model, sequence_scores

ROOT = Path(__file__).resolve().parents[1]
EPS = 1e-6


def collect(rec: Recognizer, data: Path, model: str) -> dict:
    """Per sample: right or wrong, and the probabilities of its tokens and its <eos>."""
    # Keyed by the weights' bytes too: a shipped name outlives the file it names.
    digest = hashlib.sha1(resolve_model(model).read_bytes()).hexdigest()[:10]
    cache = (ROOT / "outputs" / "calibration" /
             f"{Path(model).stem}-{digest}{'-tta' if rec.tta else ''}--"
             f"{data.as_posix().replace('/', '_')}.json")
    if cache.is_file():
        return json.loads(cache.read_text())
    samples, _ = list_samples(data)
    truths, bad, _, _ = check_truths(rec, samples)
    rec.calibration = lambda probs, eos: eos  # the confidence field then carries <eos>'s
    rows = []
    for start in range(0, len(samples), 64):
        chunk = samples[start:start + 64]
        preds = rec.predict_arrays([rec.prepare(s.image) for s in chunk], 16)
        for s, p, t, b in zip(chunk, preds, truths[start:], bad[start:], strict=False):
            rows.append({"key": s.key, "correct": b is None and p.tokens == t,
                         "probs": p.token_probs, "eos": p.confidence})
    out = {"data": str(data), "rows": rows}
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(out))
    return out


def features(rows: list[dict]) -> dict[str, np.ndarray]:
    scores = [sequence_scores(r["probs"], r["eos"]) for r in rows]
    return {k: np.array([s[k] for s in scores]) for k in scores[0]}


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, EPS, 1 - EPS)
    return np.log(p / (1 - p))


def fit_platt(score: np.ndarray, y: np.ndarray, steps: int = 100) -> tuple[float, float]:
    """Logistic regression of y on logit(score) by Newton's method, on the standardised
    logit (a score bunched near 1 makes the raw one ill-conditioned); a small ridge keeps
    it finite when the two classes separate."""
    z = logit(score)
    mu, sd = z.mean(), z.std() or 1.0
    x = np.stack([(z - mu) / sd, np.ones_like(z)], 1)
    w = np.zeros(2)
    for _ in range(steps):
        p = 1 / (1 + np.exp(-np.clip(x @ w, -30, 30)))
        grad = x.T @ (p - y) + 1e-3 * w
        hess = (x * (p * (1 - p))[:, None]).T @ x + 1e-3 * np.eye(2)
        w -= np.linalg.solve(hess, grad)
    return float(w[0] / sd), float(w[1] - w[0] * mu / sd)


def platt(score: np.ndarray, ab: tuple[float, float]) -> np.ndarray:
    return 1 / (1 + np.exp(-(ab[0] * logit(score) + ab[1])))


def ece(conf: np.ndarray, y: np.ndarray, bins: int = 10) -> float:
    idx = np.minimum((conf * bins).astype(int), bins - 1)
    return float(sum(abs(conf[idx == b].mean() - y[idx == b].mean()) * (idx == b).mean()
                     for b in range(bins) if (idx == b).any()))


def auroc(conf: np.ndarray, y: np.ndarray) -> float:
    """Probability that a right answer outranks a wrong one (ties count half)."""
    pos, neg = conf[y == 1], conf[y == 0]
    if not len(pos) or not len(neg):
        return float("nan")
    greater = (pos[:, None] > neg[None]).mean()
    return float(greater + 0.5 * (pos[:, None] == neg[None]).mean())


def report(name: str, conf: np.ndarray, y: np.ndarray, thr: float) -> str:
    hi = conf >= thr
    acc = lambda m: f"{y[m].mean() * 100:5.1f}% of {m.sum():4d}" if m.any() else "   -        "  # noqa: E731
    wrong = conf[y == 0].mean() if (y == 0).any() else float("nan")
    return (f"{name:<22} ECE {ece(conf, y):.3f}  AUROC {auroc(conf, y):.3f}  "
            f"mean conf {conf.mean():.3f} (wrong: {wrong:.3f})"
            f"  acc >= {thr}: {acc(hi)}  below: {acc(~hi)}")


def diagram(curves: dict[str, tuple[np.ndarray, np.ndarray]], path: Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], "k:", lw=1)
    for label, (conf, y) in curves.items():
        idx = np.minimum((conf * 10).astype(int), 9)
        xs = [conf[idx == b].mean() for b in range(10) if (idx == b).sum() >= 5]
        ys = [y[idx == b].mean() for b in range(10) if (idx == b).sum() >= 5]
        ax.plot(xs, ys, "o-", label=f"{label} (ECE {ece(conf, y):.3f})")
    ax.set(xlabel="confidence (bin mean)", ylabel="accuracy", title=title, xlim=(0, 1),
           ylim=(0, 1))
    ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="printed-small")
    ap.add_argument("--fit", type=Path, help="validation set the mapping is fitted on")
    ap.add_argument("--test", type=Path, action="append", default=[])
    ap.add_argument("--crossfit", type=Path, help="one set, fitted and scored in 2 folds")
    ap.add_argument("--threshold", type=float, default=CONFIDENCE_THRESHOLD)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--score", default="product", choices=["product", "min", "geo_mean"],
                    help="the score Recognizer uses (drawn, and stored by --write)")
    ap.add_argument("--write", action="store_true", help="store the fitted mapping")
    ap.add_argument("--tta", action="store_true", help="decode with test-time views")
    args = ap.parse_args()
    if not (args.fit or args.crossfit):
        ap.error("give --fit DIR or --crossfit DIR")
    torch.set_num_threads(args.threads)
    rec = Recognizer.load(args.model, tta=args.tta)
    curves = {}
    if args.fit:
        fit = collect(rec, args.fit, args.model)
        y_fit = np.array([r["correct"] for r in fit["rows"]], float)
        f_fit = features(fit["rows"])
        params = {k: fit_platt(v, y_fit) for k, v in f_fit.items()}
        print(f"fit on {args.fit}: n={len(y_fit)}, ExpRate {y_fit.mean() * 100:.1f}%; "
              f"Platt (a, b) on logit({args.score}): {params[args.score][0]:.3f}, "
              f"{params[args.score][1]:.3f}")
        for d in args.test:
            rows = collect(rec, d, args.model)["rows"]
            y = np.array([r["correct"] for r in rows], float)
            print(f"\n{args.model} on {d}: n={len(y)}, ExpRate {y.mean() * 100:.1f}%")
            for k, v in features(rows).items():
                print(report(k, v, y, args.threshold))
                print(report(k + " + Platt", platt(v, params[k]), y, args.threshold))
            f = features(rows)
            curves[f"{d.name}: geo mean (old)"] = (f["geo_mean"], y)
            curves[f"{d.name}: {args.score} + Platt"] = (platt(f[args.score],
                                                             params[args.score]), y)
        chosen = params[args.score]
    else:
        rows = collect(rec, args.crossfit, args.model)["rows"]
        y = np.array([r["correct"] for r in rows], float)
        f = features(rows)
        fold = np.arange(len(y)) % 2 == 0
        print(f"{args.model} on {args.crossfit}: n={len(y)}, ExpRate {y.mean() * 100:.1f}% "
              "(Platt fitted on one half, scored on the other, both ways)")
        for k, v in f.items():
            held = np.empty_like(v)
            for part in (fold, ~fold):
                held[~part] = platt(v[~part], fit_platt(v[part], y[part]))
            print(report(k, v, y, args.threshold))
            print(report(k + " + Platt", held, y, args.threshold))
            if k == "geo_mean":
                curves[f"{args.crossfit.name}: geo mean (old)"] = (v, y)
            if k == args.score:
                curves[f"{args.crossfit.name}: {k} + Platt (held out)"] = (held, y)
        chosen = fit_platt(f[args.score], y)
    out = ROOT / "outputs" / f"calibration-{args.model}.png"
    diagram(curves, out, f"{args.model}: reliability")
    print(f"\nreliability diagram: {out}")
    if args.write:
        target = resolve_model(args.model).with_suffix(".calibration.json")
        target.write_text(json.dumps({"score": args.score,
                                      "a": round(chosen[0], 4), "b": round(chosen[1], 4),
                                      "fitted_on": str(args.fit or args.crossfit)}, indent=1))
        print(f"wrote {target}")


if __name__ == "__main__":
    main()
