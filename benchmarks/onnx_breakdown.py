"""Where batch-1 ONNX latency goes: the encoder run, one decoder step, the whole greedy
loop (greedy.onnx, one thread), and the step graph's node count after onnxruntime's
optimisations.

    python benchmarks/onnx_breakdown.py [--model printed-small] [--threads 1 2] [--runs 300]

The image is the model's example closest to 30 tokens (as in bench_backends.py); a
30-token formula costs one encoder run plus a loop of 31 steps. Times are the 25th percentile of
--runs calls (the minimum hides nothing on a quiet machine; a percentile is steadier on a
loaded one). Exports go to outputs/onnx-cache (TEXLENS_CACHE).

An architecture's cost before its model is trained (issue 14's budget for printed-base:
a 60-token formula in 50 ms on 2 threads): --image a formula of that length, --steps 61,
and a checkpoint of the architecture trained for a few steps, which does not stop
writing, so the loop runs exactly --steps steps:

    python benchmarks/onnx_breakdown.py --model runs/printed-base/model.pt --threads 2 \
        --image data/base/test-corpus/KEY.png --steps 61
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("TEXLENS_CACHE", str(ROOT / "outputs" / "onnx-cache"))

from bench_backends import examples  # noqa: E402

from texlens.onnx_backend import STEP, OnnxModel, export_cached  # noqa: E402
from texlens.recognizer import Recognizer, resolve_model  # noqa: E402


def p25_ms(fn, runs: int) -> float:
    fn()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.percentile(times, 25)) * 1000


def main() -> None:
    import onnx
    import onnxruntime as ort

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="printed-small")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--runs", type=int, default=300)
    ap.add_argument("--image", type=Path, help="instead of the example closest to 30 tokens")
    ap.add_argument("--steps", type=int, default=200, help="at most this many decoder steps")
    args = ap.parse_args()
    if args.image:
        one = args.image
    else:
        _, files, lengths = examples(args.model)
        one = min(files, key=lambda f: abs(lengths.get(f.stem, 0) - 30))
    rec = Recognizer.load(args.model, backend="onnx")
    images = rec.prepare(one)[None].astype(np.float32)  # (1, 1, H, W)
    mask = np.ones((1, *images.shape[2:]), bool)
    export = export_cached(resolve_model(args.model))
    for threads in args.threads:
        model = OnnxModel(export, threads=threads)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads, opts.inter_op_num_threads = 1, 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        with tempfile.TemporaryDirectory() as tmp:
            opts.optimized_model_filepath = str(Path(tmp) / "step.onnx")
            step = ort.InferenceSession(str(export / STEP), opts, ["CPUExecutionProvider"])
            nodes = Counter(n.op_type for n in onnx.load(opts.optimized_model_filepath).graph.node)
        encoded = model.encode(images, mask)
        feed = {"token": np.array([[5]]), "position": np.array([15]), "mem_bias": encoded[0],
                **dict(zip(model.cross_names, encoded[1:], strict=True))}
        for name in model.past_names:
            feed[name] = np.zeros((1, model.heads, 15, model.dk), np.float32)
        n_tokens = model.decode(encoded, args.steps)[0].shape[1]
        e_ms = p25_ms(lambda m=model: m.encode(images, mask), max(20, args.runs // 10))
        s_ms = p25_ms(lambda s=step, f=feed: s.run(None, f), args.runs)
        d_ms = p25_ms(lambda m=model, e=encoded: m.decode(e, args.steps), max(20, args.runs // 10))
        ops = ", ".join(f"{k} {v}" for k, v in nodes.most_common(6))
        print(f"{args.model}, {threads} thread(s), input {images.shape[2]}x{images.shape[3]} "
              f"({encoded[0].shape[-1]} cells): encoder {e_ms:.2f} ms, one decoder step "
              f"{s_ms:.3f} ms, greedy loop ({n_tokens} steps) {d_ms:.2f} ms; step graph "
              f"{sum(nodes.values())} nodes ({ops})")

if __name__ == "__main__":
    main()
