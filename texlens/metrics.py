r"""Evaluation metrics for formula recognition.

A *sequence* is a list of LaTeX tokens, e.g. ``["\frac", "{", "1", "}", "{", "2", "}"]``.
Every corpus-level function takes ``preds`` and ``refs``: two equally long collections of
sequences, where ``preds[i]`` is the model output for the reference ``refs[i]``.

All functions are pure. On an empty corpus (zero sentences) they return ``0.0``; see
:func:`compute_all` and :func:`by_length` for their empty-corpus results.

Definitions, for comparing with published figures:

- ``sentence_acc`` (ExpRate): exact token-for-token match.
- ``bleu``: corpus BLEU-4 with the brevity penalty and no smoothing, the formula of
  torchtext's ``bleu_score`` (pix2tex) and of Hugging Face ``evaluate``'s "bleu" (UniMERNet),
  on tokens.
- ``wer``: per-sentence token edit distance / max(len), averaged over sentences.
- ``ned``: the same on characters of the space-joined token strings, averaged over
  sentences (UniMERNet's normalised edit distance divides by the longer string too;
  pix2tex divides by the truth's length, which can exceed 1).
- :func:`render_match`: two typeset images compared pixel by pixel after cropping.

Class labels (the orientation classifier): :func:`confusion_matrix` and :func:`macro_f1`.
"""

import math
from collections import Counter
from collections.abc import Sequence
from itertools import pairwise

import numpy as np
from rapidfuzz.distance import Levenshtein

__all__ = [
    "bleu",
    "by_length",
    "by_value",
    "competition_score",
    "compute_all",
    "confusion_matrix",
    "corpus_wer",
    "edit_distance",
    "exprate_within",
    "macro_f1",
    "normalized_edit_distance",
    "render_match",
    "sentence_accuracy",
    "token_accuracy",
    "wer",
]

Corpus = Sequence[Sequence[str]]


def _check_lengths(preds: Corpus, refs: Corpus) -> int:
    # A silent zip() would truncate to the shorter side and report wrong scores.
    if len(preds) != len(refs):
        raise ValueError(
            f"preds and refs must have the same length, got {len(preds)} preds and {len(refs)} refs"
        )
    return len(preds)


def edit_distance(a: Sequence[str], b: Sequence[str]) -> int:
    """Token-level Levenshtein distance (unit cost insert, delete, substitute).

    Each token is one symbol: ``["ab", "c"]`` vs ``["a", "bc"]`` is 2, not 0.
    """
    # rapidfuzz accepts lists of strings, but it compares them through hash values.
    # Numbering the tokens ourselves makes the result exact regardless of hashing.
    ids: dict[str, int] = {}
    a_ids = [ids.setdefault(tok, len(ids)) for tok in a]
    b_ids = [ids.setdefault(tok, len(ids)) for tok in b]
    return int(Levenshtein.distance(a_ids, b_ids))


def _per_sentence_rate(distance: int, len_a: int, len_b: int) -> float:
    # Normalising by the longer side keeps the rate in [0, 1]; two empty sides are a match.
    longest = max(len_a, len_b)
    return distance / longest if longest else 0.0


def sentence_accuracy(preds: Corpus, refs: Corpus) -> float:
    """Fraction of predictions that equal their reference token for token (ExpRate)."""
    n = _check_lengths(preds, refs)
    if n == 0:
        return 0.0
    # list() so that a tuple prediction still equals a list reference.
    hits = sum(list(p) == list(r) for p, r in zip(preds, refs, strict=True))
    return hits / n


def exprate_within(preds: Corpus, refs: Corpus, k: int) -> float:
    """Fraction of predictions within token edit distance ``k`` of their reference.

    ``k=0`` is ExpRate; ``k=1`` and ``k=2`` are the usual "ExpRate <=1" and "<=2".
    Raises ``ValueError`` for negative ``k``.
    """
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    n = _check_lengths(preds, refs)
    if n == 0:
        return 0.0
    hits = sum(edit_distance(p, r) <= k for p, r in zip(preds, refs, strict=True))
    return hits / n


def wer(preds: Corpus, refs: Corpus) -> float:
    """Competition WER: mean over sentences of ``edit_distance / max(len(pred), len(ref))``.

    A sentence where both sides are empty contributes 0. Every sentence weighs the same,
    whatever its length, and each term lies in [0, 1].
    """
    n = _check_lengths(preds, refs)
    if n == 0:
        return 0.0
    total = sum(
        _per_sentence_rate(edit_distance(p, r), len(p), len(r))
        for p, r in zip(preds, refs, strict=True)
    )
    return total / n


def corpus_wer(preds: Corpus, refs: Corpus) -> float:
    """Classic corpus WER: sum of token edit distances / sum of reference lengths.

    Can exceed 1 when predictions insert many tokens. If every reference is empty the
    ratio is undefined; we return 1.0 if any prediction has tokens (each one is an
    insertion error) and 0.0 otherwise.
    """
    n = _check_lengths(preds, refs)
    if n == 0:
        return 0.0
    errors = sum(edit_distance(p, r) for p, r in zip(preds, refs, strict=True))
    ref_tokens = sum(len(r) for r in refs)
    if ref_tokens == 0:
        return 1.0 if errors else 0.0
    return errors / ref_tokens


def token_accuracy(preds: Corpus, refs: Corpus) -> float:
    """Position-wise token accuracy over the corpus.

    For each sentence, count positions ``i`` where ``pred[i] == ref[i]`` (comparing only
    up to the shorter length), and divide the corpus total by the sum over sentences of
    ``max(len(pred), len(ref))``. Missing or extra tokens therefore count as wrong.
    This is deliberately alignment-free: one early insertion shifts every later token
    and is punished heavily, which is what teacher-forced accuracy during training
    measures too. If every sentence is empty on both sides, returns 1.0 (nothing was
    mispredicted).
    """
    n = _check_lengths(preds, refs)
    if n == 0:
        return 0.0
    matches = 0
    slots = 0
    for p, r in zip(preds, refs, strict=True):
        # Positions past the shorter side are mismatches; they are counted in slots.
        matches += sum(pt == rt for pt, rt in zip(p, r, strict=False))
        slots += max(len(p), len(r))
    return matches / slots if slots else 1.0


def normalized_edit_distance(preds: Corpus, refs: Corpus) -> float:
    r"""Character-level normalised edit distance (NED), averaged over sentences.

    Each sequence is joined into a string with single spaces (``"\frac { 1 }"``), and
    the per-sentence value is ``char_levenshtein / max(len(pred_str), len(ref_str))``
    (0 when both strings are empty), so each term lies in [0, 1]. Unlike :func:`wer`,
    which works on tokens, this gives partial credit for near-miss tokens such as
    ``\alpha`` vs ``\alpha_``.
    """
    n = _check_lengths(preds, refs)
    if n == 0:
        return 0.0
    total = 0.0
    for p, r in zip(preds, refs, strict=True):
        p_str = " ".join(p)
        r_str = " ".join(r)
        total += _per_sentence_rate(Levenshtein.distance(p_str, r_str), len(p_str), len(r_str))
    return total / n


def _ngrams(tokens: Sequence[str], n: int) -> Counter[tuple[str, ...]]:
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def bleu(preds: Corpus, refs: Corpus, max_n: int = 4) -> float:
    """Corpus BLEU (Papineni et al., 2002) with one reference per prediction, on tokens.

    For each order ``1..max_n`` the clipped n-gram matches and the predicted n-gram
    counts are summed over the whole corpus before dividing (corpus-level, not an
    average of sentence scores). The score is the geometric mean of these precisions
    with uniform weights, times the brevity penalty ``exp(1 - r / c)`` when the total
    prediction length ``c`` is below the total reference length ``r`` (else 1).

    No smoothing: if any order has zero matches (or the predictions contain no n-grams
    of that order) the score is 0.0. Result is in [0, 1]. Raises ``ValueError`` if
    ``max_n < 1``.
    """
    if max_n < 1:
        raise ValueError(f"max_n must be >= 1, got {max_n}")
    n_sent = _check_lengths(preds, refs)
    if n_sent == 0:
        return 0.0
    matched = [0] * max_n
    proposed = [0] * max_n
    for p, r in zip(preds, refs, strict=True):
        for order in range(1, max_n + 1):
            p_counts = _ngrams(p, order)
            r_counts = _ngrams(r, order)
            # Clipping stops "the the the" from scoring against a single "the".
            matched[order - 1] += sum(min(c, r_counts[g]) for g, c in p_counts.items())
            proposed[order - 1] += sum(p_counts.values())
    if any(m == 0 for m in matched):
        # Also covers proposed == 0, since matched <= proposed.
        return 0.0
    log_precision = sum(math.log(m / t) for m, t in zip(matched, proposed, strict=True)) / max_n
    c = sum(len(p) for p in preds)
    r = sum(len(x) for x in refs)
    brevity = 1.0 if c >= r else math.exp(1.0 - r / c)
    return brevity * math.exp(log_precision)


def _ink_box(img: np.ndarray) -> np.ndarray:
    # Ink at half coverage or more (im2markup binarises at the same midpoint), cropped to
    # its bounding box so margins and image size do not matter.
    ink = np.asarray(img) >= 128
    rows, cols = np.flatnonzero(ink.any(1)), np.flatnonzero(ink.any(0))
    if rows.size == 0:
        return np.zeros((0, 0), bool)
    return ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


def render_match(pred: np.ndarray, truth: np.ndarray, ignore_space: bool = False) -> bool:
    r"""Whether two typeset formulas look the same: uint8 ink coverage maps (255 = ink)
    rendered with the same font, dpi and style, binarised at 128 and cropped to their ink.

    Strict: the cropped images are equal pixel for pixel. With ``ignore_space`` (im2markup's
    lenient "w/o spaces" match) columns without ink are removed first, so ``a\,b`` equals
    ``ab``; the remaining columns must still be equal exactly (im2markup also forgives a few
    differing pixels per column; we do not). Two blank images match.
    """
    a, b = _ink_box(pred), _ink_box(truth)
    if ignore_space:
        a, b = a[:, a.any(0)], b[:, b.any(0)]
    return a.shape == b.shape and bool((a == b).all())


def competition_score(sentence_acc: float, wer: float) -> float:
    """Leaderboard score: ``0.9 * sentence_acc + 0.1 * (1 - wer)``."""
    return 0.9 * sentence_acc + 0.1 * (1.0 - wer)


_METRIC_KEYS = (
    "sentence_acc",
    "exprate_le1",
    "exprate_le2",
    "wer",
    "corpus_wer",
    "token_acc",
    "ned",
    "bleu",
    "score",
)


def compute_all(preds: Corpus, refs: Corpus) -> dict[str, float]:
    """All metrics at once.

    Keys: ``n`` (number of sentences, an int), ``sentence_acc``, ``exprate_le1``,
    ``exprate_le2``, ``wer``, ``corpus_wer``, ``token_acc``, ``ned``, ``bleu`` (BLEU-4)
    and ``score`` (:func:`competition_score` of ``sentence_acc`` and ``wer``).

    For an empty corpus returns ``n=0`` and every metric 0.0, including ``score``
    (the formula would otherwise give 0.1 for no predictions at all).
    """
    n = _check_lengths(preds, refs)
    if n == 0:
        return {"n": 0, **dict.fromkeys(_METRIC_KEYS, 0.0)}
    acc = sentence_accuracy(preds, refs)
    w = wer(preds, refs)
    return {
        "n": n,
        "sentence_acc": acc,
        "exprate_le1": exprate_within(preds, refs, 1),
        "exprate_le2": exprate_within(preds, refs, 2),
        "wer": w,
        "corpus_wer": corpus_wer(preds, refs),
        "token_acc": token_accuracy(preds, refs),
        "ned": normalized_edit_distance(preds, refs),
        "bleu": bleu(preds, refs),
        "score": competition_score(acc, w),
    }


def _bin_labels(bins: Sequence[int]) -> list[str]:
    labels = []
    low = 1
    for high in bins:
        labels.append(f"{low}-{high}" if high > low else str(high))
        low = high + 1
    labels.append(f">{bins[-1]}")
    return labels


def by_length(
    preds: Corpus, refs: Corpus, bins: Sequence[int] = (10, 20, 30, 50)
) -> list[dict[str, float | int | str]]:
    """Sentence accuracy and WER grouped by reference length (in tokens).

    ``bins`` are inclusive upper bounds, strictly increasing and positive; the default
    gives rows ``"1-10"``, ``"11-20"``, ``"21-30"``, ``"31-50"`` and ``">50"``. Each row is
    ``{"bin": label, "n": count, "sentence_acc": ..., "wer": ...}`` in bin order; bins
    with no sentences are omitted, so an empty corpus gives ``[]``. Empty references
    (length 0) are counted in the first bin.
    """
    return by_value(preds, refs, [len(r) for r in refs], bins)


def by_value(
    preds: Corpus, refs: Corpus, values: Sequence[int], bins: Sequence[int]
) -> list[dict[str, float | int | str]]:
    """Like :func:`by_length`, grouped by any per-sentence integer (an image's height...)."""
    if not bins:
        raise ValueError("bins must not be empty")
    if bins[0] < 1 or any(b <= a for a, b in pairwise(bins)):
        raise ValueError(f"bins must be positive and strictly increasing, got {list(bins)}")
    _check_lengths(preds, refs)
    if len(values) != len(refs):
        raise ValueError(f"{len(values)} values for {len(refs)} references")
    labels = _bin_labels(bins)
    groups: list[tuple[list[Sequence[str]], list[Sequence[str]]]] = [([], []) for _ in labels]
    for p, r, v in zip(preds, refs, values, strict=True):
        # First bound that fits; past the last bound falls into the open-ended bin.
        idx = next((i for i, high in enumerate(bins) if v <= high), len(bins))
        groups[idx][0].append(p)
        groups[idx][1].append(r)
    rows: list[dict[str, float | int | str]] = []
    for label, (g_preds, g_refs) in zip(labels, groups, strict=True):
        if g_refs:
            rows.append(
                {
                    "bin": label,
                    "n": len(g_refs),
                    "sentence_acc": sentence_accuracy(g_preds, g_refs),
                    "wer": wer(g_preds, g_refs),
                }
            )
    return rows


def confusion_matrix(truth: Sequence[int], pred: Sequence[int], n_classes: int) -> np.ndarray:
    """(n_classes, n_classes) counts: row = true class, column = predicted class."""
    t, p = np.asarray(truth, np.int64), np.asarray(pred, np.int64)
    if t.shape != p.shape:
        raise ValueError(f"{t.size} predictions for {p.size} labels")
    if t.size and (min(t.min(), p.min()) < 0 or max(t.max(), p.max()) >= n_classes):
        raise ValueError(f"labels must be in 0..{n_classes - 1}")
    return np.bincount(t * n_classes + p, minlength=n_classes**2).reshape(n_classes, n_classes)


def macro_f1(truth: Sequence[int], pred: Sequence[int], n_classes: int) -> float:
    """Unweighted mean of the per-class F1 over the classes that occur in ``truth`` or
    ``pred`` (scikit-learn's default labels); a rare class counts as much as a common one.
    0.0 for no samples."""
    cm = confusion_matrix(truth, pred, n_classes)
    tp = np.diag(cm).astype(np.float64)
    seen = (cm.sum(0) + cm.sum(1)) > 0
    if not seen.any():
        return 0.0
    # F1 = 2 tp / (2 tp + fp + fn) = 2 tp / (predicted + true)
    f1 = 2 * tp[seen] / (cm.sum(0)[seen] + cm.sum(1)[seen])
    return float(f1.mean())
