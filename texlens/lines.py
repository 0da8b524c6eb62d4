"""Multi-line formulas read line by line.

A full-LaTeX model reads an ``aligned`` block of several lines far worse than each of
its lines alone (printed-base on held-out validation: 70% of the tokens of its 21
``aligned`` formulas wrong, against 11% for formulas of up to 50 tokens): the longer
the output, the likelier the decoder loses its place for good. So an image whose ink
falls into separate text lines is cut into them, each line is read as its own formula,
and the readings are joined as rows of ``\\begin{aligned} ... \\end{aligned}``.

What counts as a line is decided on the rows of the image (a horizontal projection
profile and the connected components; some fifty lines of numpy, as no library splits
formula images into lines): bands of inked rows apart by at least ``GAP`` median symbol
heights are lines, unless one of them is too thin to be a line (an accent, a mark), holds
a fraction bar as wide as the other (a display fraction's rows lie 0.7 symbol heights
from its bar), or lies under or over a tall glyph of the other (a big operator's limits).
A matrix or ``cases`` never splits: its delimiters ink every row. Of 800 TeX renderings
of training aligned blocks of several lines, it finds the right number of lines in 775;
it splits 10 of 3,000 other formulas (mostly undelimited ``array``s and ``matrix``es;
``python benchmarks/line_split.py --corpus data/base/corpus/train.txt --out DIR``).
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from texlens.data.transforms import ink_bright, ink_height

GAP = 0.45  # blank rows between two lines, in median symbol heights
LINE = 0.6  # height of a line's ink, in median symbol heights
BIG_OP = 1.6  # a glyph this many symbol heights tall may have limits (sum, union)
LIMITS = 1.0  # limits lie nearer their operator than this, in symbol heights
LIMITS_WIDTH = 3.0  # and are at most this many times as wide as it
PAD = 0.4  # blank margin kept around a cut-out line, in median symbol heights

# What a model must be able to write to read lines apart (Recognizer.read_lines).
LINE_TOKENS = ("\\begin{aligned}", "\\end{aligned}", "&", "\\\\")

# Where aligned rows put their `&`: before the first relation (`a & = b`, `& = c`), as
# 56% of the rows of the corpus's aligned blocks do; the rest mostly have none.
RELATIONS = frozenset({
    "=", "<", ">", "\\leq", "\\geq", "\\le", "\\ge", "\\neq", "\\ne", "\\approx", "\\equiv",
    "\\sim", "\\simeq", "\\cong", "\\to", "\\rightarrow", "\\Rightarrow", "\\Leftarrow",
    "\\iff", "\\Leftrightarrow", "\\leftrightarrow", "\\implies", "\\subset", "\\subseteq",
    "\\supset", "\\supseteq", "\\in", "\\ni", "\\propto", "\\mapsto", "\\vcentcolon",
    "\\ll", "\\gg", "\\prec", "\\succ", "\\preceq", "\\succeq", "\\perp", "\\mid"})


def _runs(flags: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) of each run of True."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], flags.astype(np.int8), [0]])))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True))


def line_rows(gray: np.ndarray, gap: float = GAP, line: float = LINE,
              limits: float = LIMITS) -> list[tuple[int, int]]:
    """[top, bottom) rows of each text line of a formula image (any polarity); one range
    when it is a single line (or blank)."""
    bright = ink_bright(gray)
    ink = bright > 127
    runs = _runs(ink.any(1))  # bands of inked rows, blank rows between them
    symbol = ink_height(bright)
    if len(runs) < 2 or symbol is None:
        return [(0, gray.shape[0])]

    def cols(top: int, bottom: int) -> tuple[int, int]:
        c = np.flatnonzero(ink[top:bottom].any(0))
        return int(c[0]), int(c[-1]) + 1

    # Groups of runs, each a candidate line: first, runs nearer than a line gap.
    groups = [[runs[0]]]
    for r in runs[1:]:
        (groups[-1].append if r[0] - groups[-1][-1][1] < gap * symbol else
         lambda r: groups.append([r]))(r)

    def span(g: list[tuple[int, int]]) -> tuple[int, int]:
        return g[0][0], g[-1][1]

    def bar_over(g: list[tuple[int, int]], other: tuple[int, int], below: bool) -> bool:
        """Whether g holds a fraction bar for ``other``: a thin run of its own, within
        ``limits`` symbol heights of it, as wide as it (a display fraction's rows lie 0.7
        symbol heights from the bar, farther than lines of some aligned blocks)."""
        left, right = cols(*other)
        for top, bottom in g:
            near = other[0] - bottom if below else top - other[1]
            if bottom - top < line * symbol and 0 < near < limits * symbol:
                bl, br = cols(top, bottom)
                if bl <= left + 1 and br >= right - 1:
                    return True
        return False

    _, _, stats, _ = cv2.connectedComponentsWithStats(ink.astype(np.uint8), connectivity=8)
    tall = stats[1:][stats[1:, cv2.CC_STAT_HEIGHT] >= BIG_OP * symbol]

    def limits_of(g: tuple[int, int], other: tuple[int, int], below: bool) -> bool:
        """Whether g is a big operator's limits in ``other``: under (or over) a tall glyph
        of it, near, and not much wider than it."""
        near = g[0] - other[1] if below else other[0] - g[1]
        if near >= limits * symbol:
            return False
        left, right = cols(*g)
        return any(x <= (left + right) / 2 <= x + w and right - left <= LIMITS_WIDTH * w
                   and y >= other[0] and y + h <= other[1] for x, y, w, h, _ in tall)

    def gap_after(k: int) -> float:
        return groups[k + 1][0][0] - groups[k][-1][1] if 0 <= k < len(groups) - 1 else np.inf

    def belong(k: int) -> bool:
        """Whether groups k and k + 1 are one line."""
        a, b = span(groups[k]), span(groups[k + 1])
        # A group too thin to be a line (an accent, a stray mark) joins the nearer one.
        if a[1] - a[0] < line * symbol and gap_after(k) < gap_after(k - 1):
            return True
        if b[1] - b[0] < line * symbol and gap_after(k) <= gap_after(k + 1):
            return True
        return (bar_over(groups[k], b, True) or bar_over(groups[k + 1], a, False)
                or limits_of(b, a, True) or limits_of(a, b, False))

    k = 0
    while k < len(groups) - 1:
        if belong(k):
            groups[k:k + 2] = [groups[k] + groups[k + 1]]
            k = max(k - 1, 0)  # the joined group may now belong with the one before
        else:
            k += 1
    return [span(g) for g in groups]


def cut_lines(gray: np.ndarray) -> list[np.ndarray]:
    """The formula image cut into its text lines (:func:`line_rows`), each cropped to its
    ink with a margin; the image itself, uncut, when it is one line."""
    rows = line_rows(gray)
    if len(rows) == 1:
        return [gray]
    bright = ink_bright(gray)
    pad = max(2, round(PAD * (ink_height(bright) or 0)))
    out = []
    for top, bottom in rows:
        cols = np.flatnonzero((bright[top:bottom] > 127).any(0))
        left, right = max(0, cols[0] - pad), min(gray.shape[1], cols[-1] + 1 + pad)
        out.append(gray[max(0, top - pad):min(gray.shape[0], bottom + pad), left:right])
    return out


def alignment_point(tokens: Sequence[str]) -> int | None:
    """Where an aligned row puts its ``&``: before its first relation outside braces
    (None when it has no relation)."""
    depth = 0
    for i, t in enumerate(tokens):
        depth += (t == "{") - (t == "}")
        if depth == 0 and t in RELATIONS:
            return i
    return None


def join_lines(readings: Sequence[tuple[Sequence[str], Sequence[float]]]
               ) -> tuple[list[str], list[float]]:
    """The lines' readings (tokens, probability of each) as one ``aligned`` block; the
    tokens it adds (environment, ``&``, ``\\\\``) have probability 1."""
    tokens, probs = ["\\begin{aligned}"], [1.0]
    for k, (row, row_probs) in enumerate(readings):
        row, row_probs = list(row), list(row_probs)
        if k:
            tokens.append("\\\\")
            probs.append(1.0)
        at = alignment_point(row)
        if at is not None:
            row.insert(at, "&")
            row_probs.insert(at, 1.0)
        tokens += row
        probs += row_probs
    return [*tokens, "\\end{aligned}"], [*probs, 1.0]
