"""Accuracy on expressions a model trained on vs expressions it never saw.

Until 2026-12-03 the real CROHME captions of printed-small were split by a hash of the key
(crc32(key) % 100: < 10 held out, < 15 validation, else training). CROHME has each
expression from many writers, so 47% of the held-out lines were training expressions. This
script rebuilds that held-out set (the "test-real" of docs/RESULTS.md: 892 renderings,
seed 5) with any renderer, evaluates a model on it, and splits the result into lines whose
expression was a training expression under the old rule and lines whose was not:

    python benchmarks/unseen_expressions.py --model printed-small --out outputs/unseen
    python benchmarks/unseen_expressions.py --engine tex --out outputs/unseen-tex

Writes OUT/captions.txt, OUT/data/ (the renderings), OUT/metrics.json.

    python benchmarks/unseen_expressions.py --train-captions FILE

writes the real captions printed-small trained on under the old rule and stops: what
`make stamp-shipped` records in the shipped files as their training formulas.
"""

from __future__ import annotations

import argparse
import json
import zlib
from pathlib import Path

from texlens import metrics
from texlens.data.synth.dataset import read_caption_file, synth_dataset
from texlens.evaluate import evaluate
from texlens.recognizer import Recognizer

CAPTIONS = Path("../shared/data/crohme/train_caption.txt")


def old_key_split(key: str) -> str:
    """The retired rule (kept here only to say what the shipped model trained on)."""
    bucket = zlib.crc32(key.encode("utf-8")) % 100
    return "heldout" if bucket < 10 else "val" if bucket < 15 else "train"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="printed-small")
    ap.add_argument("--captions", type=Path, default=CAPTIONS)
    ap.add_argument("--engine", default="mathtext", help="mathtext, or a `data render` engine")
    ap.add_argument("--n", type=int, default=892)
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--out", type=Path, default=Path("outputs/unseen"))
    ap.add_argument("--train-captions", type=Path,
                    help="Write the old rule's training captions (key<TAB>tokens) here, stop.")
    args = ap.parse_args()

    rows = read_caption_file(args.captions)
    if args.train_captions:
        lines = [f"{k}\t{' '.join(t)}\n" for k, t in rows if old_key_split(k) == "train"]
        args.train_captions.parent.mkdir(parents=True, exist_ok=True)
        args.train_captions.write_text("".join(lines), encoding="utf-8")
        print(f"wrote {len(lines)} training captions to {args.train_captions}")
        return
    heldout = [(k, t) for k, t in rows if old_key_split(k) == "heldout"]
    trained = {" ".join(t) for k, t in rows if old_key_split(k) == "train"}
    args.out.mkdir(parents=True, exist_ok=True)
    data = args.out / "data"
    if not (data / "caption.txt").is_file():
        if args.engine == "mathtext":
            synth_dataset(data, args.n, args.seed, heldout, workers=2)
        else:
            from texlens.data.synth.tex_dataset import Formula, render_dataset
            rows = [Formula(k, " ".join(t), i + 1) for i, (k, t) in enumerate(heldout)]
            render_dataset(data, rows, seed=args.seed, engine=args.engine, workers=2)
    rec = Recognizer.load(args.model)
    result = evaluate(rec, data)
    groups: dict[str, tuple[list, list]] = {"seen": ([], []), "unseen": ([], [])}
    for r in result["rows"]:
        hyp, ref = groups["seen" if r["truth"] in trained else "unseen"]
        hyp.append(r["prediction"].split())
        ref.append(r["truth"].split())
    report = {"model": args.model, "engine": args.engine, "all": result["metrics"]}
    for name, (hyp, ref) in groups.items():
        m = metrics.compute_all(hyp, ref)
        report[name] = {k: m[k] for k in ("n", "sentence_acc", "exprate_le1", "wer", "bleu")}
    (args.out / "metrics.json").write_text(json.dumps(report, indent=2))
    for name in ("seen", "unseen"):
        m = report[name]
        print(f"{name:7s} n={m['n']:4d}  ExpRate {m['sentence_acc']:.3f}  "
              f"<=1 {m['exprate_le1']:.3f}  WER {m['wer']:.3f}")


if __name__ == "__main__":
    main()
