"""Draw pen strokes (InkML traces) as a formula image, at a bounded scale.

Coordinates differ wildly between CROHME sources (HAMEX writes 10.6, MathBrush
7240 for similar handwriting), so the scale comes from the strokes themselves:
the root mean square of the strokes' heights is mapped to ``stroke_px`` pixels.
The RMS leans towards the big strokes, so dots and minus signs (height ~0) barely
move it; on the CROHME 2014 test set it predicts the scale of the standard
offline images to about +-11% (log-sd 0.11), better than the median stroke
height (0.40), the mean symbol height (0.16) or the expression height (0.45).

Two bounds keep a degenerate file from asking for a gigantic canvas (a renderer
without them once needed 24 GB for one file). The typical stroke is taken as at
least 1/100 of the expression's extent and 1/10 of the strokes' RMS diagonal (so
a row of dots and dashes keeps a sane size); no CROHME 2016 training or 2014 test
file comes near either (their extremes are 1/78 and 1/7.8). And the canvas is at
most ``max_side`` pixels a side. Hitting a bound warns with
:class:`RenderBoundWarning`, or raises :class:`RenderBoundError` when ``strict``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

Traces = Mapping[str, np.ndarray] | Sequence[np.ndarray]

MAX_STROKES_ACROSS = 100.0  # typical stroke >= extent / this
MIN_HEIGHT_TO_DIAGONAL = 0.1  # typical stroke >= RMS stroke diagonal * this
_SHIFT = 4  # cv2 fixed-point bits: sub-pixel stroke positions
_ONE = 1 << _SHIFT


class RenderBoundError(ValueError):
    """The scale or the canvas size hit its bound (strict mode)."""


class RenderBoundWarning(UserWarning):
    """The scale or the canvas size hit its bound; the image was drawn smaller."""


@dataclass(frozen=True)
class StrokeStyle:
    line_width: int
    pad: int  # pixels between the ink and the image border
    stroke_px: float  # pixels for the RMS stroke height
    antialias: bool
    bright_ink: bool  # white on black (CROHME offline) or dark on white


# "crohme" matches the standard CROHME offline images (2014 test set): 3-pixel
# binary strokes, 12 pixels of border, RMS stroke height ~27.6 px; see
# benchmarks/crohme_render_match.py for the comparison.
MODES = {
    "default": StrokeStyle(line_width=3, pad=8, stroke_px=28.0, antialias=True,
                           bright_ink=False),
    "crohme": StrokeStyle(line_width=3, pad=12, stroke_px=27.6, antialias=False,
                          bright_ink=True),
}


def as_list(traces: Traces) -> list[np.ndarray]:
    items = list(traces.values()) if isinstance(traces, Mapping) else list(traces)
    out = [np.asarray(t, dtype=np.float64).reshape(-1, 2) for t in items]
    out = [t for t in out if len(t)]
    if not out:
        raise ValueError("no stroke points to draw")
    return out


def stroke_size(traces: Traces) -> tuple[float, bool]:
    """Typical stroke height (RMS) in the traces' own units, and whether it was bounded."""
    strokes = as_list(traces)
    pts = np.concatenate(strokes)
    extent = float(np.ptp(pts, axis=0).max())
    spans = np.array([np.ptp(t, axis=0) for t in strokes])
    rms = float(np.sqrt(np.mean(spans[:, 1] ** 2)))
    if extent <= 0:  # a single point: any scale is as good as another
        return 1.0, True
    diagonal = float(np.sqrt(np.mean((spans ** 2).sum(axis=1))))
    floor = max(extent / MAX_STROKES_ACROSS, diagonal * MIN_HEIGHT_TO_DIAGONAL)
    return (rms, False) if rms >= floor else (floor, True)


def _report(msg: str, strict: bool, fallback: str) -> None:
    if strict:
        raise RenderBoundError(msg)
    warnings.warn(f"{msg}; {fallback}", RenderBoundWarning, stacklevel=3)


def render_strokes(traces: Traces, height: int | None = None, line_width: int | None = None,
                   pad: int | None = None, mode: str = "default", max_side: int = 2000,
                   stroke_px: float | None = None, strict: bool = False) -> np.ndarray:
    """Strokes -> uint8 image (H, W).

    Without ``height`` the RMS stroke height becomes ``stroke_px`` pixels and the
    canvas fits the ink; with it the image is exactly ``height`` pixels high and
    the expression fills it, but its strokes are never drawn more than 4x
    ``stroke_px`` (a lone minus sign would otherwise fill the page).
    ``mode`` "default": anti-aliased dark ink on white; "crohme": binary white on
    black like the standard CROHME offline images. Round caps and joins.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    style = MODES[mode]
    lw = style.line_width if line_width is None else int(line_width)
    pad = style.pad if pad is None else int(pad)
    target = style.stroke_px if stroke_px is None else float(stroke_px)
    if lw < 1 or pad < 0 or target <= 0:
        raise ValueError("line_width must be >= 1, pad >= 0 and stroke_px > 0")
    strokes = as_list(traces)
    pts = np.concatenate(strokes)
    lo = pts.min(axis=0)
    w, h = np.ptp(pts, axis=0)
    size, bounded = stroke_size(strokes)
    scale = target / size
    if bounded:
        _report(f"stroke size bound: the strokes have almost no height (RMS under "
                f"{size:.4g} for an extent of {max(w, h):.4g})", strict,
                f"scaled as if it were {size:.4g}")
    # Border plus the ink beyond the outermost stroke centres: a lw-pixel pen adds
    # lw - 1 pixels to the centrelines' pixel span.
    margin = 2 * pad + lw - 1
    if height is not None:
        if height > max_side:
            raise ValueError(f"height {height} is more than max_side {max_side}")
        if height - margin < 1:
            raise ValueError(f"height {height} leaves no room inside pad {pad} and "
                             f"line width {lw}")
        fit = (height - margin) / h if h > 0 else math.inf
        if fit > 4 * scale:
            _report(f"scale bound: filling height {height} would draw strokes "
                    f"{fit / scale:.1f}x their normal size", strict, "kept at 4x")
        scale = min(fit, 4 * scale)
    limit = max_side - margin
    if limit < 1:
        raise ValueError(f"max_side {max_side} leaves no room inside pad {pad} and "
                         f"line width {lw}")
    if max(w, h) * scale > limit:
        _report(f"size bound: the image would be {max(w, h) * scale + margin:.0f} px "
                f"wide or high, more than max_side={max_side}", strict, "drawn smaller")
        scale = limit / max(w, h)
    # The epsilon keeps a canvas scaled to exactly max_side from rounding up past it.
    out_w = int(math.ceil(w * scale - 1e-6)) + margin
    out_h = height if height is not None else int(math.ceil(h * scale - 1e-6)) + margin
    offset = np.array([(out_w - w * scale) / 2, (out_h - h * scale) / 2])
    canvas = np.zeros((out_h, out_w), np.uint8)
    for t in strokes:
        xy = np.round(((t - lo) * scale + offset) * _ONE).astype(np.int32)
        if style.antialias:
            _draw_smooth(canvas, xy, lw)
        else:
            _draw_centreline(canvas, xy)
    if not style.antialias:
        # A square pen over 1-pixel centrelines: what the standard CROHME images show
        # (their measured stroke width, 3.29 px, is that of a 3x3 square; a round
        # 3-pixel pen gives 2.8 and cv2's thickness-3 line 4.8).
        canvas = cv2.dilate(canvas, np.ones((lw, lw), np.uint8))
    return canvas if style.bright_ink else 255 - canvas


def _draw_smooth(canvas: np.ndarray, xy: np.ndarray, lw: int) -> None:
    """Anti-aliased stroke, round caps and joins (cv2 rounds thick lines' ends)."""
    if len(xy) == 1 or not np.any(xy != xy[0]):
        # One point (a dot): a filled disc the size of the pen.
        cv2.circle(canvas, (int(xy[0, 0]), int(xy[0, 1])), max(_ONE // 2, lw * _ONE // 2),
                   255, -1, cv2.LINE_AA, _SHIFT)
    else:
        # cv2's anti-aliased thickness t inks about t + 1 pixels across: t = lw - 1 gives
        # the same measured width as the binary lw-pixel square pen.
        cv2.polylines(canvas, [xy.reshape(-1, 1, 2)], False, 255, max(1, lw - 1),
                      cv2.LINE_AA, _SHIFT)


def _draw_centreline(canvas: np.ndarray, xy: np.ndarray) -> None:
    """1-pixel binary stroke; a single point still marks its pixel."""
    cv2.polylines(canvas, [xy.reshape(-1, 1, 2)], False, 255, 1, cv2.LINE_8, _SHIFT)
    x, y = (int(round(v / _ONE)) for v in xy[0])
    if 0 <= y < canvas.shape[0] and 0 <= x < canvas.shape[1]:
        canvas[y, x] = 255
