"""Evaluate a recognizer on a dataset directory: metrics plus per-sample rows."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from texlens import metrics
from texlens.data.datasets import DatasetError, Sample, scan_dataset
from texlens.data.image import ImageError
from texlens.data.transforms import ink_height
from texlens.recognizer import Recognizer


def evaluate(rec: Recognizer, data: str | Path, batch_size: int = 16, on_error: str = "skip",
             limit: int = 0, beam: int = 1,
             progress: Callable[[int], None] | None = None) -> dict:
    """Returns {"metrics": {...}, "by_length": [...], "by_height": [...],
    "by_symbol_size": [...], "rows": [...], "problems": [...]}; ``by_height`` groups by
    the image's pixel height before resizing, ``by_symbol_size`` by the median symbol
    height (px) in the model's input, after resizing.

    Samples with a missing or unreadable image, an empty caption or a token the
    model's vocabulary lacks are reported (file and line) and skipped, or stop the
    evaluation before it starts when ``on_error`` is "stop".
    """
    report = scan_dataset([data], rec.vocab, decode_images=False)
    if report.problems and on_error == "stop":
        raise DatasetError(f"{data}: {report.skipped} bad samples, first: {report.problems[0]}")
    samples = report.samples[:limit] if limit else report.samples
    result = evaluate_samples(rec, samples, batch_size, beam, progress)
    result["problems"] = report.problems + result["problems"]
    result["metrics"]["skipped"] = len(result["problems"])
    return result


def evaluate_samples(rec: Recognizer, samples: Sequence[Sample], batch_size: int = 16,
                     beam: int = 1, progress: Callable[[int], None] | None = None) -> dict:
    """Like :func:`evaluate`, on samples already listed and checked against ``rec.vocab``
    (a k-fold held-out fold); images that fail to load are reported and skipped."""
    problems: list[str] = []
    arrays, kept = [], []
    for s in samples:
        try:
            arrays.append(rec.prepare(s.image))
            kept.append(s)
        except ImageError as e:
            problems.append(f"{s.where}: {e}")
    preds = []
    t0 = time.perf_counter()
    for start in range(0, len(arrays), batch_size * 4):
        chunk = arrays[start:start + batch_size * 4]
        preds += rec.predict_arrays(chunk, batch_size, beam=beam)
        if progress:
            progress(len(chunk))
    seconds = time.perf_counter() - t0
    hyp = [p.tokens for p in preds]
    ref = [s.tokens for s in kept]
    scores = metrics.compute_all(hyp, ref)
    scores["skipped"] = len(problems)
    scores["seconds"] = round(seconds, 3)
    rows = [{"key": s.key, "prediction": p.latex, "truth": " ".join(s.tokens),
             "correct": p.tokens == s.tokens, "confidence": round(p.confidence, 4)}
            for s, p in zip(kept, preds, strict=True)]
    # Tall images are shrunk the most to the model's input height; this shows what that costs.
    h = rec.cfg.data.height
    bins = sorted({h, h * 3 // 2, h * 2, h * 3})  # a set: equal bounds for a tiny h
    by_height = metrics.by_value(hyp, ref, [s.height for s in kept], bins)
    # Symbols a few pixels high are where a recognizer fails: how small did they get?
    sizes = [round(ink_height((a[0] * 255).astype(np.uint8)) or 0) for a in arrays]
    by_symbol = metrics.by_value(hyp, ref, sizes, [7, 9, 11, 14, 19])
    return {"metrics": scores, "by_length": metrics.by_length(hyp, ref), "by_height": by_height,
            "by_symbol_size": by_symbol, "rows": rows, "problems": problems}
