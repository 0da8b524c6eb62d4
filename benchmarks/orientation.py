"""The orientation classifier measured: on rotated test images, and what --auto-rotate
does to recognition.

    python benchmarks/orientation.py --data data/crohme/test2014 --model handwritten-small \
        [--orienter orientation-small] [--extra data/base/test-crohme] \
        [--kfold runs/orientation/kfold-resnet --kfold runs/orientation/kfold-stem] \
        [--no-exprate] [--seed 0] [--out outputs/orientation]

1. Classifier: every --data (and --extra) image at all four angles (the balanced copy),
   and each image at one angle drawn with the real-use shares of the model's prior (the
   imbalanced copy, a subset of the balanced one): accuracy, macro F1 and the confusion
   matrix, for the shipped decision rule (test-time rotations + prior) and without
   either, beside the aspect-ratio heuristic; on --data also the whole rule of
   --auto-rotate, where --model re-reads the classifier's unsure half turns. The balanced
   copy's accuracy also by caption length and apart for the formulas that read as a
   formula turned by half (`x`, `p ( 1 - p )` against `( d - 1 ) d`: HALF_TURN).
2. ExpRate of --model on the upright test set and on a copy where each image is turned
   by a uniformly drawn angle (written to data/orientation/<name>-rotated, so
   `texlens evaluate --data` can rerun it), with and without --auto-rotate.
3. The K-fold results of `texlens orientation kfold` runs (--kfold), if given.

Prints a markdown table and writes OUT/orientation.md and OUT/orientation.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from texlens.data.datasets import read_layout
from texlens.data.image import load_image
from texlens.data.orientation import ANGLES, draw_labels, half_turn_lookalike, rotate
from texlens.evaluate import evaluate
from texlens.orientation import Orienter, aspect_heuristic
from texlens.recognizer import Recognizer
from texlens.train.orientation import classification

ROOT = Path(__file__).resolve().parents[1]


def pct(x: float) -> str:
    return f"{100 * x:.2f}"


LENGTHS = ((1, 3), (4, 6), (7, 10), (11, 20), (21, 10_000))


def by_group(tokens: list[list[str]], truth: np.ndarray, pred: np.ndarray) -> list[dict]:
    """Accuracy of the balanced copy (4 rows an image) by the caption's token count, then
    on the formulas that read as a formula turned by half (:func:`half_turn_lookalike`)
    and on the rest."""
    lengths = np.array([len(t) for t in tokens])
    alike = np.array([half_turn_lookalike(t) for t in tokens])
    groups = [(f"{lo}-{hi} tokens" if hi < 10_000 else f">= {lo} tokens",
               (lengths >= lo) & (lengths <= hi)) for lo, hi in LENGTHS]
    groups += [("reads as a formula turned by half", alike), ("the rest", ~alike)]
    rows = []
    for name, group in groups:
        keep = np.repeat(group, len(ANGLES))
        if keep.any():
            rows.append({"formulas": name, "images": int(group.sum()),
                         "accuracy": float((truth[keep] == pred[keep]).mean())})
    return rows


def classifier_rows(orienter: Orienter, data: Path, seed: int,
                    rec: Recognizer | None = None) -> tuple[list[dict], dict, dict]:
    """Scores on the balanced and imbalanced rotated copies of one test set; with ``rec``,
    also the whole decision rule of --auto-rotate (the recogniser re-reading unsure half
    turns, when the orienter file has a reread weight). Returns the rows, the confusion
    matrices and the accuracy by formula group (:func:`by_group`), the last two by rule."""
    samples, _ = read_layout(data)
    grays = [load_image(s.image) for s in samples]
    tokens = [list(s.tokens) for s in samples]
    n = len(ANGLES)
    # Balanced copy: image i at angle j is row i * 4 + j.
    turned = [rotate(g, a) for g in grays for a in ANGLES]
    canv = orienter.looks(turned)
    truth = np.tile(np.arange(n), len(grays))
    heur = np.array([ANGLES.index(aspect_heuristic(rotate(g, a))) for g in grays for a in ANGLES])
    prior = orienter.prior if orienter.prior is not None else np.full(n, 1 / n)
    one = np.arange(len(grays)) * n + draw_labels(len(grays), prior, np.random.default_rng(seed))
    # (test-time rotations, prior, encoder scorer); the first is the shipped rule.
    rules = {"tta + prior (shipped)": (True, orienter.prior, True),
             "tta + prior, no scorer": (True, orienter.prior, False),
             "tta, no prior": (True, None, True),
             "one look + prior": (False, orienter.prior, False),
             "one look, no prior": (False, None, False)}
    if orienter.scorer is None:
        rules = {k: v for k, v in rules.items() if k != "tta + prior, no scorer"}
    t0 = time.perf_counter()
    scored = orienter.scorer_evidence(turned)  # once: the rules differ in how they add it
    scorer_ms = 1000 * (time.perf_counter() - t0) / len(turned)
    rows, confusion, group_rows = [], {}, {}
    for rule, (tta, pr, with_scorer) in rules.items():
        o = Orienter(orienter.model, orienter.cfg, pr, tta, view=orienter.view)
        t0 = time.perf_counter()
        evidence = o.evidence(canv) + (scored if with_scorer else 0.0)
        pred = o.decide(evidence).argmax(-1)
        ms = 1000 * (time.perf_counter() - t0) / len(canv) + (scorer_ms if with_scorer else 0)
        for copy, idx in (("balanced", slice(None)), ("imbalanced", one)):
            s = classification(truth[idx], pred[idx])
            rows.append({"data": data.name, "copy": copy, "rule": rule, "ms_per_image": ms, **s})
            if rule.endswith("(shipped)"):
                confusion[f"{data.name} {copy}"] = s["confusion"]
        if rule.endswith("(shipped)"):
            group_rows[f"{data.name}, {rule}"] = by_group(tokens, truth, pred)
    if rec is not None and orienter.reread > 0:
        rule = f"shipped + {rec.name} re-reads (as --auto-rotate)"
        t0 = time.perf_counter()
        pred = np.array([ANGLES.index(rec.upright_angle(rotate(g, a), orienter))
                         for g in grays for a in ANGLES])
        ms = 1000 * (time.perf_counter() - t0) / len(pred)
        for copy, idx in (("balanced", slice(None)), ("imbalanced", one)):
            s = classification(truth[idx], pred[idx])
            rows.append({"data": data.name, "copy": copy, "rule": rule, "ms_per_image": ms, **s})
            confusion[f"{data.name} {copy}, {rule}"] = s["confusion"]
        group_rows[f"{data.name}, {rule}"] = by_group(tokens, truth, pred)
    for copy, idx in (("balanced", slice(None)), ("imbalanced", one)):
        rows.append({"data": data.name, "copy": copy, "rule": "aspect heuristic",
                     "ms_per_image": 0.0, **classification(truth[idx], heur[idx])})
    return rows, confusion, group_rows


def write_rotated(data: Path, out: Path, seed: int) -> dict[str, int]:
    """Each image of ``data`` turned by a uniformly drawn angle, as PNG, with the captions."""
    samples, _ = read_layout(data)
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    angles = {}
    for s in samples:
        a = int(rng.choice(ANGLES))
        cv2.imwrite(str(out / f"{s.key}.png"), rotate(load_image(s.image), a))
        angles[s.key] = a
    (out / "caption.txt").write_text("".join(f"{s.key}\t{' '.join(s.tokens)}\n"
                                             for s in samples), encoding="utf-8")
    (out / "angles.txt").write_text("".join(f"{k}\t{a}\n" for k, a in angles.items()),
                                    encoding="utf-8")
    return angles


def exprate_rows(model: str, orienter_path: str, data: Path, rotated: Path) -> list[dict]:
    plain = Recognizer.load(model)
    auto = Recognizer.load(model, auto_rotate=orienter_path)
    rows = []
    for label, d in (("upright", data), ("randomly rotated", rotated)):
        for rec, flag in ((plain, False), (auto, True)):
            t0 = time.perf_counter()
            m = evaluate(rec, d)["metrics"]
            rows.append({"data": label, "auto_rotate": flag, "n": m["n"],
                         "exprate": m["sentence_acc"], "exprate_le1": m["exprate_le1"],
                         "seconds": round(time.perf_counter() - t0, 1)})
            print(f"  {label}, auto_rotate={flag}: ExpRate {pct(m['sentence_acc'])}%")
    return rows


def kfold_rows(dirs: list[Path]) -> list[dict]:
    rows = []
    for d in dirs:
        r = json.loads((d / "kfold.json").read_text())
        variant = r["arch"] + (f" from {r['init_from']}, {r['freeze']} stem layers frozen"
                               if r.get("init_from") else " from scratch")
        seconds = sum(f["seconds"] for f in r["per_fold"])
        epochs = [f["epochs"] for f in r["per_fold"]]
        rows.append({"run": str(d), "variant": variant, "folds": r["folds"], "n": r["n"],
                     "epochs": epochs, "seconds": seconds, **r["mean"],
                     "heuristic": r["heuristic"]})
    return rows


def markdown(cls_rows: list[dict], confusion: dict, group_rows: dict, ex_rows: list[dict],
             kf_rows: list[dict]) -> str:
    out = ["| test set | copy | n | decision | accuracy % | macro F1 % | ms/image |",
           "|---|---|---|---|---|---|---|"]
    out += [f"| {r['data']} | {r['copy']} | {r['n']} | {r['rule']} | {pct(r['accuracy'])} | "
            f"{pct(r['macro_f1'])} | {r['ms_per_image']:.1f} |" for r in cls_rows]
    for name, rows_ in group_rows.items():
        out += ["", f"Balanced copy by formula, {name}", "",
                "| formulas | images | accuracy % |", "|---|---:|---:|"]
        out += [f"| {r['formulas']} | {r['images']} | {pct(r['accuracy'])} |"
                for r in rows_]
    for name, cm in confusion.items():
        out += ["", f"Confusion matrix, {name} (rows: true angle, columns: predicted)", "",
                "| true \\ predicted | " + " | ".join(map(str, ANGLES)) + " |",
                "|---" * (len(ANGLES) + 1) + "|"]
        out += [f"| {a} | " + " | ".join(map(str, row)) + " |"
                for a, row in zip(ANGLES, cm, strict=True)]
    if ex_rows:
        up = next(r["exprate"] for r in ex_rows if r["data"] == "upright" and not r["auto_rotate"])
        out += ["", "| recognition data | --auto-rotate | n | ExpRate % | <=1 error % | "
                "of upright ExpRate | seconds |", "|---|---|---|---|---|---|---|"]
        out += [f"| {r['data']} | {'yes' if r['auto_rotate'] else 'no'} | {r['n']} | "
                f"{pct(r['exprate'])} | {pct(r['exprate_le1'])} | "
                f"{r['exprate'] / up:.3f} | {r['seconds']} |" if up else "" for r in ex_rows]
    if kf_rows:
        out += ["", "| K-fold run | folds | images | epochs per fold | training s | "
                "accuracy % | macro F1 % | heuristic accuracy % | heuristic macro F1 % |",
                "|---|---|---|---|---|---|---|---|---|"]
        for r in kf_rows:
            acc, f1 = r["accuracy"], r["macro_f1"]
            ha, hf = r["heuristic"]["accuracy"], r["heuristic"]["macro_f1"]
            out.append(f"| {r['variant']} | {r['folds']} | {r['n']} | {r['epochs']} | "
                       f"{r['seconds']} | {pct(acc['mean'])} ± {pct(acc['std'])} | "
                       f"{pct(f1['mean'])} ± {pct(f1['std'])} | {pct(ha['mean'])} ± "
                       f"{pct(ha['std'])} | {pct(hf['mean'])} ± {pct(hf['std'])} |")
    return "\n".join(out) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=ROOT / "data/crohme/test2014")
    ap.add_argument("--extra", type=Path, action="append", default=[],
                    help="More test sets for the classifier only (printed renderings).")
    ap.add_argument("--model", default="handwritten-small")
    ap.add_argument("--orienter", default="orientation-small")
    ap.add_argument("--kfold", type=Path, action="append", default=[])
    ap.add_argument("--no-exprate", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=ROOT / "outputs/orientation")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    orienter = Orienter.load(args.orienter)
    rec = Recognizer.load(args.model)
    cls_rows, confusion, group_rows = [], {}, {}
    for d in [args.data, *args.extra]:
        print(f"classifier on {d} at all four angles")
        rows, cm, by_grp = classifier_rows(orienter, d, args.seed,
                                           rec if d == args.data else None)
        cls_rows += rows
        confusion |= cm
        group_rows |= by_grp
    ex_rows = []
    if not args.no_exprate:
        rotated = ROOT / "data/orientation" / f"{args.data.name}-rotated"
        write_rotated(args.data, rotated, args.seed)
        print(f"recognition with {args.model} (rotated copy: {rotated})")
        ex_rows = exprate_rows(args.model, args.orienter, args.data, rotated)
    table = markdown(cls_rows, confusion, group_rows, ex_rows, kfold_rows(args.kfold))
    print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "orientation.md").write_text(table, encoding="utf-8")
    (args.out / "orientation.json").write_text(json.dumps(
        {"orienter": args.orienter, "model": args.model, "info": orienter.info,
         "classifier": cls_rows, "by_group": group_rows, "exprate": ex_rows,
         "kfold": kfold_rows(args.kfold)},
        indent=2), encoding="utf-8")
    print(f"wrote {args.out / 'orientation.md'} and {args.out / 'orientation.json'}")


if __name__ == "__main__":
    main()
