"""PyTorch vs ONNX vs ONNX int8 on the CPU: batch-1 latency and batch-32 throughput.

    python benchmarks/bench_backends.py [--model printed-small --model handwritten-small]
        [--threads 2] [--runs 30] [--exprate printed-small=data/printed/test-synth ...]
        [--examples DIR --length 60] [--beam 4]

Batch 1: the example image (examples/printed, examples/handwritten or, for a model of the
latex caption style, examples/typeset; or the dataset --examples) whose caption is closest
to --length tokens (30), preprocessed once; the timed part is encode + decoding (greedy,
or beam search of width --beam), median of --runs. Batch 32: the examples repeated to 32
images, images/s, median of 3. --exprate MODEL=DIR also scores each backend on a test
set (the int8 loss). ONNX graphs are exported into outputs/onnx-cache (TEXLENS_CACHE).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("TEXLENS_CACHE", str(ROOT / "outputs" / "onnx-cache"))

from texlens.data.datasets import read_layout  # noqa: E402
from texlens.evaluate import evaluate  # noqa: E402
from texlens.recognizer import BACKENDS, Recognizer  # noqa: E402
from texlens.tokens import normalizer  # noqa: E402


def examples(rec: Recognizer, folder: Path | None = None
             ) -> tuple[Path, list[Path], dict[str, int]]:
    """A dataset's images and the length of each caption in the model's tokens."""
    if folder is None:
        name = ("handwritten" if "hand" in rec.name else
                "typeset" if rec.cfg.data.style == "latex" else "printed")
        folder = ROOT / "examples" / name
    samples, _ = read_layout(folder)
    norm = normalizer(rec.cfg.data.style)
    lengths = {s.image.stem: len(norm(" ".join(s.tokens))) for s in samples}
    return folder, [s.image for s in samples], lengths


def cpu_name() -> str:
    """The CPU's model name: latency figures differ between hosts of the same VM size."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def time_backend(rec: Recognizer, files: list[Path], lengths: dict[str, int], runs: int,
                 length: int = 30, beam: int = 1) -> dict:
    one = min(files, key=lambda f: abs(lengths.get(f.stem, 0) - length))
    a = rec.prepare(one)
    tokens = len(rec.predict_arrays([a], 1, beam=beam)[0].tokens)  # also the warm-up
    per_image = []
    for _ in range(runs):
        t0 = time.perf_counter()
        rec.predict_arrays([a], 1, beam=beam)
        per_image.append((time.perf_counter() - t0) * 1000)
    arrays = [rec.prepare(f) for f in files[:32]]
    batch = (arrays * (32 // len(arrays) + 1))[:32]
    rec.predict_arrays(batch[:4], 32, beam=beam)
    batches = []
    for _ in range(3):
        t0 = time.perf_counter()
        rec.predict_arrays(batch, 32, beam=beam)
        batches.append(time.perf_counter() - t0)
    return {"image": one.name, "tokens": tokens, "ms": statistics.median(per_image),
            "p90": statistics.quantiles(per_image, n=10)[-1],
            "ips": 32 / statistics.median(batches)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", action="append", default=[])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--exprate", action="append", default=[], metavar="MODEL=DIR")
    ap.add_argument("--examples", type=Path, help="dataset to draw the images from")
    ap.add_argument("--length", type=int, default=30, help="batch 1: caption length, tokens")
    ap.add_argument("--beam", type=int, default=1, help="beam width (1: greedy)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)  # onnxruntime sessions take the same count
    models = args.model or ["printed-small", "handwritten-small"]
    print(f"threads: {args.threads}, cpu: {cpu_name()} x {os.cpu_count()}, "
          f"torch {torch.__version__}, load average {os.getloadavg()[0]:.1f}, beam {args.beam}")
    print("| model | backend | batch 1 (median, p90) | tokens | batch 32 |")
    print("|---|---|---|---|---|")
    for model in models:
        _, files, lengths = examples(Recognizer.load(model), args.examples)
        for backend in BACKENDS:
            r = time_backend(Recognizer.load(model, backend=backend), files, lengths, args.runs,
                             args.length, args.beam)
            print(f"| {model} | {backend} | {r['ms']:.1f} ms ({r['p90']:.1f}) | {r['tokens']} "
                  f"({r['image']}) | {r['ips']:.1f} images/s |", flush=True)
    for item in args.exprate:
        model, data = item.split("=", 1)
        for backend in BACKENDS:
            m = evaluate(Recognizer.load(model, backend=backend), data,
                         beam=args.beam)["metrics"]
            print(f"{model} {backend} on {data}: ExpRate {m['sentence_acc'] * 100:.2f}% "
                  f"(n={m['n']}, {m['seconds']:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
