"""Inputs and training data of the orientation classifier.

An image's *angle* is the counter-clockwise rotation it has from upright: 0, 90, 180 or
270 degrees (``np.rot90(upright, angle // 90)``); turning it back is a rotation by
``-angle``. The classifier sees a square canvas of the image at one symbol size (the
middle of a long formula), ink bright on zero like the recogniser's inputs
(:func:`texlens.data.transforms.ink_bright`).

Training data: upright images from dataset directories, drawn per source (printed,
handwritten). Only expressions on the training side of the project's split rule
(:func:`texlens.data.splits.expression_split`: "train" or "val", never "heldout") and
outside the ``exclude`` caption files (the test sets) are used; each image is stored
upright as a canvas, and a rotation is applied when a batch is made.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from texlens.config import ConfigError, OrientationDataConfig
from texlens.data.datasets import read_layout
from texlens.data.image import ImageError, load_image
from texlens.data.splits import among, caption_expressions, expression, expression_split
from texlens.data.transforms import ink_bright

ANGLES = (0, 90, 180, 270)
PRINTED, HANDWRITTEN = 0, 1


def rotate(image: np.ndarray, angle: int) -> np.ndarray:
    """Turn ``image`` counter-clockwise by ``angle`` (a multiple of 90) degrees."""
    if angle % 90:
        raise ValueError(f"angle must be a multiple of 90 degrees, not {angle}")
    return np.ascontiguousarray(np.rot90(image, (angle // 90) % 4))


# Tokens of CROHME's vocabulary whose handwritten glyph, turned by half, looks like a
# token (itself or the other of a pair): `p` turned is `d`, `6` is `9`, `m` is `w`, `(` is
# `)`. A formula made only of these reads as a formula both ways up, so no classifier can
# tell its 0 from its 180 (nor its 90 from its 270) but by the writer's hand; scripts (`^`,
# `_`) and roots turn into no formula and are left out, as are glyphs that only some hands
# make symmetric (`2`, `5`, `7`, `a`).
HALF_TURN_SAME = {"x", "X", "o", "0", "s", "S", "z", "N", "H", "I", "l", "1", "8",
                  "-", "+", "=", "/", "|", ".", "\\times", "\\div", "\\neq", "\\cdot",
                  "\\ldots", "\\infty", "\\frac", "{", "}"}
HALF_TURN_PAIRS = (("n", "u"), ("6", "9"), ("p", "d"), ("b", "q"), ("m", "w"), ("(", ")"),
                   ("[", "]"), ("\\{", "\\}"), ("<", ">"), ("\\leq", "\\geq"))
HALF_TURN = HALF_TURN_SAME | {t for pair in HALF_TURN_PAIRS for t in pair}


def half_turn_lookalike(tokens: Sequence[str]) -> bool:
    """Does the formula, turned by half, read as a formula (every token a HALF_TURN one)?
    benchmarks/orientation.py reports these apart: no classifier is to blame for them."""
    return all(t in HALF_TURN for t in tokens)


SYMBOL = 16  # px: the median symbol size every canvas is brought to


def symbol_size(ink: np.ndarray) -> float | None:
    """Median size (px) of the ink's connected components, each measured by its longer
    side so that a turned image measures the same; specks are left out. None: no ink."""
    _, binary = cv2.threshold(ink, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    _, _, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
    side = np.maximum(stats[1:, cv2.CC_STAT_HEIGHT], stats[1:, cv2.CC_STAT_WIDTH])
    side = side[side >= 3]
    return float(np.median(side)) if side.size else None


def _normalised(gray: np.ndarray, symbol: int = SYMBOL) -> np.ndarray:
    """Ink bright on zero, median symbol ``symbol`` px, contrast stretched."""
    g = ink_bright(gray)
    measured = symbol_size(g)
    if measured:
        f = symbol / measured
        h, w = g.shape
        g = cv2.resize(g, (max(1, round(w * f)), max(1, round(h * f))),
                       interpolation=cv2.INTER_AREA if f < 1 else cv2.INTER_LINEAR)
    lo, hi = int(g.min()), int(g.max())
    if hi > lo:  # faint scans and grey paper reach the model at full contrast
        g = ((g.astype(np.float32) - lo) * (255.0 / (hi - lo)) + 0.5).astype(np.uint8)
    return g


def _ink_box(g: np.ndarray) -> tuple[int, int, int, int] | None:
    ys, xs = np.nonzero(g > 64)
    if not len(ys):
        return None
    return int(ys.min()), int(ys.max()), int(xs.min()), int(xs.max())


def _cut(g: np.ndarray, box: tuple[int, int, int, int] | None, h: int, w: int) -> np.ndarray:
    """An (h, w) window of ``g`` centred on the ink box (to a pixel, when the rest is odd),
    blank paper beyond ``g``."""
    if box is not None:
        top, left = (box[0] + box[1] + 1 - h) // 2, (box[2] + box[3] + 1 - w) // 2
    else:
        top, left = (g.shape[0] - h) // 2, (g.shape[1] - w) // 2
    out = np.zeros((h, w), np.uint8)
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + h, g.shape[0]), min(left + w, g.shape[1])
    out[y0 - top:y1 - top, x0 - left:x1 - left] = g[y0:y1, x0:x1]
    return out


def canvas(gray: np.ndarray, size: int) -> np.ndarray:
    """uint8 gray image (any polarity and size) -> uint8 (size, size): ink bright on zero
    (blank paper), resized so its median symbol is SYMBOL px, centred on the ink, cut to
    the square (a long formula keeps its middle part), contrast stretched.

    Symbols keep one legible size, whatever the image size: a first version shrank the
    whole image into the square, which left a long formula's symbols 3-4 px high, and
    told 0 from 180 degrees little better than chance (macro F1 0.62)."""
    g = _normalised(gray)
    return _cut(g, _ink_box(g), size, size)


VIEW_STEP = 16  # px: a view's sides are multiples of this (few distinct shapes to batch)


def view(gray: np.ndarray, longest: int, symbol: int = SYMBOL) -> np.ndarray:
    """Like :func:`canvas`, but the window is the ink's bounding box plus a margin of
    one symbol, each side rounded up to VIEW_STEP and cut to at most ``longest``: the whole
    of a formula up to that length, and no blank paper beyond it.

    The classifier is fully convolutional and averages over the cells that hold ink, so
    a wider view is more of the formula voting, not a new kind of input: trained on 128-px
    canvases, it told angles apart better on whole formulas (docs/RESULTS.md, 2026-12-05
    fourth). ``symbol`` (px) brings the median symbol to another size than the classifier's
    (benchmarks/orientation_ensembles.py: does averaging over sizes help?)."""
    g = _normalised(gray, symbol)
    box = _ink_box(g)
    if box is None:
        return np.zeros((VIEW_STEP * 4, VIEW_STEP * 4), np.uint8)

    def side(extent: int) -> int:
        padded = -(-(extent + 2 * symbol) // VIEW_STEP) * VIEW_STEP
        return max(VIEW_STEP * 4, min(longest, padded))

    return _cut(g, box, side(box[1] - box[0] + 1), side(box[3] - box[2] + 1))


def add_margin(gray: np.ndarray, share: float, rng: np.random.Generator) -> np.ndarray:
    """Extra paper on each side, 0..share of the longer side each (training variety:
    screenshots and scans come with more or less of it)."""
    if share <= 0:
        return gray
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    t, b, l_, r = (int(v) for v in rng.integers(0, int(share * max(gray.shape)) + 1, 4))
    return cv2.copyMakeBorder(gray, t, b, l_, r, cv2.BORDER_CONSTANT,
                              value=int(np.median(border)))


def ink_crops(canvases: np.ndarray, size: int, rng: np.random.Generator,
              scale: float = 0.0) -> np.ndarray:
    """(N, S, S) canvases -> (N, size, size): a square near a random ink pixel of each
    (the canvas centre for a blank one), blank paper beyond the canvas.

    The square is shifted off that pixel at random: were the pixel always at the same
    place, turning the crop would move a guaranteed ink pixel by one, and the model
    learns that instead of the strokes (it did: 73% direction accuracy on such crops,
    chance on whole canvases).

    ``scale`` > 0 zooms each crop by a factor drawn log-uniformly in [1 / (1 + scale),
    1 + scale]: the symbol size that :func:`canvas` measures is the median of connected
    components, which a writer who joins letters or writes large scripts throws off, so
    the model should not rely on symbols being exactly SYMBOL px."""
    out = np.zeros((len(canvases), size, size), np.uint8)
    for i, c in enumerate(canvases):
        side = size
        if scale > 0:
            side = max(8, round(size / np.exp(rng.uniform(-1, 1) * np.log1p(scale))))
        half, jitter = side // 2, side // 4
        ys, xs = np.nonzero(c > 64)
        j = rng.integers(len(ys)) if len(ys) else None
        cy, cx = (ys[j], xs[j]) if j is not None else (c.shape[0] // 2, c.shape[1] // 2)
        dy, dx = (int(v) for v in rng.integers(-jitter, jitter + 1, 2))
        top, left = cy + dy - half, cx + dx - half
        y0, x0 = max(top, 0), max(left, 0)
        y1, x1 = min(top + side, c.shape[0]), min(left + side, c.shape[1])
        crop = np.zeros((side, side), np.uint8)
        crop[y0 - top:y1 - top, x0 - left:x1 - left] = c[y0:y1, x0:x1]
        out[i] = crop if side == size else cv2.resize(
            crop, (size, size), interpolation=cv2.INTER_AREA if side > size else cv2.INTER_LINEAR)
    return out


def check_prior(prior: Sequence[float]) -> np.ndarray:
    p = np.asarray(prior, np.float64)
    if p.shape != (len(ANGLES),) or (p <= 0).any() or abs(p.sum() - 1) > 1e-6:
        raise ConfigError(f"orientation prior: {len(ANGLES)} positive shares of "
                          f"{'/'.join(map(str, ANGLES))} degrees summing to 1, got {list(prior)}")
    return p


def draw_labels(n: int, prior: Sequence[float], rng: np.random.Generator) -> np.ndarray:
    """n class indices (0..3, of ANGLES) drawn with the shares ``prior``."""
    return rng.choice(len(ANGLES), size=n, p=check_prior(prior))


@dataclass
class OrientationSet:
    """Upright canvases and, per image, its source, expression and side of the split."""

    canvases: np.ndarray  # (N, S, S) uint8
    source: np.ndarray  # (N,) PRINTED or HANDWRITTEN
    groups: list[str]  # the expression: folds keep equal ones together
    split: list[str]  # "train" or "val" (expression_split)
    names: list[str]  # image paths
    shapes: np.ndarray  # (N, 2) height and width of each upright image, margins included
    problems: list[str] = field(default_factory=list)  # images skipped, and why

    def __len__(self) -> int:
        return len(self.groups)

    def subset(self, idx: Sequence[int] | np.ndarray) -> OrientationSet:
        idx = np.asarray(idx, dtype=np.int64)
        return OrientationSet(self.canvases[idx], self.source[idx],
                              [self.groups[i] for i in idx], [self.split[i] for i in idx],
                              [self.names[i] for i in idx], self.shapes[idx])


def load_orientation_set(cfg: OrientationDataConfig, size: int, seed: int = 0,
                         progress: Callable[[int], None] | None = None) -> OrientationSet:
    """Draw ``n_printed`` and ``n_handwritten`` usable images (a seeded shuffle of each
    source's pool) and make their upright canvases. Unreadable images are skipped and
    listed in ``problems``."""
    check_prior(cfg.prior)
    if not (cfg.printed or cfg.handwritten):
        raise ConfigError("orientation data: no printed or handwritten dataset directories")
    try:
        banned = caption_expressions(cfg.exclude)
    except ValueError as e:
        raise ConfigError(f"orientation data.exclude: {e}") from None
    rng = np.random.default_rng(seed)
    canvases, source, groups, split, names, shapes, problems = [], [], [], [], [], [], []
    for src, dirs, n in ((PRINTED, cfg.printed, cfg.n_printed),
                         (HANDWRITTEN, cfg.handwritten, cfg.n_handwritten)):
        pool = []
        for d in dirs:
            samples, found = read_layout(d)
            problems += found
            for s in samples:
                expr = expression(s.tokens)
                side = expression_split(expr)
                if side != "heldout" and not among(expr, banned):
                    pool.append((s.image, expr, side))
        order = rng.permutation(len(pool))
        taken = 0
        for i in order:
            if n and taken >= n:
                break
            image, expr, side = pool[i]
            try:
                gray = load_image(image)
            except ImageError as e:
                problems.append(str(e))
                continue
            gray = add_margin(gray, cfg.margin, rng)
            canvases.append(canvas(gray, size))
            shapes.append(gray.shape)
            source.append(src)
            groups.append(expr)
            split.append(side)
            names.append(str(image))
            taken += 1
            if progress:
                progress(1)
    if not canvases:
        raise ConfigError("orientation data: no usable images in "
                          f"{', '.join([*cfg.printed, *cfg.handwritten])}")
    return OrientationSet(np.stack(canvases), np.asarray(source, np.int64), groups, split,
                          names, np.asarray(shapes, np.int64), problems)
