"""Real formulas as training captions: normalise, de-duplicate, split by expression, weight.

``texlens data corpus`` reads text files of LaTeX formulas, one per line (the books and
IM2LATEX-100K files of ``../shared/data/formulas``, or any ``key<TAB>latex`` caption file),
and writes caption files of the canonical token form of a caption style:

    OUT/train.txt     every training expression once      (key<TAB>tokens)
    OUT/val.txt       validation expressions               (model choice)
    OUT/heldout.txt   held-out expressions                 (reporting only)
    OUT/problems.txt  file:line: why a formula was not kept
    OUT/stats.json    per source: lines, kept, failed, duplicates, per split

The split is :func:`texlens.data.splits.expression_split` of the *canonical* tokens, so two
spellings of one formula (``\\frac12``, ``\\frac{1}{2}``) cannot sit on both sides. A formula
met twice is kept once, under its first key.

:func:`weighted_sample` then draws the captions to render: one book is 82% of the lines, so a
source's share grows with its size to the power ``alpha`` (0.5: square root), not linearly.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

from texlens.data.datasets import read_pairs
from texlens.data.splits import SPLITS, expression_split
from texlens.tokens import normalizer

# ~ 1 in 40 book formulas has more tokens than this: multi-line derivations that belong to
# a page reader, not a formula reader.
MAX_TOKENS = 300


@dataclass
class Formula:
    source: str
    key: str
    latex: str
    where: str  # "file:line"


@dataclass
class CorpusReport:
    stats: dict[str, dict[str, int]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    splits: dict[str, list[tuple[str, str, str]]] = field(
        default_factory=lambda: {s: [] for s in SPLITS})  # split -> (source, key, tokens)


def read_formula_file(path: str | Path, source: str | None = None) -> list[Formula]:
    """One formula per line; ``key<TAB>latex`` lines keep their key, others are keyed
    ``source-LINE``. Blank lines are skipped."""
    path = Path(path)
    source = source or path.stem
    out = []
    for lineno, key, latex in read_pairs(path):
        if not latex:  # no tab: the whole line is the formula
            key, latex = f"{source}-{lineno}", key
        out.append(Formula(source, key, latex, f"{path}:{lineno}"))
    return out


def corpus_files(root: str | Path) -> list[Path]:
    """The formula files of a corpus folder (``*.txt`` below it, README excluded), sorted."""
    root = Path(root)
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such formula file or folder")
    files = sorted(p for p in root.rglob("*.txt") if p.name.lower() != "readme.txt")
    if not files:
        raise FileNotFoundError(f"{root}: no .txt formula files")
    return files


_NORMALISE: Callable[[str], list[str]] | None = None


def _init(style: str) -> None:
    global _NORMALISE
    _NORMALISE = normalizer(style)


def _normalise(latex: str) -> list[str] | str:
    try:
        return _NORMALISE(latex)  # type: ignore[misc]
    except ValueError as e:  # LatexError and TokenizeError are ValueErrors
        return str(e).splitlines()[0] if str(e) else type(e).__name__


def normalise_all(latex: Sequence[str], style: str = "latex", workers: int = 1,
                  progress: Callable[[int], None] | None = None) -> list[list[str] | str]:
    """Canonical tokens of each formula, or the reason it failed, in input order."""
    if workers <= 1:
        _init(style)
        out = []
        for s in latex:
            out.append(_normalise(s))
            if progress:
                progress(1)
        return out
    with get_context("fork").Pool(workers, _init, (style,)) as pool:
        out = []
        for r in pool.imap(_normalise, latex, chunksize=256):
            out.append(r)
            if progress:
                progress(1)
        return out


def build_corpus(formulas: Iterable[Formula], style: str = "latex", workers: int = 1,
                 max_tokens: int = MAX_TOKENS,
                 progress: Callable[[int], None] | None = None) -> CorpusReport:
    formulas = list(formulas)
    results = normalise_all([f.latex for f in formulas], style, workers, progress)
    rep = CorpusReport()
    seen: set[str] = set()
    for f, res in zip(formulas, results, strict=True):
        st = rep.stats.setdefault(f.source, Counter())
        st["lines"] += 1
        if isinstance(res, str):
            st["failed"] += 1
            rep.problems.append(f"{f.where}: {res}")
            continue
        if not res:
            st["failed"] += 1
            rep.problems.append(f"{f.where}: empty formula")
            continue
        if len(res) > max_tokens:
            st["too_long"] += 1
            rep.problems.append(f"{f.where}: {len(res)} tokens, more than {max_tokens}")
            continue
        text = " ".join(res)
        if text in seen:
            st["duplicates"] += 1
            continue
        seen.add(text)
        split = expression_split(text)
        st[split] += 1
        rep.splits[split].append((f.source, f.key, text))
    rep.stats = {s: dict(c) for s, c in rep.stats.items()}
    return rep


def write_corpus(rep: CorpusReport, out: str | Path) -> None:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for split, rows in rep.splits.items():
        (out / f"{split}.txt").write_text("".join(f"{k}\t{t}\n" for _, k, t in rows),
                                          encoding="utf-8")
    (out / "problems.txt").write_text("".join(p + "\n" for p in rep.problems), encoding="utf-8")
    (out / "stats.json").write_text(json.dumps(rep.stats, indent=2, sort_keys=True) + "\n")


REPEAT = "__r"  # KEY__r2: the second repeat of KEY in a weighted draw


def source_of(key: str) -> str:
    """The source part of a corpus key (``stacks-project-12``, ``stacks-project-12__r1``
    -> ``stacks-project``)."""
    head, _, tail = key.split(REPEAT)[0].rpartition("-")
    return head if head and tail.isdigit() else key


def weighted_sample(rows: Sequence[tuple[str, str]], n: int, seed: int = 0,
                    alpha: float = 0.5) -> list[tuple[str, str]]:
    """``n`` (key, tokens) rows drawn so that source s gets a share proportional to
    size_s ** alpha (alpha 1: as they come; 0: every source alike). Within a source the
    rows come in seeded shuffles, each used once before any is used twice; a row's k-th
    repeat is keyed ``KEY__rK`` so that every rendering has its own file name."""
    if not rows:
        raise ValueError("no rows to sample from")
    by_source: dict[str, list[tuple[str, str]]] = {}
    for key, tokens in rows:
        by_source.setdefault(source_of(key), []).append((key, tokens))
    weights = {s: len(r) ** alpha for s, r in sorted(by_source.items())}
    total = sum(weights.values())
    quotas = {s: round(n * w / total) for s, w in weights.items()}
    # Rounding may leave the total off by a few; the largest source absorbs it.
    quotas[max(quotas, key=lambda s: len(by_source[s]))] += n - sum(quotas.values())
    rng = random.Random(seed)
    out: list[tuple[str, str]] = []
    for s in sorted(by_source):
        pool, taken = by_source[s], []
        while len(taken) < quotas[s]:
            perm = pool[:]
            rng.shuffle(perm)
            taken += perm
        uses: Counter[str] = Counter()
        for key, tokens in taken[:quotas[s]]:
            out.append((f"{key}{REPEAT}{uses[key]}" if uses[key] else key, tokens))
            uses[key] += 1
    rng.shuffle(out)
    return out
