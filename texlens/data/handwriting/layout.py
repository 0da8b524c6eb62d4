"""Caption tokens -> handwritten strokes, laid out like typeset maths.

The formula tree (:mod:`.parse`) is set from the inside out, TeX-fashion but
with a hand's looseness: symbols stand on a shared baseline (:mod:`.glyphs`
says how each one sits), scripts are smaller and raised or lowered against
their base, fractions stack over a bar drawn at the maths axis, radicals
stretch over their body, ``\\sum`` and ``\\lim`` take their bounds below and
above, ``\\int`` beside it. Samples, spacing, slant and jitter come from one
:class:`~.writer.Writer` per expression.

All lengths are in library units (the writers' typical symbol height); ``ex``
is the library's x-height and ``size`` the current scale (1 on the main line).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from texlens.data.handwriting import glyphs as g
from texlens.data.handwriting.box import Bounds, Box, Mark
from texlens.data.handwriting.labels import INK_FREE
from texlens.data.handwriting.parse import (
    Fenced,
    Frac,
    LayoutError,
    Node,
    Row,
    Scripts,
    Sqrt,
    Sym,
    parse,
)
from texlens.data.handwriting.symbols import SymbolLibrary
from texlens.data.handwriting.writer import HandStyle, Writer


class MissingSymbolError(LayoutError):
    """The library has no sample for some token of the caption."""

    def __init__(self, tokens: list[str]):
        super().__init__(f"no handwritten sample for {' '.join(tokens)}")
        self.tokens = tokens


@dataclass
class Drawing:
    strokes: list[np.ndarray]  # float64 (n, 2), y down, library units
    symbols: list[tuple[str, Bounds]]  # each inked caption token and its bounds


# Gaps between neighbours, in x-heights, by the kind of each side (see _kind).
_GAP = {"ord": 0.22, "digit": 0.12, "bin": 0.45, "rel": 0.6, "open": 0.1, "close": 0.1,
        "punct": 0.45, "op": 0.28}
FRACTION_SCALE = 0.9  # numerator and denominator against the line they stand in
INDEX_SCALE = 0.5  # a root's index
SIZE_PULL = 0.5  # 0: keep each sample's own size, 1: every sample at its token's median
BAR_WOBBLE = 0.3  # a fraction bar's most height, in x-heights


def _rotation(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, s], [-s, c]])


def _centre_x(b: Bounds) -> float:
    return (b[0] + b[2]) / 2


class _Setter:
    def __init__(self, writer: Writer):
        self.w = writer
        self.ex = writer.ex

    # -- symbols ---------------------------------------------------------------
    def sample(self, token: str, size: float, height: float | None = None) -> list[np.ndarray]:
        """A sample of library token ``token``, scaled and turned, bbox at the origin.

        ``height``: make it this high (before the turn) instead of keeping its own size.
        """
        glyph = self.w.glyph(token)
        k = size * self.w.size_factor()
        if height is not None:
            k *= height / max(glyph.size[1], 1e-6)
        elif (own := max(glyph.size)) > 0:
            # Samples come from many files: pull each towards its token's usual height,
            # so one number's digits do not differ like three writers' would.
            k *= (self.w.library.typical_size(token) / own) ** SIZE_PULL
        strokes = [s.astype(np.float64) * k for s in glyph.strokes]
        pts = np.concatenate(strokes)
        centre = (pts.min(axis=0) + pts.max(axis=0)) / 2
        turn = _rotation(self.w.symbol_turn())
        strokes = [(s - centre) @ turn for s in strokes]
        lo = np.concatenate(strokes).min(axis=0)
        return [s - lo for s in strokes]

    def place(self, token: str, strokes: list[np.ndarray], size: float) -> Box:
        """Stand a sample on the baseline the way ``token`` sits."""
        height = float(np.concatenate(strokes)[:, 1].max())
        low = g.bottom(token, height, self.ex * size) + self.w.baseline_shift() * size
        return Box.of(token, strokes).moved(0.0, low - height)

    def symbol(self, token: str, size: float) -> Box:
        if token in INK_FREE:
            return Box()
        source = self.w.drawable_as(token)
        if source is None:
            raise MissingSymbolError([token])
        if token in ("\\cdots", "\\ldots") and source == ".":
            return self.dots(token, size)
        # Fences are drawn as tall as what they enclosed where they were written: here
        # they start at their usual height and grow to their content (see grow).
        height = self.w.library.typical_height(source) if token in g.FENCES else None
        return self.place(token, self.sample(source, size, height), size)

    def dots(self, token: str, size: float) -> Box:
        """Three dots written one by one, on the axis or on the baseline."""
        box, x = Box(), 0.0
        for _ in range(3):
            dot = self.place(token, self.sample(".", size), size)
            dot = dot.moved(x - dot.bounds[0], 0.0)
            x = dot.bounds[2] + self.w.gap(0.3) * size
            box.add(dot)
        box.marks = [Mark(token, 0, len(box.strokes))]
        return box

    # -- structures ------------------------------------------------------------
    def node(self, node: Node, size: float) -> Box:
        if isinstance(node, Sym):
            return self.symbol(node.token, size)
        if isinstance(node, Row):
            return self.row(node, size)
        if isinstance(node, Scripts):
            return self.scripts(node, size)
        if isinstance(node, Frac):
            return self.fraction(node, size)
        if isinstance(node, Sqrt):
            return self.root(node, size)
        return self.fenced(node, size)

    def row(self, row: Row, size: float) -> Box:
        out, last, right = Box(), None, 0.0
        for item in row.items:
            box = self.node(item, size)
            if box.empty:
                continue
            kind = _kind(item, last)
            gap = 0.0 if last is None else self.w.gap(max(_GAP[last], _GAP[kind])) * size
            if last == kind == "digit":
                gap = self.w.gap(_GAP["digit"]) * size
            out.add(box.moved(right + gap - box.bounds[0], 0.0))
            right, last = out.bounds[2], kind
        return out

    def scripts(self, node: Scripts, size: float) -> Box:
        base = self.node(node.base, size)
        small = size * self.w.script_scale
        sub = self.row(node.sub, small) if node.sub else Box()
        sup = self.row(node.sup, small) if node.sup else Box()
        head = node.base.token if isinstance(node.base, Sym) else None
        if head in g.STACKED_BOUNDS or (node.limits and head in g.BIG):
            return self.stacked(base, sub, sup, size)
        return self.beside(base, sub, sup, size, integral=head == "\\int")

    def beside(self, base: Box, sub: Box, sup: Box, size: float, integral: bool) -> Box:
        if base.empty:  # a script with nothing before it: lean on an imaginary x
            bx0, by0, bx1, by1 = 0.0, -self.ex * size, 0.0, 0.0
        else:
            bx0, by0, bx1, by1 = base.bounds
        height = by1 - by0
        rng = self.w.rng
        out = base
        x_sup = bx1 + self.w.gap(0.08) * size
        # An integral's lower bound tucks in under its curl; other subscripts line up.
        x_sub = bx1 - 0.25 * (bx1 - bx0) if integral else x_sup
        if not sup.empty:
            low = by0 + height * rng.uniform(0.3, 0.5)
            s = sup.bounds
            sup = sup.moved(x_sup - s[0], low - s[3])
        if not sub.empty:
            top = by1 - height * rng.uniform(0.2, 0.35)
            s = sub.bounds
            if not sup.empty:  # keep a little air between the two scripts
                top = max(top, sup.bounds[3] + 0.15 * self.ex * size)
            sub = sub.moved(x_sub - s[0], top - s[1])
        return Box().add(out).add(sup).add(sub)

    def stacked(self, base: Box, sub: Box, sup: Box, size: float) -> Box:
        b = base.bounds
        out = Box().add(base)
        jitter = 0.1 * self.ex * size
        if not sup.empty:
            s = sup.bounds
            dx = _centre_x(b) - _centre_x(s) + self.w.rng.uniform(-jitter, jitter)
            out.add(sup.moved(dx, b[1] - self.w.gap(0.25) * size - s[3]))
        if not sub.empty:
            s = sub.bounds
            dx = _centre_x(b) - _centre_x(s) + self.w.rng.uniform(-jitter, jitter)
            out.add(sub.moved(dx, b[3] + self.w.gap(0.25) * size - s[1]))
        return out

    def fraction(self, node: Frac, size: float) -> Box:
        inner = size * FRACTION_SCALE
        num, den = self.row(node.num, inner), self.row(node.den, inner)
        rng = self.w.rng
        width = max(num.bounds[2] - num.bounds[0], den.bounds[2] - den.bounds[0])
        over = rng.uniform(0.1, 0.35, size=2) * self.ex * size
        bar = self.bar(width + over.sum(), size)
        b = bar.bounds
        axis = -g.AXIS * self.ex * size + self.w.baseline_shift() * size
        bar = bar.moved(-b[0], axis - (b[1] + b[3]) / 2)
        b = bar.bounds
        out = Box().add(bar)
        mid = over[0] + width / 2
        slack = 0.8 * over.min()  # off-centre, but never past the bar's ends
        if not num.empty:
            n = num.bounds
            dx = mid - _centre_x(n) + rng.uniform(-slack, slack)
            out.add(num.moved(dx, b[1] - self.w.gap(0.3) * size - n[3]))
        if not den.empty:
            d = den.bounds
            dx = mid - _centre_x(d) + rng.uniform(-slack, slack)
            out.add(den.moved(dx, b[3] + self.w.gap(0.3) * size - d[1]))
        return out

    def bar(self, width: float, size: float) -> Box:
        """A fraction bar ``width`` long: a written bar (or minus) stretched, else a line."""
        source = self.w.drawable_as("\\frac")
        if source is None:
            t = np.linspace(0.0, 1.0, 12)
            sag = self.w.rng.uniform(-0.04, 0.04) * self.ex * size
            return Box.of("\\frac", [np.stack([t * width, sag * np.sin(np.pi * t)], axis=1)])
        strokes = [s.astype(np.float64) for s in self.w.glyph(source).strokes]
        # Level the bar first (stretched, a sample's slope would grow with the span),
        # then give it a slope of its own.
        pts = np.concatenate(strokes)
        chord = pts[pts[:, 0].argmax()] - pts[pts[:, 0].argmin()]
        level = _rotation(-math.atan2(chord[1], chord[0]) + self.w.symbol_turn() / 2)
        strokes = [s @ level for s in strokes]
        pts = np.concatenate(strokes)
        lo, span = pts.min(axis=0), np.maximum(np.ptp(pts, axis=0), 1e-6)
        # Only the length follows the span; the hand's wobble keeps its own size, within
        # reason (a curved bar would otherwise cut into the numerator).
        rise = min(span[1] * size, BAR_WOBBLE * self.ex * size)
        stretch = np.array([width / span[0], rise / span[1]])
        return Box.of("\\frac", [(s - lo) * stretch for s in strokes])

    def root(self, node: Sqrt, size: float) -> Box:
        body = self.row(node.body, size)
        ex = self.ex * size
        body_b = (0.0, -ex, ex, 0.0) if body.empty else body.bounds
        top = body_b[1] - self.w.gap(0.3) * size
        low = body_b[3] + 0.15 * ex
        gap = self.w.gap(0.15) * size
        radical, corner = self.radical(top, low, body_b[2] - body_b[0] + gap + 0.2 * ex, size)
        out = Box().add(radical)
        if not body.empty:
            out.add(body.moved(corner + gap - body_b[0], 0.0))
        if node.index is not None:
            index = self.row(node.index, size * INDEX_SCALE)
            if not index.empty:
                i = index.bounds
                rise = low - 0.5 * (low - top)  # over the tick, clear of the overline
                out.add(index.moved(0.55 * corner - i[2], rise - 0.1 * ex - i[3]))
        return out

    def radical(self, top: float, low: float, span: float, size: float) -> tuple[Box, float]:
        """A radical from ``top`` to ``low`` whose overline runs ``span`` past its corner.

        Returns the box (its left end at x = 0) and the corner's x.
        """
        height = low - top
        if not self.w.has("\\sqrt"):
            return _drawn_radical(top, low, span, self.ex * size)
        strokes = [s.astype(np.float64) for s in self.w.glyph("\\sqrt").strokes]
        pts = np.concatenate(strokes)
        w, h = max(float(pts[:, 0].max()), 1e-6), max(float(pts[:, 1].max()), 1e-6)
        # The corner: the leftmost point near the top, where the tick's long stroke
        # meets the overline. Left of it the sign keeps its shape (grown to the height,
        # but not wider than a hand would write it); right of it, it stretches. A tick
        # that leans back has its foot right of the corner: then the split is there.
        near_top = pts[pts[:, 1] <= 0.15 * h]
        foot = float(pts[pts[:, 1] >= 0.5 * h][:, 0].max(initial=0.0))
        cx = max(float(near_top[:, 0].min()), foot)
        ky = height / h
        kx = min(ky, 1.5 * self.ex * size / cx) if cx > 0 else ky
        has_line = w - cx > 0.25 * w
        run = span / (w - cx) if has_line else 0.0

        def bend(s: np.ndarray) -> np.ndarray:
            x = np.where(s[:, 0] <= cx, s[:, 0] * kx, cx * kx + (s[:, 0] - cx) * run)
            return np.stack([x, top + s[:, 1] * ky], axis=1)

        out = [bend(s) for s in strokes]
        if not has_line:  # a sample without its overline: add one
            out.append(np.array([[cx * kx, top], [cx * kx + span, top]]))
        return Box.of("\\sqrt", out), cx * kx

    def fenced(self, node: Fenced, size: float) -> Box:
        body = self.row(node.body, size)
        left = self.symbol(node.left.token, size)
        right = self.symbol(node.right.token, size)
        if not body.empty:
            b = body.bounds
            need = b[3] - b[1] + 0.3 * self.ex * size
            left, right = self.grow(left, need, b), self.grow(right, need, b)
        row = Box()
        x = 0.0
        for part, gap in ((left, 0.0), (body, _GAP["open"]), (right, _GAP["close"])):
            if part.empty:
                continue
            x += self.w.gap(gap) * size if not row.empty else 0.0
            row.add(part.moved(x - part.bounds[0], 0.0))
            x = row.bounds[2]
        return row

    def grow(self, fence: Box, need: float, around: Bounds) -> Box:
        """A fence at least ``need`` high, centred on what it encloses when it grows."""
        f = fence.bounds
        height = f[3] - f[1]
        if fence.empty or need <= 1.1 * height or height <= 0:
            return fence
        k = need / height
        # Taller brackets are written taller, not proportionally wider.
        grown = fence.moved(-f[0], -f[1]).mapped(np.diag([k ** 0.4, k]))
        return grown.moved(0.0, (around[1] + around[3]) / 2 - need / 2)


def _kind(node: Node, before: str | None) -> str:
    """How a row item spaces: ord, digit, bin, rel, open, close, punct or op."""
    if isinstance(node, Scripts):
        node = node.base
    if not isinstance(node, Sym):
        return "ord"
    t = node.token
    if t in g.BINARY:
        # A sign at the start, or after an operator or an opening, is unary.
        unary = before is None or before in ("bin", "rel", "open", "punct", "op")
        return "ord" if unary else "bin"
    if t in g.RELATION:
        return "rel"
    if t in g.OPENING:
        return "open"
    if t in g.CLOSING:
        return "close"
    if t in g.PUNCT:
        return "punct"
    if t in g.FUNCTION or t in g.BIG:
        return "op"
    if t.isdigit() or t == ".":
        return "digit"
    return "ord"


def _drawn_radical(top: float, low: float, span: float, ex: float) -> tuple[Box, float]:
    """A radical in one stroke: a short up-tick, down to the foot, up to the corner, across."""
    height = low - top
    corner = 0.35 * height + 0.4 * ex
    pts = np.array([[0.0, low - 0.45 * height], [0.12 * corner, low - 0.55 * height],
                    [0.45 * corner, low], [corner, top], [corner + span, top]])
    return Box.of("\\sqrt", [pts]), corner


def compose(tokens: Sequence[str], library: SymbolLibrary, rng: np.random.Generator,
            style: HandStyle | None = None) -> Drawing:
    """Lay a caption out as handwriting. Raises MissingSymbolError or LayoutError."""
    missing = g.missing_tokens(tokens, library)
    if missing:
        raise MissingSymbolError(missing)
    tree = parse(tokens)
    writer = Writer(library, rng, style)
    box = _Setter(writer).row(tree, 1.0)
    if box.empty:
        raise LayoutError(f"nothing to draw in {' '.join(tokens)!r}")
    # The writer's slant (y grows downwards, so ink above the line moves right), then a
    # slight turn of the whole line.
    lean = np.array([[1.0, 0.0], [-writer.slant, 1.0]])
    box = box.mapped(lean @ _rotation(writer.turn))
    return Drawing(box.strokes, box.symbols())
