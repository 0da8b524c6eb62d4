"""Training augmentation on pen strokes, before they are drawn.

Distorting the points rather than the image keeps lines crisp and their width
independent of the distortion. Every amount is relative to the expression (angles)
or to its typical stroke height (jitter), so one setting suits every CROHME
source whatever its coordinate units. Same generator state, same output.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from texlens.data.strokes import Traces, as_list, stroke_size


@dataclass(frozen=True)
class StrokeAugment:
    rotate_deg: float = 4.0  # whole-expression rotation, +-
    scale: tuple[float, float] = (0.9, 1.1)  # overall size
    aspect: tuple[float, float] = (0.9, 1.1)  # width / height stretch
    shear_deg: float = 4.0  # vertical shear (a drifting baseline), +-
    slant_deg: float = 12.0  # horizontal shear (italic-like writing), +-
    jitter: float = 0.015  # smooth point noise, in typical stroke heights
    # Local elastic warp: a smooth displacement field over the page, so each symbol and
    # gap is bent a little differently (what makes a new writer's layout unfamiliar).
    # Amplitude in typical stroke heights (0: off, the default of the shipped data),
    # wavelength in the same unit.
    warp: float = 0.0
    warp_wavelength: float = 3.0
    line_widths: Sequence[int] = (2, 3, 4)  # choices for pick_line_width


def _smooth_noise(n: int, rng: np.random.Generator, sigma: float) -> np.ndarray:
    """(n, 2) noise that drifts along the stroke instead of making it ragged."""
    raw = rng.normal(0.0, sigma, size=(n + 4, 2))
    kernel = np.ones(5) / math.sqrt(5)  # a sum of 5 over sqrt(5): same sigma, correlated
    return np.stack([np.convolve(raw[:, k], kernel, mode="valid") for k in (0, 1)], axis=1)


def _warp_field(rng: np.random.Generator, amount: float, wavelength: float, waves: int = 4):
    """A random smooth displacement field p -> d(p): a sum of ``waves`` plane waves of one
    wavelength in random directions. Its largest slope is about 2 pi amount / wavelength
    times sqrt(waves): below 1 (no folded strokes) for amount 0.1, wavelength 3."""
    angle = rng.uniform(0.0, 2 * math.pi, waves)
    k = 2 * math.pi / wavelength * np.stack([np.cos(angle), np.sin(angle)], axis=1)  # (W, 2)
    phase = rng.uniform(0.0, 2 * math.pi, waves)
    amp = rng.normal(0.0, amount / math.sqrt(waves), size=(waves, 2))

    def field(p: np.ndarray) -> np.ndarray:
        return np.sin(p @ k.T + phase) @ amp  # (n, W) @ (W, 2)
    return field


def augment_strokes(traces: Traces, rng: np.random.Generator,
                    cfg: StrokeAugment | None = None) -> dict[str, np.ndarray] | list[np.ndarray]:
    """A randomly distorted copy of ``traces`` (a dict keeps its keys, a list its order)."""
    cfg = cfg or StrokeAugment()
    strokes = as_list(traces)
    centre = np.concatenate(strokes).mean(axis=0)
    size, _ = stroke_size(strokes)
    rot = math.radians(rng.uniform(-cfg.rotate_deg, cfg.rotate_deg))
    scale = rng.uniform(*cfg.scale)
    aspect = rng.uniform(*cfg.aspect)
    shear = math.tan(math.radians(rng.uniform(-cfg.shear_deg, cfg.shear_deg)))
    slant = math.tan(math.radians(rng.uniform(-cfg.slant_deg, cfg.slant_deg)))
    # Row vectors: p' = p @ M. y grows downwards, so a positive slant leans right.
    stretch = np.diag([scale * math.sqrt(aspect), scale / math.sqrt(aspect)])
    lean = np.array([[1.0, shear], [-slant, 1.0]])
    turn = np.array([[math.cos(rot), math.sin(rot)], [-math.sin(rot), math.cos(rot)]])
    m = stretch @ lean @ turn
    # Drawn only when on, so the default keeps the generator stream (and the bytes of
    # data made before the warp existed).
    warp = _warp_field(rng, cfg.warp, cfg.warp_wavelength) if cfg.warp > 0 else None
    out = []
    for t in strokes:
        p = (t - centre) @ m + centre
        if warp is not None:
            p = p + size * warp((p - centre) / size)
        if cfg.jitter > 0:
            p = p + _smooth_noise(len(p), rng, cfg.jitter * size)
        out.append(p)
    if isinstance(traces, Mapping):
        keys = [k for k, v in traces.items() if len(np.asarray(v).reshape(-1, 2))]
        return dict(zip(keys, out, strict=True))
    return out


def pick_line_width(rng: np.random.Generator, cfg: StrokeAugment | None = None) -> int:
    """A pen width for :func:`texlens.data.strokes.render_strokes`."""
    cfg = cfg or StrokeAugment()
    return int(rng.choice(list(cfg.line_widths)))
