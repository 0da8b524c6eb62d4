"""A library of handwritten symbols, cut from segmented InkML (``texlens data symbols``).

Every labelled traceGroup becomes one :class:`Glyph`: its strokes moved so their
bounding box starts at the origin, and divided by the writer's typical symbol
height in that file. Coordinates then mean the same across CROHME's sources
(HAMEX writes 10.6 where MathBrush writes 7240), while relative sizes inside a
file survive: a dot stays a dot next to an ``x``.

The typical height is estimated in two passes, because a plain median of one
file's symbol heights depends on what was written (``1+2`` is taller than
``x+a``): first that median gives every token a typical height across all
files; then each file's unit is the median of its symbols' heights divided by
their tokens' typical heights. Flat symbols (minus, dots) have no meaningful
height and are left out of both estimates.

A ``-`` with ink both above and below it inside its span is a fraction bar: it is
stored as ``\\frac`` (the ink ``\\frac`` stands for), apart from minus signs.

The library is research data derived from the InkML it was built from: keep it
out of the repository (CROHME's licence is research-only).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path, PurePosixPath

import numpy as np

from texlens.data.handwriting.labels import label_token
from texlens.data.inkml import InkmlError, read_inkml

FORMAT = 1
# Height says nothing about a writer's size for these: left out of the unit estimates.
FLAT = frozenset({"-", "\\frac", ".", ",", "\\ldots", "\\cdot", "\\cdots", "=", "\\rightarrow",
                  "'", "\\prime"})
# Their size follows what they enclose or span: no size-outlier check.
STRETCHY = frozenset({"\\frac", "\\sqrt", "(", ")", "[", "]", "\\{", "\\}", "|", "\\int",
                      "-", "\\rightarrow"})
OUTLIER_RATIO = 2.0  # a glyph this many times bigger or smaller than its token's norm is dropped
# A glyph whose width share w / (w + h) exceeds its token's median by this much is dropped
# (squashed or mis-segmented). Narrow is allowed: a "1" can be a plain line.
WIDE_MARGIN = 0.2
MAX_HEIGHT = 8.0  # no glyph is this many typical heights high (wide is fine: bars, radicals)
SPACING = 0.02  # points closer than this (in typical heights) along a stroke are merged


class LibraryError(ValueError):
    """A symbol library file cannot be read."""


@dataclass(frozen=True)
class Glyph:
    """One handwritten symbol: strokes with their bounding box at the origin."""

    strokes: tuple[np.ndarray, ...]  # float32 (n, 2), y down, unit: writer's typical height
    source: int  # index into SymbolLibrary.sources

    @cached_property  # asked for often by the layout; the strokes never change
    def size(self) -> tuple[float, float]:
        """Width and height."""
        pts = np.concatenate(self.strokes)
        return float(pts[:, 0].max()), float(pts[:, 1].max())


@dataclass
class SymbolLibrary:
    glyphs: dict[str, list[Glyph]]  # caption token -> samples
    sources: list[str]  # where glyphs come from (CROHME source folder names)
    # Computed on first use: (token, side) -> median, (token, source) -> samples.
    _stats: dict[tuple[str, int], float] = field(default_factory=dict, init=False, repr=False)
    _by_source: dict[tuple[str, int], list[Glyph]] = field(default_factory=dict, init=False,
                                                             repr=False)

    def count(self, token: str) -> int:
        return len(self.glyphs.get(token, ()))

    def typical_height(self, token: str) -> float:
        """Median height of the token's samples (0 when it has none)."""
        return self._median(token, 1)

    def typical_size(self, token: str) -> float:
        """Median of the larger side of the token's samples (a minus has no height)."""
        return self._median(token, 2)

    def _median(self, token: str, side: int) -> float:
        key = (token, side)
        if key not in self._stats:
            sizes = [g.size for g in self.glyphs.get(token, [])]
            pick = (lambda s: s[1]) if side == 1 else max
            self._stats[key] = float(np.median([pick(s) for s in sizes])) if sizes else 0.0
        return self._stats[key]

    def counts(self) -> dict[str, int]:
        return {t: len(g) for t, g in sorted(self.glyphs.items())}

    def of_source(self, token: str, source: int) -> list[Glyph]:
        """The token's samples from one source."""
        key = (token, source)
        if key not in self._by_source:
            self._by_source[key] = [g for g in self.glyphs.get(token, []) if g.source == source]
        return self._by_source[key]

    @cached_property
    def x_height(self) -> float:
        """Median height of the small lower-case letters: the layout's unit of length."""
        heights = [g.size[1] for t in "acemnorsuvwxz" for g in self.glyphs.get(t, ())]
        # With no such letter in the library, a typical symbol is about 1.4 x-heights.
        return float(np.median(heights)) if heights else 0.7

    def save(self, path: str | Path) -> None:
        """One compressed .npz (no pickled objects), written whole or not at all."""
        tokens = sorted(self.glyphs)
        order = [(t, g) for t in tokens for g in self.glyphs[t]]
        strokes = [s for _, g in order for s in g.strokes]
        arrays = {
            "format": np.array(FORMAT),
            "tokens": np.array(tokens, dtype=str),
            "sources": np.array(self.sources, dtype=str),
            "glyph_token": _indices([t for t, _ in order], tokens),
            "glyph_source": np.array([g.source for _, g in order], np.int32),
            "glyph_strokes": np.array([len(g.strokes) for _, g in order], np.int32),
            "stroke_points": np.array([len(s) for s in strokes], np.int32),
            "points": (np.concatenate(strokes).astype(np.float32) if strokes
                       else np.zeros((0, 2), np.float32)),
        }
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as f:  # a file object: numpy must not append ".npz"
            np.savez_compressed(f, **arrays)
        tmp.replace(path)

    @classmethod
    def load(cls, path: str | Path) -> SymbolLibrary:
        try:
            with np.load(path, allow_pickle=False) as z:
                if int(z["format"]) != FORMAT:
                    raise LibraryError(f"{path}: library format {int(z['format'])}, "
                                       f"this version reads {FORMAT}; rebuild it")
                tokens, sources = [str(t) for t in z["tokens"]], [str(s) for s in z["sources"]]
                g_tok, g_src, g_n = z["glyph_token"], z["glyph_source"], z["glyph_strokes"]
                lengths, points = z["stroke_points"], z["points"]
        except (OSError, KeyError, ValueError) as e:
            if isinstance(e, LibraryError):
                raise
            raise LibraryError(f"{path}: not a symbol library ({e})") from None
        strokes = np.split(points, np.cumsum(lengths)[:-1]) if len(lengths) else []
        ends = np.cumsum(g_n)
        glyphs: dict[str, list[Glyph]] = {t: [] for t in tokens}
        for k in range(len(g_n)):
            glyph = Glyph(tuple(strokes[ends[k] - g_n[k]:ends[k]]), int(g_src[k]))
            glyphs[tokens[g_tok[k]]].append(glyph)
        return cls(glyphs, sources)


def _indices(values: list[str], names: list[str]) -> np.ndarray:
    where = {n: i for i, n in enumerate(names)}
    return np.array([where[v] for v in values], np.int32)


@dataclass
class BuildReport:
    files: int = 0  # InkML files that gave glyphs
    skipped: list[str] = field(default_factory=list)  # "name: why" for files that gave none
    ignored_labels: Counter = field(default_factory=Counter)  # labels outside the dictionary
    outliers: int = 0  # glyphs dropped for an implausible size
    glyphs: int = 0
    seconds: float = 0.0


@dataclass
class _Cut:
    token: str
    strokes: list[np.ndarray]  # float32, origin at the bbox, unit: the file's median height
    height: float  # in that unit
    width: float


def _thin(points: np.ndarray, spacing: float) -> np.ndarray:
    """Keep one point per ``spacing`` of arc length, and always both ends."""
    if len(points) < 3:
        return points
    arc = np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(points, axis=0).T))])
    _, first = np.unique(np.floor(arc / spacing), return_index=True)
    keep = np.union1d(first, [len(points) - 1])
    return points[keep]


def _is_fraction_bar(bar: tuple[float, float, float, float],
                     boxes: list[tuple[float, float, float, float]]) -> bool:
    """Some other symbol lies wholly above the bar and some wholly below, inside its span."""
    x0, y0, x1, y1 = bar
    mid = (y0 + y1) / 2
    inside = [b for b in boxes if b is not bar and x0 <= (b[0] + b[2]) / 2 <= x1]
    return any(b[3] < mid for b in inside) and any(b[1] > mid for b in inside)


def _cut_file(name: str, data: bytes, report: BuildReport) -> list[_Cut]:
    try:
        ink = read_inkml(data, name)
    except InkmlError as e:
        report.skipped.append(str(e))
        return []
    found: list[tuple[str, list[np.ndarray], tuple[float, float, float, float]]] = []
    for sym in ink.symbols:
        token = label_token(sym.label)
        if token is None:
            report.ignored_labels[sym.label] += 1
            continue
        strokes = [ink.traces[t] for t in sym.trace_ids if t in ink.traces]
        if not strokes:
            continue
        pts = np.concatenate(strokes)
        lo, hi = pts.min(axis=0), pts.max(axis=0)
        found.append((token, strokes, (lo[0], lo[1], hi[0], hi[1])))
    boxes = [b for _, _, b in found]
    heights = [b[3] - b[1] for t, _, b in found if t not in FLAT and b[3] > b[1]]
    if not heights:
        report.skipped.append(f"{name}: no labelled symbol with a height")
        return []
    unit = float(np.median(heights))
    cuts = []
    for token, strokes, box in found:
        if token == "-" and _is_fraction_bar(box, boxes):
            token = "\\frac"
        origin = np.array(box[:2])
        norm = [_thin((s - origin) / unit, SPACING).astype(np.float32) for s in strokes]
        cuts.append(_Cut(token, norm, (box[3] - box[1]) / unit, (box[2] - box[0]) / unit))
    return cuts


def _width_share(c: _Cut) -> float:
    return c.width / (c.width + c.height)


def _typical(files: list[list[_Cut]]) -> tuple[dict[str, float], dict[str, float]]:
    """Median height and width share of each token (flat ones left out)."""
    found: dict[str, list[_Cut]] = {}
    for cuts in files:
        for c in cuts:
            if c.token not in FLAT and c.height > 0:
                found.setdefault(c.token, []).append(c)
    return ({t: float(np.median([c.height for c in cs])) for t, cs in found.items()},
            {t: float(np.median([_width_share(c) for c in cs])) for t, cs in found.items()})


def _plausible(c: _Cut, unit: float, height: dict[str, float], share: dict[str, float]) -> bool:
    """Size and shape near the token's norm (flat and stretchy tokens vary by nature)."""
    if c.token in FLAT or c.token in STRETCHY or c.height == 0:
        return True
    ratio = c.height / unit / height[c.token]
    return (1 / OUTLIER_RATIO <= ratio <= OUTLIER_RATIO
            and _width_share(c) <= share[c.token] + WIDE_MARGIN)


def build_library(files: Iterable[tuple[str, bytes]],
                  progress: Callable[[int], None] | None = None
                  ) -> tuple[SymbolLibrary, BuildReport]:
    """Cut every labelled symbol out of ``(name, InkML bytes)`` pairs (training files only)."""
    t0 = time.perf_counter()
    report = BuildReport()
    per_file: list[tuple[str, list[_Cut]]] = []
    for name, data in files:
        cuts = _cut_file(name, data, report)
        if cuts:
            per_file.append((PurePosixPath(name).parent.name, cuts))
        if progress:
            progress(1)
    typical, share = _typical([c for _, c in per_file])
    sources = sorted({s for s, _ in per_file})
    glyphs: dict[str, list[Glyph]] = {}
    for source, cuts in per_file:
        rel = [c.height / typical[c.token] for c in cuts
               if c.token not in FLAT and c.height > 0]
        unit = float(np.median(rel))  # this writer's size against everyone's, per token
        for c in cuts:
            strokes = tuple(s / np.float32(unit) for s in c.strokes)
            size = np.concatenate(strokes).max(axis=0)
            if not _plausible(c, unit, typical, share) or size[1] > MAX_HEIGHT:
                report.outliers += 1
                continue
            glyphs.setdefault(c.token, []).append(Glyph(strokes, sources.index(source)))
        report.files += 1
    report.glyphs = sum(len(g) for g in glyphs.values())
    report.seconds = time.perf_counter() - t0
    return SymbolLibrary(glyphs, sources), report
