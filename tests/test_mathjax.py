"""MathJax rendering family (texlens/data/synth/mathjax.py): node + npm modules in js/."""

import json
import subprocess

import numpy as np
import pytest

from texlens.data.synth.mathjax import MATHJAX_FONTS, SCRIPT, mathjax_missing, render_mathjax
from texlens.data.synth.tex import RenderFailure

MISSING = mathjax_missing()
pytestmark = pytest.mark.skipif(MISSING is not None, reason=f"MathJax unavailable: {MISSING}")


def test_renders_ink_cropped_to_the_formula():
    [img] = render_mathjax([r"\frac{a}{b} + x^{2}"])
    assert isinstance(img, np.ndarray) and img.dtype == np.uint8 and img.ndim == 2
    assert img.max() == 255  # solid ink somewhere, not only anti-aliased edges
    # Tight box: every border row and column carries some ink.
    for edge in (img[0], img[-1], img[:, 0], img[:, -1]):
        assert edge.any()
    # A fraction over a sum is taller than it is thin, and much wider than one glyph.
    assert img.shape[1] > 2 * img.shape[0] / 3


def test_display_sets_limits_above_and_below():
    sum_ = r"\sum_{i=1}^{n} i"
    [display] = render_mathjax([sum_], display=True)
    [inline] = render_mathjax([sum_], display=False)
    assert display.shape[0] > 1.3 * inline.shape[0]
    # Inline puts the limits beside the sign, so the formula is wider.
    assert inline.shape[1] > display.shape[1]


def test_unknown_macro_fails_alone_in_a_batch():
    formulas = [r"x + y", r"\nosuchmacro{x}", r"\alpha^{2}", r"\frac{1}{", "",
                r"\mathscr{L} \bm{v}"]
    out = render_mathjax(formulas)
    assert len(out) == len(formulas)
    assert isinstance(out[1], RenderFailure) and "nosuchmacro" in out[1].message
    assert isinstance(out[3], RenderFailure)  # missing brace
    assert isinstance(out[4], RenderFailure)  # nothing to draw
    for i in (0, 2, 5):
        assert isinstance(out[i], np.ndarray) and out[i].any(), formulas[i]


def test_same_formula_same_pixels_whatever_the_batch():
    alone = render_mathjax([r"\int_0^1 f(x)\,dx"])[0]
    batched = render_mathjax([r"\bad", r"y", r"\int_0^1 f(x)\,dx"])[2]
    assert np.array_equal(alone, batched)


def test_table_rules_are_drawn():
    # MathJax styles \hline from a page stylesheet; the stand-alone SVG must carry it.
    [img] = render_mathjax([r"\begin{array}{c} a + b \\ \hline c \end{array}"])
    assert (img > 128).all(axis=1).any()  # one row of solid ink across the whole width


def test_characters_the_font_lacks_fail_instead_of_vanishing():
    [out] = render_mathjax([r"x + \text{漢}"])
    assert isinstance(out, RenderFailure) and "漢" in out.message


@pytest.mark.parametrize("font", MATHJAX_FONTS)
def test_every_listed_font_renders(font):
    out = render_mathjax([r"\mathbb{R}^{n} \to \mathcal{A}", r"\sqrt{\alpha + \beta}"], font=font)
    assert all(isinstance(img, np.ndarray) and img.any() for img in out)


def test_listed_fonts_are_the_scripts_fonts():
    out = subprocess.run(["node", str(SCRIPT), "--fonts"], capture_output=True, text=True,
                         check=True, cwd=SCRIPT.parent).stdout
    assert tuple(json.loads(out)) == MATHJAX_FONTS


def test_fonts_draw_differently():
    images = [render_mathjax([r"f(x) = \sum_{k} a_k x^k"], font=f)[0] for f in MATHJAX_FONTS]
    assert len({(img.shape, img.tobytes()) for img in images}) == len(MATHJAX_FONTS)


def test_higher_dpi_gives_a_proportionally_larger_image():
    formula = r"e^{i\pi} + 1 = 0"
    [low] = render_mathjax([formula], dpi=100)
    [high] = render_mathjax([formula], dpi=300)
    ratio = high.shape[1] / low.shape[1]
    assert 2.7 < ratio < 3.3, (low.shape, high.shape)


def test_bad_arguments_are_errors():
    with pytest.raises(ValueError, match="unknown MathJax font"):
        render_mathjax(["x"], font="comic")
    with pytest.raises(ValueError, match="dpi"):
        render_mathjax(["x"], dpi=0)
    assert render_mathjax([]) == []
