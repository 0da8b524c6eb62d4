"""Real TeX rendering (texlens/data/synth/tex.py) and `texlens data render`."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from texlens.cli import app
from texlens.data.synth.tex import FONTS, RenderFailure, render_tex, tex_missing
from texlens.data.synth.tex_dataset import read_formulas

MISSING = tex_missing()
needs_tex = pytest.mark.skipif(MISSING is not None, reason=str(MISSING))
SUM = r"\sum_{i=1}^n \frac{1}{i}"


@needs_tex
def test_every_family_typesets_the_corpus_packages():
    # One symbol each of amssymb, mathrsfs, bm and mathtools: a clash in a family's
    # preamble would fail them all.
    formula = r"\mathbb{R} \lesssim \mathscr{L} + \bm{x} \coloneqq \frac{a}{b}"
    for font in FONTS:
        [img] = render_tex([formula], font=font, dpi=100)
        assert isinstance(img, np.ndarray), f"{font}: {img}"
        assert img.dtype == np.uint8 and img.shape[0] > 5 and img.shape[1] > 30
        # Tight: ink on every border, and both paper and full ink inside.
        assert img[0].any() and img[-1].any() and img[:, 0].any() and img[:, -1].any()
        assert img.max() == 255 and img.min() == 0


@needs_tex
def test_families_draw_different_glyphs():
    imgs = {f: render_tex(["x+y=z"], font=f, dpi=150)[0] for f in ("cm", "times", "euler")}
    assert imgs["cm"].shape != imgs["times"].shape or not np.array_equal(imgs["cm"],
                                                                          imgs["times"])
    assert imgs["cm"].shape != imgs["euler"].shape or not np.array_equal(imgs["cm"],
                                                                          imgs["euler"])


@needs_tex
def test_a_bad_formula_fails_alone():
    good = [r"a^{2}+b^{2}", SUM, r"\sqrt{x}", r"\int_0^1 f(x)\,dx"]
    batch = good[:2] + [r"x \nosuchmacro y", r"\frac{1}{2"] + good[2:]
    out = render_tex(batch, dpi=120)
    assert isinstance(out[2], RenderFailure) and "Undefined control sequence" in out[2].message
    assert isinstance(out[3], RenderFailure) and "brace" in out[3].message
    alone = [render_tex([g], dpi=120)[0] for g in good]
    for got, want in zip(out[:2] + out[4:], alone, strict=True):
        assert isinstance(got, np.ndarray)
        np.testing.assert_array_equal(got, want)


@needs_tex
def test_an_error_at_the_end_of_the_run_does_not_blame_the_last_formula():
    # LaTeX's \aligned without \begin passes the precheck; TeX reports its own error and,
    # at \end{document} after the last formula, its aftermath: not that formula's fault.
    out = render_tex(["x", r"\aligned a & b", "y", "z"])
    assert isinstance(out[1], RenderFailure)
    assert all(isinstance(out[i], np.ndarray) for i in (0, 2, 3)), out


@needs_tex
def test_a_formula_that_hangs_tex_fails_alone():
    out = render_tex(["x", r"\def\loop{\loop}\loop", "y"], timeout=3)
    assert isinstance(out[1], RenderFailure) and "ran past" in out[1].message
    assert isinstance(out[0], np.ndarray) and isinstance(out[2], np.ndarray)


@needs_tex
def test_display_is_taller_than_inline_and_dpi_scales():
    display, inline = render_tex([SUM], display=True)[0], render_tex([SUM], display=False)[0]
    assert display.shape[0] > inline.shape[0] * 1.3
    small, large = render_tex([SUM], dpi=100)[0], render_tex([SUM], dpi=300)[0]
    assert large.shape[0] > small.shape[0] * 2 and large.shape[1] > small.shape[1] * 2


def test_faults_that_would_spill_into_the_next_page_fail_before_tex():
    # None of these reaches latex (there is nothing left to typeset), so no TeX needed.
    out = render_tex([r"\frac{a}{b}}", r"}{", r"\sqrt{x", "  ", r"a $ b", "a\nb",
                      r"\begin{bmatrix} a \end{matrix}", r"\begin{cases} a"])
    assert [o.message for o in out] == [
        "unbalanced braces: '}' without '{'", "unbalanced braces: '}' without '{'",
        "unbalanced braces: '{' without '}'", "empty formula", "'$' inside the formula",
        "line break inside the formula",
        r"\end{matrix} does not close the environment open there",
        r"\begin{cases} is never closed"]
    with pytest.raises(ValueError, match="unknown TeX font family 'comic'"):
        render_tex(["x"], font="comic")


def test_read_formulas_checks_its_input(tmp_path):
    keyed = tmp_path / "k.txt"
    keyed.write_text("a\tx ^ { 2 }\n\nb\t\\frac { 1 } { 2 }\n", encoding="utf-8")
    rows = read_formulas(keyed)
    assert [(r.key, r.caption, r.line) for r in rows] == [
        ("a", "x ^ { 2 }", 1), ("b", "\\frac { 1 } { 2 }", 3)]
    plain = tmp_path / "p.txt"
    plain.write_text("x^2\n\\alpha\n", encoding="utf-8")
    assert [(r.key, r.caption) for r in read_formulas(plain)] == [("1", "x^2"), ("2", "\\alpha")]
    dup = tmp_path / "d.txt"
    dup.write_text("a\tx\nb\ty\na\tz\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"d.txt:3: key 'a' already on line 1"):
        read_formulas(dup)
    mixed = tmp_path / "m.txt"
    mixed.write_text("a\tx\ny\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"m.txt:2: expected 'key<TAB>caption'"):
        read_formulas(mixed)


def _render(tmp_path, name, *extra, dpi="80,160"):
    caps = tmp_path / "caps.txt"
    out = tmp_path / name
    args = ["data", "render", "--captions", str(caps), "--out", str(out), "--seed", "3",
            "--fonts", "cm,times", "--dpi", dpi, *extra]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    return out, res.output


@needs_tex
def test_cli_writes_good_samples_and_names_the_bad_line(tmp_path):
    lines = ["k1\tx ^ { 2 } + 1", "k2\t\\frac { a } { b }", "k3\t\\nosuchmacro x",
             "k4\t\\sum _ { i } i", "k5\t\\sqrt { y"]
    (tmp_path / "caps.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    out, output = _render(tmp_path, "ds")
    assert (out / "caption.txt").read_text(encoding="utf-8").splitlines() == \
        [lines[0], lines[1], lines[3]]
    problems = (out / "problems.txt").read_text(encoding="utf-8").splitlines()
    assert [p.split("\t")[:2] for p in problems] == [
        [f"{tmp_path / 'caps.txt'}:3", "k3"], [f"{tmp_path / 'caps.txt'}:5", "k5"]]
    assert "2 did not typeset" in output
    assert sorted(p.name for p in out.glob("*.png")) == ["k1.png", "k2.png", "k4.png"]
    from PIL import Image
    with Image.open(out / "k2.png") as im:
        img = np.asarray(im)
    assert im.mode == "L" and img[0].min() == 255 and img[:, 0].min() == 255  # paper margins
    assert img.min() < 64  # dark ink


@needs_tex
def test_cli_same_seed_same_bytes_whatever_the_workers(tmp_path):
    caps = [f"s{i}\tx _ {{ {i} }} + \\frac {{ {i} }} {{ y }}" for i in range(10)]
    (tmp_path / "caps.txt").write_text("\n".join(caps) + "\n", encoding="utf-8")
    # One dpi: four chunks (two families, two styles), so each run stays short.
    one, _ = _render(tmp_path, "w1", "--workers", "1", dpi="120")
    two, _ = _render(tmp_path, "w2", "--workers", "2", dpi="120")
    names = sorted(p.name for p in one.iterdir())
    assert len(names) == 12 and names == sorted(p.name for p in two.iterdir())
    for name in names:
        assert (one / name).read_bytes() == (two / name).read_bytes(), name
    other, _ = _render(tmp_path, "s4", "--workers", "1", "--seed", "4", dpi="120")
    assert any((one / n).read_bytes() != (other / n).read_bytes() for n in names
               if n.endswith(".png"))
