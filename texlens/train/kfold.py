"""``texlens kfold``: K-fold cross-validation over the training data, and the ensemble of
the K fold models.

The samples of data.train are pooled and dealt into K folds, stratified by source
(printed, handwritten, unknown) and by formula length. Fold i's model trains on the
other folds, with fold i as its validation set (checkpoint selection), and is then
scored on fold i; the K scores give a mean and a spread. Finally the K models,
decoding together, are scored on data.val, which none of them saw.
"""

from __future__ import annotations

import copy
import json
import random
import statistics
from bisect import bisect_left
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path

from texlens.config import Config, ConfigError
from texlens.data.datasets import Sample
from texlens.evaluate import evaluate_samples
from texlens.recognizer import Recognizer
from texlens.train.run import build_vocab, checked, train

LENGTH_BINS = (10, 20, 30)  # token counts: <=10, 11-20, 21-30, >30
SUMMARY = ("sentence_acc", "exprate_le1", "wer", "score")


def length_bin(n_tokens: int) -> int:
    return bisect_left(LENGTH_BINS, n_tokens)


def stratum(s: Sample) -> tuple[int, int]:
    """(source group, length bin); samples without a source are a group of their own."""
    return (-1 if s.source is None else s.source, length_bin(len(s.tokens)))


def assign_folds(samples: Sequence[Sample], k: int, seed: int = 0) -> list[int]:
    """The fold (0..k-1) of each sample, the same for the same samples and seed.

    Every source group is spread evenly (per fold counts differ by at most one) and so
    are fold sizes; length bins are balanced by swaps that keep those two exact.
    """
    if k < 2:
        raise ConfigError(f"k-fold needs at least 2 folds, not {k}")
    if len(samples) < k:
        raise ConfigError(f"{len(samples)} samples cannot make {k} folds")
    keys = [stratum(s) for s in samples]
    groups: dict[tuple[int, int], list[int]] = defaultdict(list)
    for i, key in enumerate(keys):
        groups[key].append(i)
    rng = random.Random(seed)
    folds = [0] * len(samples)
    count: Counter = Counter()
    for key in sorted(groups):
        members = groups[key]
        rng.shuffle(members)
        for i in members:
            # Fill the stratum round-robin; the leftovers go where their source group, then
            # the fold as a whole, is smallest.
            f = min(range(k), key=lambda f: (count["cell", key, f], count["src", key[0], f],
                                             count["all", f], f))
            folds[i] = f
            count["cell", key, f] += 1
            count["src", key[0], f] += 1
            count["all", f] += 1
    _balance_lengths(keys, folds, k)
    return folds


def _balance_lengths(keys: list[tuple[int, int]], folds: list[int], k: int) -> None:
    """Swap pairs of samples of the same source until no length bin has two more samples in
    one fold than in another, or no swap helps. Each swap lowers the sum of squared bin
    counts, so this ends."""
    pool: dict[tuple[int, int, int], list[int]] = defaultdict(list)  # (source, bin, fold)
    for i, ((src, b), f) in enumerate(zip(keys, folds, strict=True)):
        pool[src, b, f].append(i)
    sources = sorted({src for src, _ in keys})
    bins = sorted({b for _, b in keys})

    def n(b: int, f: int) -> int:
        return sum(len(pool[src, b, f]) for src in sources)

    improved = True
    while improved:
        improved = False
        for b in bins:
            hi = max(range(k), key=lambda f: n(b, f))
            lo = min(range(k), key=lambda f: n(b, f))
            if n(b, hi) - n(b, lo) < 2:
                continue
            # Move a bin-b sample from hi to lo and a same-source sample of a bin that lo
            # has more of than hi back the other way.
            for src in sources:
                other = next((o for o in bins if o != b and pool[src, o, lo]
                              and n(o, lo) > n(o, hi)), None)
                if other is None or not pool[src, b, hi]:
                    continue
                x, y = pool[src, b, hi].pop(), pool[src, other, lo].pop()
                folds[x], folds[y] = lo, hi
                pool[src, b, lo].append(x)
                pool[src, other, hi].append(y)
                improved = True
                break


def _summary(metrics: dict) -> dict:
    return {k: metrics[k] for k in ("n", *SUMMARY)}


def kfold(cfg: Config, k: int, out: str | Path, seed: int = 0) -> dict:
    """Train and score k fold models and their ensemble; writes OUT/kfold.json, OUT/folds.tsv
    and each fold's run under OUT/fold<i>. Returns what kfold.json holds."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    # One vocabulary, from the config, for every fold: the ensemble needs it.
    vocab = build_vocab(cfg)
    pooled = checked(cfg.data.train, vocab, cfg, "train", decode_images=False).samples
    folds = assign_folds(pooled, k, seed)
    with open(out / "folds.tsv", "w", encoding="utf-8") as f:
        f.write("fold\tsource\ttokens\twhere\n")
        for s, fold in zip(pooled, folds, strict=True):
            f.write(f"{fold}\t{'' if s.source is None else s.source}\t{len(s.tokens)}\t"
                    f"{s.where}\n")
    val = checked(cfg.data.val, vocab, cfg, "val", decode_images=False).samples
    per_fold, models = [], []
    for i in range(k):
        held = [s for s, fold in zip(pooled, folds, strict=True) if fold == i]
        rest = [s for s, fold in zip(pooled, folds, strict=True) if fold != i]
        fold_cfg = copy.deepcopy(cfg)
        fold_cfg.train.out_dir = str(out / f"fold{i}")
        print(f"fold {i}: training on {len(rest)} samples, holding out {len(held)}")
        model = train(fold_cfg, train_samples=rest, val_samples=held)
        models.append(model)
        rec = Recognizer.load(model, backend="torch")
        per_fold.append({"fold": i, "model": str(model), "n_train": len(rest),
                         "heldout": _summary(evaluate_samples(rec, held)["metrics"]),
                         "val": _summary(evaluate_samples(rec, val)["metrics"])})
    ensemble = evaluate_samples(Recognizer.load(models, backend="torch"), val)["metrics"]
    result = {
        "config": cfg.name, "folds": k, "seed": seed, "n_samples": len(pooled),
        "per_fold": per_fold,
        # Population standard deviation: the spread of these k folds, not an estimate.
        "mean": {m: statistics.fmean(f["heldout"][m] for f in per_fold) for m in SUMMARY},
        "std": {m: statistics.pstdev([f["heldout"][m] for f in per_fold]) for m in SUMMARY},
        "val_mean": {m: statistics.fmean(f["val"][m] for f in per_fold) for m in SUMMARY},
        "ensemble": {"models": [str(m) for m in models], "data": list(cfg.data.val),
                     **_summary(ensemble)},
    }
    (out / "kfold.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    return result
