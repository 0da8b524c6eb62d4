"""CROHME 2014 test results of handwriting models, beside the published ones.

    python benchmarks/crohme_table.py --model handwritten-small [--model runs/x/model.pt]
        [--images data/crohme/test2014] [--ink data/crohme/test2014-ink/train]
        [--threads 2] [--out runs/crohme-table.md]

Scores every model greedily on the two renderings of the 2014 test set: the standard
offline bitmaps (``make handwritten-data`` extracts them) and texlens's own rendering
of the same expressions' InkML. A sample the model cannot score (a token outside its
vocabulary, an unreadable image) counts as wrong: the rates are over the whole set.
This set is for reporting only: never train or select models on it.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from texlens.evaluate import evaluate  # noqa: E402
from texlens.recognizer import Recognizer  # noqa: E402

# ExpRate (%) on CROHME 2014 as the issue lists them (each paper's own best setting).
PUBLISHED = [("DWAP", 50.1), ("BTTR", 54.0), ("CoMER", 59.3), ("PosFormer", 62.7)]


def score(rec: Recognizer, data: Path, batch_size: int) -> dict:
    t0 = time.perf_counter()
    result = evaluate(rec, data, batch_size)
    m = result["metrics"]  # bad samples are already in n, counted wrong
    return {"total": m["n"], "skipped": m["n_oov"] + m["n_unreadable"] + m["n_bad_truth"],
            "exprate": m["sentence_acc"], "le1": m["exprate_le1"], "le2": m["exprate_le2"],
            "wer": m["wer"], "seconds": time.perf_counter() - t0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", action="append", required=True)
    ap.add_argument("--images", type=Path, default=ROOT / "data/crohme/test2014")
    ap.add_argument("--ink", type=Path, default=ROOT / "data/crohme/test2014-ink/train")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    lines = ["| model | test images | n | ExpRate | <=1 | <=2 | WER | s |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for name in args.model:
        rec = Recognizer.load(name)
        for label, data in (("standard bitmaps", args.images), ("our ink rendering", args.ink)):
            r = score(rec, data, args.batch_size)
            skipped = f" ({r['skipped']} unscorable, wrong)" if r["skipped"] else ""
            lines.append(f"| {name} | {label} | {r['total']}{skipped} | "
                         f"**{100 * r['exprate']:.1f}%** | {100 * r['le1']:.1f}% | "
                         f"{100 * r['le2']:.1f}% | {r['wer']:.3f} | {r['seconds']:.0f} |")
            print(lines[-1], flush=True)
    lines += [f"| {paper} (published) | standard | 986 | {rate:.1f}% | | | | |"
              for paper, rate in PUBLISHED]
    text = "\n".join(lines) + (f"\n\n{platform.machine()}, {args.threads} threads, "
                               f"torch {torch.__version__}, greedy decoding\n")
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)


if __name__ == "__main__":
    main()
