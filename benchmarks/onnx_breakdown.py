"""Where batch-1 ONNX latency goes: the encoder run, one decoder step, and the step graph's
node count after onnxruntime's optimisations.

    python benchmarks/onnx_breakdown.py [--model printed-small] [--threads 1 2] [--runs 300]

The image is the model's example closest to 30 tokens (as in bench_backends.py); a
30-token formula costs one encoder run plus 31 steps. Times are the 25th percentile of
--runs calls (the minimum hides nothing on a quiet machine; a percentile is steadier on a
loaded one). Exports go to outputs/onnx-cache (TEXLENS_CACHE).
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

from texlens.onnx_backend import export_cached  # noqa: E402
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
    args = ap.parse_args()
    _, files, lengths = examples(args.model)
    one = min(files, key=lambda f: abs(lengths.get(f.stem, 0) - 30))
    rec = Recognizer.load(args.model, backend="onnx")
    images = rec.prepare(one)[None].astype(np.float32)  # (1, 1, H, W)
    export = export_cached(resolve_model(args.model))
    for threads in args.threads:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        with tempfile.TemporaryDirectory() as tmp:
            opts.optimized_model_filepath = str(Path(tmp) / "step.onnx")
            step = ort.InferenceSession(str(export / "decoder_step.onnx"), opts,
                                        ["CPUExecutionProvider"])
            nodes = Counter(n.op_type for n in onnx.load(opts.optimized_model_filepath).graph.node)
        opts.optimized_model_filepath = ""
        enc = ort.InferenceSession(str(export / "encoder_unpadded.onnx"), opts,
                                   ["CPUExecutionProvider"])
        feed_enc = {"images": images}
        mem_bias, *cross = enc.run(None, feed_enc)
        feed = {"token": np.array([[5]]), "position": np.array([15]), "mem_bias": mem_bias,
                **dict(zip(rec.onnx.cross_names, cross, strict=True))}
        heads, dk = rec.onnx.heads, rec.onnx.dk
        for i, name in enumerate(rec.onnx.past_names):
            feed[name] = np.zeros((1, heads, dk, 15) if i % 2 == 0 else (1, heads, 15, dk),
                                  np.float32)
        e_ms = p25_ms(lambda e=enc, f=feed_enc: e.run(None, f), max(20, args.runs // 10))
        s_ms = p25_ms(lambda s=step, f=feed: s.run(None, f), args.runs)
        ops = ", ".join(f"{k} {v}" for k, v in nodes.most_common(6))
        print(f"{args.model}, {threads} thread(s), input {images.shape[2]}x{images.shape[3]} "
              f"({mem_bias.shape[-1]} cells): encoder {e_ms:.2f} ms, decoder step {s_ms:.3f} "
              f"ms, encoder + 31 steps {e_ms + 31 * s_ms:.1f} ms; step graph "
              f"{sum(nodes.values())} nodes ({ops})")


if __name__ == "__main__":
    main()
