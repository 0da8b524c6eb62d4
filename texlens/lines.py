"""Multi-line formulas read line by line.

A full-LaTeX model reads an ``aligned`` block of several lines far worse than each of
its lines alone (printed-base on held-out validation: 70% of the tokens of its 21
``aligned`` formulas wrong, against 12% for formulas of up to 50 tokens): the longer
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
of training aligned blocks of several lines, it finds the right number of lines in 781;
it splits 9 of 3,000 other formulas (mostly undelimited ``array``s and ``matrix``es;
``python benchmarks/line_split.py --corpus data/base/corpus/train.txt --out DIR``), and
4 of the 4,076 CROHME training formulas typeset by TeX (``\\lim`` limits, whose operator
is not tall, and nested fractions).
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from texlens.data.transforms import STRIDE, ink_bright, ink_height

MIN_SYMBOL = 6  # px: smaller median symbols (specks, tiny images) tell nothing; read whole
GAP = 0.45  # blank rows between two lines, in median symbol heights
LINE = 0.6  # height of a line's ink, in median symbol heights
BAR = 0.25  # a fraction bar is at most this thick (or 3 px), in symbol heights
BAR_REACH = 1.5  # and its rows (an "x" sits low) lie nearer than this, in symbol heights
BIG_OP = 1.6  # a glyph this many symbol heights tall may have limits (sum, union)
LIMITS = 1.0  # limits lie nearer their operator than this, in symbol heights
LIMITS_WIDTH = 3.0  # and are at most this many times as wide as it
PAD = 0.4  # blank margin kept around a cut-out line, in median symbol heights

# A line wider than PIECE_WIDTH model-input pixels (some 40 tokens) that the model reads
# with a confidence under PIECE_CONFIDENCE, i.e. almost surely wrong, is read again in
# pieces cut at blank columns at least PIECE_GAP symbol heights wide. Chosen on
# printed-base's validation (docs/RESULTS.md, "Reading long formulas in parts"): reading
# every wide line in pieces gained BLEU but broke formulas it read right whole.
PIECE_WIDTH = 400
PIECE_CONFIDENCE = 0.02
PIECE_GAP = 0.3

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
    if len(runs) < 2 or symbol is None or symbol < MIN_SYMBOL:
        return [(0, gray.shape[0])]

    # Groups of runs, each a candidate line: first, runs nearer than a line gap.
    groups = [[runs[0]]]
    for r in runs[1:]:
        if r[0] - groups[-1][-1][1] < gap * symbol:
            groups[-1].append(r)
        else:
            groups.append([r])

    def span(g: list[tuple[int, int]]) -> tuple[int, int]:
        return g[0][0], g[-1][1]

    _, _, stats, _ = cv2.connectedComponentsWithStats(ink.astype(np.uint8), connectivity=8)
    tall = stats[1:][stats[1:, cv2.CC_STAT_HEIGHT] >= BIG_OP * symbol]
    # Fraction bars (and other flat strokes): at most BAR symbol heights thick, wider.
    heights, widths = stats[1:, cv2.CC_STAT_HEIGHT], stats[1:, cv2.CC_STAT_WIDTH]
    bars = stats[1:][(heights <= max(3, BAR * symbol)) & (widths >= 2 * heights)]

    def bar_over(g: list[tuple[int, int]], other: tuple[int, int], below: bool) -> bool:
        """Whether ``other`` is the numerators (or denominators) of fraction bars in g:
        thin strokes of g within BAR_REACH symbol heights of it that cover every inked
        column of it (a display fraction's rows may lie farther from its bar than the
        lines of an aligned block from each other)."""
        near = bars[(bars[:, 1] >= g[0][0]) & (bars[:, 1] + bars[:, 3] <= g[-1][1])]
        edge = near[:, 1] + near[:, 3] if below else near[:, 1]
        dist = other[0] - edge if below else edge - other[1]
        near = near[(dist > 0) & (dist < BAR_REACH * symbol)]
        covered = np.zeros(ink.shape[1], bool)
        for x, _, w, _, _ in near:
            covered[max(x - 1, 0):x + w + 1] = True
        return len(near) > 0 and bool(covered[ink[other[0]:other[1]].any(0)].all())

    def limits_of(g: tuple[int, int], other: tuple[int, int], below: bool) -> bool:
        """Whether g is big operators' limits in ``other``: near it, and each of its
        pieces (apart by half a symbol) centred under (or over) a tall glyph of it and not
        much wider than that glyph (two sums side by side have two pieces of limits)."""
        near = g[0] - other[1] if below else other[0] - g[1]
        if near >= limits * symbol:
            return False
        glyphs = [(x, w) for x, y, w, h, _ in tall if y >= other[0] and y + h <= other[1]]
        pieces = _runs(ink[g[0]:g[1]].any(0))
        merged = [list(pieces[0])]
        for lo, hi in pieces[1:]:
            if lo - merged[-1][1] < symbol / 2:
                merged[-1][1] = hi
            else:
                merged.append([lo, hi])
        # A quarter glyph of slack either side: an integral's limits sit off its centre.
        return all(any(x - w / 4 <= (lo + hi) / 2 <= x + 1.25 * w and hi - lo <= LIMITS_WIDTH * w
                       for x, w in glyphs) for lo, hi in merged)

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


def cut_pieces(a: np.ndarray, width: int = PIECE_WIDTH, gap: float = PIECE_GAP
               ) -> list[np.ndarray]:
    """A model input of one line, (1, H, W) floats with bright ink, cut at its widest
    blank columns (at least ``gap`` symbol heights wide; the one nearer the middle among
    equals) until every piece is at most ``width`` wide or has no such column left. Each
    piece keeps half of the gap on either side and is padded to the CNN's stride."""
    img = (a[0] * 255).astype(np.uint8)
    inked = (img > 127).any(0)
    cols = np.flatnonzero(inked)
    symbol = ink_height(img)
    if len(cols) == 0 or symbol is None:
        return [a]
    blanks = [(lo, hi) for lo, hi in _runs(~inked)
              if lo > cols[0] and hi <= cols[-1] and hi - lo >= gap * symbol]

    def split(lo: int, hi: int) -> list[tuple[int, int]]:
        inside = [(b0, b1) for b0, b1 in blanks if lo < b0 and b1 < hi]
        if hi - lo <= width or not inside:
            return [(lo, hi)]
        mid = (lo + hi) / 2
        b0, b1 = max(inside, key=lambda b: (b[1] - b[0], -abs((b[0] + b[1]) / 2 - mid)))
        cut = (b0 + b1) // 2
        return split(lo, cut) + split(cut, hi)

    spans = split(0, img.shape[1])
    if len(spans) == 1:
        return [a]
    out = []
    for lo, hi in spans:
        piece = a[:, :, lo:hi]
        pad = -piece.shape[-1] % STRIDE
        out.append(np.pad(piece, ((0, 0), (0, 0), (0, pad))) if pad else piece)
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
