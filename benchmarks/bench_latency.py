"""CPU inference speed of a model: batch-1 latency and batch-32 throughput.

    python benchmarks/bench_latency.py [--model printed-small] [--threads 2] [--backend torch]
        [--beam 4]

Inputs are the examples/printed images (preprocessed once, outside the timing);
the timed part is encode + decoding with the key/value cache (greedy, or beam search with
--beam), on the backend that
``Recognizer.load`` picks by default (auto: onnx for one model) unless --backend says.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path

import torch

from texlens.recognizer import Recognizer

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="printed-small")
    ap.add_argument("--images", default=str(ROOT / "examples" / "printed" / "images"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--backend", default="auto", help="auto | torch | onnx | onnx-int8")
    ap.add_argument("--beam", type=int, default=1, help="beam width (1: greedy)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rec = Recognizer.load(args.model, backend=args.backend)
    files = sorted(Path(args.images).glob("*.png"))
    arrays = [rec.prepare(f) for f in files]
    rec.predict_arrays(arrays[:2], 1, beam=args.beam)  # warm-up
    per_image = []
    for _ in range(args.repeats):
        for a in arrays:
            t0 = time.perf_counter()
            rec.predict_arrays([a], 1, beam=args.beam)
            per_image.append((time.perf_counter() - t0) * 1000)
    batch = (arrays * (32 // len(arrays) + 1))[:32]
    runs = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        rec.predict_arrays(batch, 32, beam=args.beam)
        runs.append(time.perf_counter() - t0)
    params = sum(p.numel() for p in rec.model.parameters()) / 1e6
    print(f"model: {args.model} ({params:.2f} M parameters), backend: {rec.backend}, "
          f"beam: {args.beam}, threads: {args.threads}, "
          f"cpu: {platform.processor() or platform.machine()}, torch {torch.__version__}")
    print(f"batch 1:  median {statistics.median(per_image):.1f} ms/image "
          f"(p90 {statistics.quantiles(per_image, n=10)[-1]:.1f} ms, {len(per_image)} runs)")
    print(f"batch 32: {32 / statistics.median(runs):.1f} images/s")


if __name__ == "__main__":
    main()
