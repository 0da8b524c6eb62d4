"""Stroke rendering (scale normalisation, bounds, crohme mode) and stroke augmentation."""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pytest
from inkml_samples import X_PLUS_1, dots_and_dashes

from texlens.config import DataConfig
from texlens.data.stroke_augment import StrokeAugment, augment_strokes, pick_line_width
from texlens.data.strokes import (
    MODES,
    RenderBoundError,
    RenderBoundWarning,
    render_strokes,
    stroke_size,
)
from texlens.data.transforms import ink_bright, preprocess


def strokes(scale: float = 100.0, shift: float = 0.0) -> dict[str, np.ndarray]:
    return {str(i): np.array(s, dtype=float) * scale + shift
            for i, s in enumerate(X_PLUS_1["strokes"])}


def render_quiet(*args, **kwargs) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("error", RenderBoundWarning)  # no bound on normal input
        return render_strokes(*args, **kwargs)


def test_default_mode_is_antialiased_dark_ink_on_white():
    img = render_quiet(strokes())
    assert img.dtype == np.uint8 and img.ndim == 2
    border = np.concatenate([img[0], img[-1], img[:, 0], img[:, -1]])
    assert (border == 255).all()
    assert img.min() == 0
    assert len(np.unique(img)) > 10  # anti-aliased edges


def test_scale_follows_the_strokes_not_the_coordinate_units():
    # The same handwriting in HAMEX-like (0.01) and MathBrush-like (1000s) units.
    small = render_quiet(strokes(scale=0.013, shift=10.6))
    large = render_quiet(strokes(scale=2400.0, shift=7240.0))
    assert abs(small.shape[0] - large.shape[0]) <= 1
    assert abs(small.shape[1] - large.shape[1]) <= 1
    # RMS stroke height -> stroke_px: the strokes here are 0 or 1 unit high.
    size, bounded = stroke_size(strokes(scale=1.0))
    assert not bounded and size == pytest.approx(np.sqrt(4 / 5))


def test_crohme_mode_is_binary_white_on_black():
    img = render_quiet(strokes(), mode="crohme")
    assert set(np.unique(img)) == {0, 255}
    border = np.concatenate([img[0], img[-1], img[:, 0], img[:, -1]])
    assert (border == 0).all()
    ys, xs = np.nonzero(img)
    style = MODES["crohme"]
    # The standard images keep 12 px above/left of the ink and 11 below/right.
    assert ys.min() in (style.pad, style.pad + 1) and xs.min() in (style.pad, style.pad + 1)
    assert img.shape[0] - 1 - ys.max() in (style.pad - 1, style.pad)
    # Preprocessing must not invert it: the border is black, so ink is already bright.
    assert ink_bright(img) is img
    out = preprocess(img, DataConfig(height=32))
    assert out.shape[0] == 32 and out[0].max() < 64 and out.max() > 128


def test_line_width_and_pad_options():
    thin = render_quiet(strokes(), mode="crohme", line_width=1, pad=0)
    thick = render_quiet(strokes(), mode="crohme", line_width=4, pad=0)
    assert (thick > 0).sum() > 2.5 * (thin > 0).sum()
    ys, xs = np.nonzero(thin)
    assert ys.min() == 0 and xs.min() == 0


def test_near_zero_height_huge_coordinates_is_bounded_and_reported():
    traces = dots_and_dashes(extent=3e7)
    with pytest.warns(RenderBoundWarning, match="stroke size bound"):
        img = render_strokes(traces, mode="crohme", max_side=2000)
    assert max(img.shape) <= 2000
    assert img.max() == 255
    with pytest.raises(RenderBoundError, match="stroke size bound"):
        render_strokes(traces, mode="crohme", strict=True)


def test_size_bound_caps_a_very_long_expression():
    row = [np.array([[x, 0.0], [x + 0.3, 1.0]]) for x in np.arange(0, 90, 1.0)]
    with pytest.warns(RenderBoundWarning, match="size bound"):
        img = render_strokes(row, max_side=1000)
    assert img.shape[1] == 1000
    with pytest.raises(RenderBoundError, match="max_side=1000"):
        render_strokes(row, max_side=1000, strict=True)


def test_single_point_draws_a_dot():
    with pytest.warns(RenderBoundWarning):
        img = render_strokes([np.array([[5.0, 5.0]])], mode="crohme")
    assert max(img.shape) < 64 and (img == 255).sum() >= 1


def test_fixed_height():
    img = render_quiet(strokes(), height=64)
    assert img.shape[0] == 64 and img.min() == 0
    # A lone minus sign cannot fill 64 px of height: strokes stay at most 4x normal.
    minus = [np.array([[0.0, 0.0], [10.0, 0.05]])]
    with pytest.warns(RenderBoundWarning) as caught:
        flat = render_strokes(minus, height=64, mode="crohme")
    assert any("scale bound" in str(w.message) for w in caught)
    with pytest.warns(RenderBoundWarning, match="stroke size bound"):
        normal = render_strokes(minus, mode="crohme")
    assert flat.shape[0] == 64 and flat.shape[1] <= 4 * normal.shape[1]


def test_bad_arguments():
    with pytest.raises(ValueError, match="mode"):
        render_strokes(strokes(), mode="fancy")
    with pytest.raises(ValueError, match="no stroke points"):
        render_strokes([])
    with pytest.raises(ValueError, match="max_side"):
        render_strokes(strokes(), height=3000, max_side=2000)


# -- augmentation ----------------------------------------------------------------

def test_augmentation_is_deterministic_per_seed():
    a = augment_strokes(strokes(), np.random.default_rng(3))
    b = augment_strokes(strokes(), np.random.default_rng(3))
    c = augment_strokes(strokes(), np.random.default_rng(4))
    assert list(a) == list(strokes())
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    assert any(not np.allclose(a[k], c[k]) for k in a)
    widths = [pick_line_width(np.random.default_rng(s)) for s in range(20)]
    assert widths == [pick_line_width(np.random.default_rng(s)) for s in range(20)]
    assert set(widths) <= set(StrokeAugment().line_widths) and len(set(widths)) > 1


def test_augmentation_is_mild_and_identity_when_switched_off():
    src = strokes()
    off = StrokeAugment(rotate_deg=0, scale=(1, 1), aspect=(1, 1), shear_deg=0, slant_deg=0,
                        jitter=0)
    same = augment_strokes(src, np.random.default_rng(0), off)
    for k in src:
        np.testing.assert_allclose(same[k], src[k])
    moved = augment_strokes(list(src.values()), np.random.default_rng(0))
    assert isinstance(moved, list) and len(moved) == len(src)
    for m, s in zip(moved, src.values(), strict=True):
        assert m.shape == s.shape
        assert np.abs(m - s).max() < 100  # under one symbol height (100 units here)
    img = render_quiet(moved, line_width=pick_line_width(np.random.default_rng(0)))
    assert img.min() == 0


def test_elastic_warp_bends_locally_and_keeps_the_default_stream():
    src = strokes()
    still = StrokeAugment(rotate_deg=0, scale=(1, 1), aspect=(1, 1), shear_deg=0,
                          slant_deg=0, jitter=0)
    warped = augment_strokes(src, np.random.default_rng(1),
                             dataclasses.replace(still, warp=0.1))
    moves = np.concatenate([warped[k] - src[k] for k in src])
    # Every point moves, by different amounts (not a shift), and by under the amplitude's
    # few standard deviations of one symbol height (100 units here).
    assert np.abs(moves).max() < 50 and np.ptp(moves, axis=0).min() > 0.5
    # Smooth: neighbouring points of one stroke move nearly alike.
    for k in src:
        step = np.abs(np.diff(warped[k] - src[k], axis=0)).max()
        assert step < 0.2 * np.abs(np.diff(src[k], axis=0)).max() + 1e-6
    # Off by default, and the draws of the other distortions are unchanged by it.
    a = augment_strokes(src, np.random.default_rng(2))
    b = augment_strokes(src, np.random.default_rng(2), StrokeAugment(warp=0.0))
    for k in src:
        np.testing.assert_array_equal(a[k], b[k])
