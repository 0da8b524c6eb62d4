"""The split rule for formula text: by expression, never by file key.

CROHME has each expression from many writers and the books repeat formulas, so a split by
key puts the same expression on both sides (47% of the held-out CROHME captions were
training captions, docs/RESULTS.md). Here the side is a hash of the expression itself,
with whitespace collapsed: equal formulas always land together, on every machine and run.

It is the one rule: ``texlens data synth --split`` takes a side of it, and ``texlens data
crohme`` sends to validation the InkML files whose expression ranks below its
``--val-fraction`` (by default every expression this rule does not train on). Until
2026-12-04 the CROHME split was a seeded draw of its own; a data mix of printed CROHME
captions and CROHME ink then had 311 of 406 short ink validation lines among the printed
training formulas (docs/RESULTS.md).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

SPLITS = ("train", "val", "heldout")
# Shares of the expressions: 5% validation (model choice), 10% held out (reporting only).
VAL_SHARE, HELDOUT_SHARE = 0.05, 0.10
# Everything the rule does not train on: a threshold at least this high on expression_rank
# holds out every formula that a val or heldout side holds out.
NOT_TRAIN_SHARE = VAL_SHARE + HELDOUT_SHARE


def formula_digest(expression: str) -> int:
    """A formula's 64-bit hash, whitespace collapsed: its rank below, and the fingerprint a
    model stores of each training formula (:func:`pack_formulas`)."""
    canonical = " ".join(expression.split())
    return int.from_bytes(hashlib.sha1(canonical.encode("utf-8")).digest()[:8], "big")


def expression_rank(expression: str) -> float:
    """A formula's place in [0, 1): a hash of it with whitespace collapsed."""
    return formula_digest(expression) / 2**64


def expression_split(expression: str, val: float = VAL_SHARE,
                     heldout: float = HELDOUT_SHARE) -> str:
    """"train", "val" or "heldout" for a formula (tokens or text; spaces do not matter)."""
    if not (val >= 0 and heldout >= 0 and val + heldout < 1):
        raise ValueError(f"split shares must be >= 0 and sum below 1, got {val}, {heldout}")
    u = expression_rank(expression)
    return "heldout" if u < heldout else "val" if u < heldout + val else "train"


def expression(tokens: Sequence[str] | str) -> str:
    """A formula with its whitespace collapsed: equal formulas compare equal."""
    return " ".join(tokens.split() if isinstance(tokens, str) else tokens)


def spellings(expression: str) -> list[str]:
    """A formula as written and, when it differs, in today's canonical LaTeX.

    The canonical form changes now and then (on 2026-12-05 ``\\operatorname{cos}``
    became ``\\cos``, ``\\ast`` ``*``), and a formula whose spelling changes may change
    its side of the split too: some 1,500 book formulas did. A data file or a model's
    record made before such a change still spells them the old way, so formulas are
    recorded and looked up in both spellings: a held-out line stays held out whichever
    normaliser made the test set or the model."""
    from texlens.latex import normalize  # pylatexenc only; this module stays torch-free
    try:
        canon = " ".join(normalize(expression))
    except ValueError:
        return [expression]
    return [expression] if canon == " ".join(expression.split()) else [expression, canon]


def caption_expressions(files: Iterable[str | Path]) -> set[str]:
    """The expressions of ``key<TAB>caption`` files (each in both spellings of
    :func:`spellings`): what generated or sampled training data must leave out when those
    files are validation or test sets."""
    from texlens.data.datasets import read_pairs  # torch-free callers of the rule above
    out: set[str] = set()
    for f in files:
        if not Path(f).is_file():
            raise ValueError(f"{f}: no such caption file")
        for _, _, caption in read_pairs(Path(f)):
            out.update(expression(s) for s in spellings(caption))
    return out


def among(expr: str, expressions: set[str]) -> bool:
    """Whether a set of :func:`caption_expressions` has ``expr`` in either spelling."""
    return any(expression(s) in expressions for s in spellings(expr))


# A model's training formulas travel with its weights as sorted 64-bit digests (8 bytes a
# formula: some 1 MB for 140,000), so `texlens evaluate` can tell which test lines it has
# seen without the training data at hand. Two formulas share a digest with odds of about
# n / 2**64: none in practice. Both spellings of each are recorded and looked up.

def pack_formulas(expressions: Iterable[str], also: bytes | None = None) -> bytes:
    """The digests of ``expressions`` (and of a packed set ``also``), sorted and unique."""
    digests = np.fromiter((formula_digest(s) for e in expressions for s in spellings(e)),
                          np.uint64)
    if also:
        digests = np.concatenate([digests, unpack_formulas(also)])
    return np.unique(digests).astype("<u8").tobytes()


def unpack_formulas(packed: bytes) -> np.ndarray:
    return np.frombuffer(packed, dtype="<u8")


def seen_formulas(packed: bytes, expressions: Sequence[str]) -> np.ndarray:
    """(N,) bool: which ``expressions`` a packed set holds, in either spelling."""
    known = unpack_formulas(packed)
    return np.array([np.isin([formula_digest(s) for s in spellings(e)], known).any()
                     for e in expressions], dtype=bool)
