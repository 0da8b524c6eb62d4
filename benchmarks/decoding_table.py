"""Greedy vs beam search (accuracy and CPU cost), and ensembles vs their members.

    python benchmarks/decoding_table.py --model printed-small --data data/printed/test-real \
        [--beams 1 3 5 10] [--threads 2] [--out runs/decoding.md]
    python benchmarks/decoding_table.py --ensemble A.pt B.pt C.pt --data DIR [--beams 1]

With --model: one row per beam width. With --ensemble: one row per member and one for
the ensemble (per-step log-probabilities averaged) at each beam width. Throughput
is the whole set decoded in batches of 16; latency is batch 1 over the first
``--latency-n`` images. Images are decoded from disk once, outside the timing.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from texlens.data.datasets import read_layout  # noqa: E402
from texlens.metrics import compute_all  # noqa: E402
from texlens.recognizer import Recognizer  # noqa: E402


def measure(rec: Recognizer, arrays: list, refs: list[list[str]], beam: int,
            latency_n: int) -> dict:
    t0 = time.perf_counter()
    preds = rec.predict_arrays(arrays, 16, beam=beam)
    batched = time.perf_counter() - t0
    lat = []
    for a in arrays[:latency_n]:
        t0 = time.perf_counter()
        rec.predict_arrays([a], 1, beam=beam)
        lat.append((time.perf_counter() - t0) * 1000)
    scores = compute_all([p.tokens for p in preds], refs)
    return {**scores, "ms_batched": 1000 * batched / len(arrays),
            "ms_b1": statistics.median(lat) if lat else float("nan")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None)
    ap.add_argument("--ensemble", nargs="+", default=None)
    ap.add_argument("--data", required=True)
    ap.add_argument("--beams", nargs="+", type=int, default=[1, 3, 5, 10])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--latency-n", type=int, default=50, help="0: no batch-1 timing")
    ap.add_argument("--out", default=None, help="also write the markdown table here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if bool(args.model) == bool(args.ensemble):
        ap.error("give exactly one of --model and --ensemble")
    samples, problems = read_layout(args.data)
    if problems:
        print(f"{len(problems)} bad lines in {args.data} skipped, e.g. {problems[0]}")
    if args.model:
        systems = [(args.model, Recognizer.load(args.model))]
    else:
        systems = [(Path(m).parent.name or m, Recognizer.load(m)) for m in args.ensemble]
        systems.append((f"ensemble of {len(args.ensemble)}", Recognizer.load(args.ensemble)))
    arrays = [systems[0][1].prepare(s.image) for s in samples]
    refs = [s.tokens for s in samples]
    lines = [f"{len(samples)} images of `{args.data}`, {args.threads} threads, "
             f"{platform.machine()} CPU, torch {torch.__version__}", "",
             "| system | beam | sentence acc | ExpRate <=1 | WER | ms / image (batch 16) "
             "| ms / image (batch 1) |", "|---|---:|---:|---:|---:|---:|---:|"]
    print("\n".join(lines), flush=True)
    for beam in args.beams:
        for name, rec in systems:
            r = measure(rec, arrays, refs, beam, args.latency_n)
            lines.append(f"| {name} | {beam} | {100 * r['sentence_acc']:.1f} | "
                         f"{100 * r['exprate_le1']:.1f} | {r['wer']:.3f} | "
                         f"{r['ms_batched']:.1f} | {r['ms_b1']:.1f} |")
            print(lines[-1], flush=True)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
