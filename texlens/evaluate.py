"""Evaluate a recognizer on a dataset directory: metrics plus per-sample rows.

One denominator: every line with a non-empty caption is scored (``n``). A sample the
model cannot get right still counts, as wrong, and is listed with its file and line:
a truth with tokens outside the model's vocabulary (``n_oov``; the model cannot write
them), a missing or unreadable image (``n_unreadable``; scored as an empty prediction)
and a caption that the model's caption style cannot normalise (``n_bad_truth``; scored
as an empty prediction against the caption split at spaces). Only lines with an empty
caption are left out (``n_empty``). Truth captions are normalised with the model's
normaliser (``cfg.data.style``), so raw LaTeX such as ``\\frac12+x^2`` is scored right.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

import numpy as np

from texlens import metrics
from texlens.data.datasets import DatasetError, Sample, _read_meta, read_layout, read_pairs
from texlens.data.image import ImageError, image_size
from texlens.data.splits import among, caption_expressions, expression, seen_formulas
from texlens.data.transforms import ink_height
from texlens.data.writer import ordered_map
from texlens.decoding import check_rescore
from texlens.latex import spelt_out
from texlens.recognizer import Recognizer, main_input
from texlens.tokens import join, normalizer


def list_samples(data: str | Path) -> tuple[list[Sample], list[str]]:
    """Every line of a dataset with a non-empty caption, in file order, including those
    whose image is missing (their ``image`` path does not exist: loading it fails and
    they count as unreadable); and the lines that cannot be scored (empty captions)."""
    root = Path(data)
    found, _ = read_layout(root)  # also raises for a directory without an index
    by_where = {s.where: s for s in found}
    competition = not (root / "caption.txt").is_file()
    index = root / ("gt.txt" if competition else "caption.txt")
    source = _read_meta(root / "source.txt") if competition else {}
    level = _read_meta(root / "level.txt") if competition else {}
    samples, excluded = [], []
    for lineno, key, caption in read_pairs(index):
        where = f"{index}:{lineno}"
        if where in by_where:
            samples.append(by_where[where])
        elif not caption.strip():
            excluded.append(f"{where}: empty caption for {key!r}; not scored")
        else:  # read_layout found no image for it
            samples.append(Sample(key, root / key, caption.split(), where, source.get(key),
                                  level.get(key)))
    return samples, excluded


def check_truths(rec: Recognizer, samples: Sequence[Sample]
                 ) -> tuple[list[list[str]], list[str | None], list[list[str]], list[str]]:
    """Normalise each sample's caption with the model's caption style.

    Returns the truths (a caption that fails keeps its space-split tokens), per sample the
    reason its caption failed (or None), per sample its tokens outside ``rec.vocab``, and
    the problems found, each naming the file and line.
    """
    norm = normalizer(rec.cfg.data.style)
    truths, bad, unknown, problems = [], [], [], []
    for s in samples:
        try:
            toks = norm(" ".join(s.tokens))
            if not toks:
                raise ValueError("nothing left after normalising")
        except ValueError as e:
            truths.append(list(s.tokens))
            bad.append(str(e))
            unknown.append([])
            problems.append(f"{s.where}: caption does not normalise "
                            f"({rec.cfg.data.style} style: {e}); counted wrong")
            continue
        # A token the model can write in an older spelling (\cosh as \operatorname { c o s h }:
        # its output is brought to today's) is not outside its vocabulary.
        unk = sorted(t for t in set(rec.vocab.unknown(toks)) if rec.vocab.unknown(spelt_out(t)))
        if unk:
            problems.append(f"{s.where}: tokens outside the vocabulary: {' '.join(unk)}; "
                            "counted wrong")
        truths.append(toks)
        bad.append(None)
        unknown.append(unk)
    return truths, bad, unknown, problems


def tex_unavailable() -> str | None:
    """Why TeX-based metrics cannot run here, or None when they can."""
    try:
        from texlens.data.synth.tex import tex_missing
    except ImportError as e:
        return f"texlens.data.synth.tex is not available ({e})"
    return tex_missing()


def evaluate(rec: Recognizer, data: str | Path, batch_size: int = 16, on_error: str = "skip",
             limit: int = 0, beam: int = 1,
             progress: Callable[[int], None] | None = None, render: bool = False,
             rescore: str | None = None, max_tokens: int = 0,
             unseen_in: Sequence[str | Path] = (), held_out: bool = False,
             writable_by: Recognizer | None = None) -> dict:
    """Returns {"metrics": {...}, "by_length": [...], "by_height": [...],
    "by_symbol_size": [...], "rows": [...], "problems": [...]}; ``by_height`` groups the
    readable images by their pixel height before resizing, ``by_symbol_size`` by the
    median symbol height (px) in the model's input, after resizing.

    Every problem (empty caption, missing or unreadable image, caption that does not
    normalise, token outside the vocabulary) is listed with its file and line; see the
    module docstring for how each is counted. With ``on_error="stop"`` any of them,
    found before decoding, raises DatasetError instead. ``render`` adds the TeX metrics
    (:func:`render_scores`). ``rescore`` as in ``Recognizer.predict_arrays``.
    ``max_tokens`` keeps only the lines whose caption has at most that many tokens (a
    subset defined by the truth alone, so every model is scored on the same lines).
    ``unseen_in`` names caption files (training sets): a line whose expression one of them
    has is left out, so a test set that shares formulas with training is scored on its
    held-out part only; ``metrics["n_seen_left_out"]`` counts them. ``held_out`` does the
    same with the formulas the model records having trained on (``rec.train_formulas``).
    When the model records them, ``metrics["n_trained_formula"]`` counts the scored lines
    whose formula it trained on: 0 is a held-out score. ``writable_by``, another model,
    keeps only the lines whose truth it can write (its caption style, its vocabulary), so
    that a full-LaTeX model and a CROHME-vocabulary one are compared on the same formulas;
    ``metrics["n_unwritable_left_out"]`` counts the others.
    """
    known = getattr(rec, "train_formulas", None)
    if held_out and known is None:
        raise ValueError(f"{rec.name}: the model does not record its training formulas; "
                         "give its training data with unseen_in (--unseen-in) instead")
    if rescore is not None:  # refused before the images are read
        check_rescore(rec.models, beam, rescore)
    samples, excluded = list_samples(data)
    if max_tokens:
        samples = [s for s in samples if len(s.tokens) <= max_tokens]
    seen = caption_expressions(unseen_in) if unseen_in else set()
    n_all = len(samples)
    samples = [s for s in samples if not among(expression(s.tokens), seen)]
    n_unwritable = 0
    if writable_by is not None:
        _, bad, unknown, _ = check_truths(writable_by, samples)
        kept = [s for s, b, u in zip(samples, bad, unknown, strict=True) if b is None and not u]
        n_unwritable, samples = len(samples) - len(kept), kept
    trained = (seen_formulas(known, [expression(s.tokens) for s in samples])
               if known is not None else np.zeros(len(samples), bool))
    if held_out:
        samples = [s for s, t in zip(samples, trained, strict=True) if not t]
        trained = np.zeros(len(samples), bool)
    n_seen = n_all - n_unwritable - len(samples)
    if limit:
        samples, trained = samples[:limit], trained[:limit]
    found = list(excluded)
    for s in samples:
        try:  # the header only: fast, and it gives by_height its heights
            s.width, s.height = image_size(s.image)
        except ImageError as e:
            found.append(f"{s.where}: {e}")
    if on_error == "stop":
        found += check_truths(rec, samples)[3]
        if found:
            raise DatasetError(f"{data}: {len(found)} bad samples, first: {found[0]}")
    result = evaluate_samples(rec, samples, batch_size, beam, progress, render, rescore)
    result["problems"] = excluded + result["problems"]
    result["metrics"]["n_empty"] = len(excluded)
    if unseen_in or held_out:
        result["metrics"]["n_seen_left_out"] = n_seen
    if known is not None:
        result["metrics"]["n_trained_formula"] = int(trained.sum())
    if writable_by is not None:
        result["metrics"]["n_unwritable_left_out"] = n_unwritable
    return result


def evaluate_samples(rec: Recognizer, samples: Sequence[Sample], batch_size: int = 16,
                     beam: int = 1, progress: Callable[[int], None] | None = None,
                     render: bool = False, rescore: str | None = None) -> dict:
    """Like :func:`evaluate`, on samples already listed (a k-fold held-out fold). Every
    sample is scored; unreadable images, truths outside the vocabulary and captions that
    do not normalise count as wrong and are listed in ``problems``."""
    truths, bad, unknown, problems = check_truths(rec, samples)
    arrays: list[np.ndarray | None] = []
    for s in samples:
        try:
            arrays.append(rec.prepare(s.image))
        except ImageError as e:
            arrays.append(None)
            problems.append(f"{s.where}: {e}; counted wrong (empty prediction)")
    readable = [i for i, a in enumerate(arrays) if a is not None]
    preds: list = [None] * len(samples)
    t0 = time.perf_counter()
    for start in range(0, len(readable), batch_size * 4):
        chunk = readable[start:start + batch_size * 4]
        for i, p in zip(chunk, rec.predict_arrays([arrays[i] for i in chunk], batch_size,
                                                  beam=beam, rescore=rescore), strict=True):
            preds[i] = p
        if progress:
            progress(len(chunk))
    seconds = time.perf_counter() - t0
    written = [p.tokens if p is not None else [] for p in preds]
    # What is scored: a truth that did not normalise can't be matched, so the model's
    # output is shown in its row but scored as an empty prediction.
    hyp = [[] if b else w for w, b in zip(written, bad, strict=True)]
    correct = [b is None and h == t for h, t, b in zip(hyp, truths, bad, strict=True)]
    scores = metrics.compute_all(hyp, truths)
    scores |= {"n_oov": sum(bool(u) for u in unknown),
               "n_unreadable": len(samples) - len(readable),
               "n_bad_truth": sum(b is not None for b in bad), "seconds": round(seconds, 3)}
    rows = [{"key": s.key, "prediction": p.latex if p is not None else "",
             "truth": join(t), "correct": c,
             "confidence": round(p.confidence, 4) if p is not None else 0.0}
            for s, p, t, c in zip(samples, preds, truths, correct, strict=True)]
    if render:
        rendered = render_scores(written, truths, [b is None for b in bad],
                                 [s.where for s in samples])
        scores |= rendered["metrics"]
        problems += rendered["problems"]
        for row, m, c in zip(rows, rendered["match"], rendered["compiles"], strict=True):
            row["render_match"], row["compiles"] = m, c
    # Tall images are shrunk the most to the model's input height; this shows what that costs.
    h = rec.cfg.data.height
    bins = sorted({h, h * 3 // 2, h * 2, h * 3})  # a set: equal bounds for a tiny h
    seen_h = [hyp[i] for i in readable]
    seen_t = [truths[i] for i in readable]
    by_height = metrics.by_value(seen_h, seen_t, [samples[i].height for i in readable], bins)
    # Symbols a few pixels high are where a recognizer fails: how small did they get?
    sizes = [round(ink_height((main_input(arrays[i])[0] * 255).astype(np.uint8)) or 0)
             for i in readable]
    by_symbol = metrics.by_value(seen_h, seen_t, sizes, [7, 9, 11, 14, 19])
    return {"metrics": scores, "by_length": metrics.by_length(hyp, truths),
            "by_height": by_height, "by_symbol_size": by_symbol, "rows": rows,
            "problems": problems}


def render_scores(preds: Sequence[Sequence[str]], truths: Sequence[Sequence[str]],
                  scorable: Sequence[bool], wheres: Sequence[str], font: str = "cm",
                  dpi: int = 150, workers: int | None = None) -> dict:
    """TeX metrics: every prediction and scorable truth typeset in display style (in
    chunks of one latex run each, over ``workers`` processes), then compared as images
    (:func:`texlens.metrics.render_match`), so equivalent spellings (``x^2`` and
    ``x^{2}``) count as right.

    Over all samples: ``render_match`` (equal pixels after cropping),
    ``render_match_nospace`` (equal after dropping blank columns, im2markup's lenient
    match) and ``compiles`` (the prediction typesets; an empty prediction does not).
    A prediction equal to its truth token for token matches without comparing images
    (CROHME-style truths such as ``a ' ^ { 2 }`` do not typeset). Otherwise a sample whose
    truth is not ``scorable`` or does not typeset counts as no match; the latter is listed
    in ``problems`` and counted in ``n_truth_untypeset``.
    """
    from texlens.data.synth.tex import render_tex  # imported late: TeX is optional
    from texlens.data.synth.tex_dataset import CHUNK

    # to_latex, not join: text-mode letters must not be typeset with spaces between them.
    from texlens.latex import to_latex
    pred_src = [to_latex(p) for p in preds]
    truth_src = [to_latex(t) if ok else "" for t, ok in zip(truths, scorable, strict=True)]
    formulas = sorted({f for f in pred_src + truth_src if f})  # no repeats
    # In chunks (one latex run each, over worker processes): a formula that hangs TeX or
    # breaks the page layout costs a rerun of its chunk, not of every formula: one run
    # over an early checkpoint's 2,000 predictions and their truths took over 45 minutes.
    chunks = [formulas[i:i + CHUNK] for i in range(0, len(formulas), CHUNK)]
    typeset = partial(render_tex, font=font, dpi=dpi, display=True)
    procs = min(4, os.cpu_count() or 1, len(chunks)) if workers is None else workers
    with ordered_map(typeset, chunks, procs, 1) as done:
        images = dict(zip(formulas, (img for chunk in done for img in chunk), strict=True))

    def image(src: str) -> np.ndarray | None:
        out = images.get(src)
        return out if isinstance(out, np.ndarray) else None

    match, lenient, compiles, problems = [], [], [], []
    for p, t, where in zip(pred_src, truth_src, wheres, strict=True):
        p_img, t_img = image(p), image(t)
        same = bool(t) and p == t
        if t and t_img is None and not same:
            problems.append(f"{where}: truth does not typeset ({images[t].message}); "
                            "render_match counts it wrong")
        both = p_img is not None and t_img is not None
        match.append(same or (both and metrics.render_match(p_img, t_img)))
        lenient.append(same or (both and metrics.render_match(p_img, t_img,
                                                              ignore_space=True)))
        compiles.append(p_img is not None)
    n = len(pred_src)
    share = (lambda xs: sum(xs) / n) if n else (lambda xs: 0.0)
    return {"metrics": {"render_match": share(match), "render_match_nospace": share(lenient),
                        "compiles": share(compiles),
                        "n_truth_untypeset": sum(t != "" and image(t) is None
                                                 for t in truth_src)},
            "match": match, "compiles": compiles, "problems": problems}
