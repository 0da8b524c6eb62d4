"""The split rule for formula text: by expression, never by file key.

CROHME has each expression from many writers and the books repeat formulas, so a split by
key puts the same expression on both sides (47% of the held-out CROHME captions were
training captions, docs/RESULTS.md). Here the side is a hash of the expression itself,
with whitespace collapsed: equal formulas always land together, on every machine and run.
(texlens/data/crohme.py splits InkML files the same way in spirit: whole expressions go to
validation, by a seeded rank, to hit an exact file count.)
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from pathlib import Path

SPLITS = ("train", "val", "heldout")
# Shares of the expressions: 5% validation (model choice), 10% held out (reporting only).
VAL_SHARE, HELDOUT_SHARE = 0.05, 0.10


def expression_split(expression: str, val: float = VAL_SHARE,
                     heldout: float = HELDOUT_SHARE) -> str:
    """"train", "val" or "heldout" for a formula (tokens or text; spaces do not matter)."""
    if not (val >= 0 and heldout >= 0 and val + heldout < 1):
        raise ValueError(f"split shares must be >= 0 and sum below 1, got {val}, {heldout}")
    canonical = " ".join(expression.split())
    digest = hashlib.sha1(canonical.encode("utf-8")).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    return "heldout" if u < heldout else "val" if u < heldout + val else "train"


def expression(tokens: Sequence[str] | str) -> str:
    """A formula with its whitespace collapsed: equal formulas compare equal."""
    return " ".join(tokens.split() if isinstance(tokens, str) else tokens)


def caption_expressions(files: Iterable[str | Path]) -> set[str]:
    """The expressions of ``key<TAB>caption`` files: what generated or sampled training
    data must leave out when those files are validation or test sets."""
    from texlens.data.datasets import read_pairs  # torch-free callers of the rule above
    out: set[str] = set()
    for f in files:
        if not Path(f).is_file():
            raise ValueError(f"{f}: no such caption file")
        out |= {expression(caption) for _, _, caption in read_pairs(Path(f))}
    return out
