"""Synthetic handwriting: symbol library, layout, dataset writer, CLI.

Every symbol here is an invented shape (zigzags, lines, a hand-made radical): the
CROHME strokes are research-only and stay out of the tests. Only the last test
reads the real training InkML, and skips when this machine does not have it.
"""

from __future__ import annotations

import itertools
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from inkml_samples import make_inkml
from PIL import Image
from typer.testing import CliRunner

from texlens.cli import app
from texlens.data.crohme import iter_inkml
from texlens.data.handwriting.dataset import synth_hand_dataset
from texlens.data.handwriting.glyphs import missing_tokens
from texlens.data.handwriting.labels import INK_FREE, label_token
from texlens.data.handwriting.layout import MissingSymbolError, compose
from texlens.data.handwriting.parse import Fenced, LayoutError, Scripts, parse
from texlens.data.handwriting.symbols import Glyph, SymbolLibrary, build_library
from texlens.data.handwriting.writer import HandStyle
from texlens.data.strokes import render_strokes
from texlens.data.synth.generator import SYMBOLS, FormulaGenerator

runner = CliRunner()
REAL = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "crohme"
UPRIGHT = HandStyle(slant_deg=(0.0, 0.0), turn_deg=0.0)  # layout geometry without the lean


def tok(caption: str) -> list[str]:
    return caption.split()


# -- an invented library ---------------------------------------------------------------

def _zigzag(w: float, h: float) -> list[np.ndarray]:
    return [np.array([[0, 0], [w / 3, h], [2 * w / 3, 0], [w, h]], np.float32)]


def _line(w: float) -> list[np.ndarray]:
    return [np.array([[0, 0], [w / 2, 0.01], [w, 0]], np.float32)]


def _shape(token: str) -> list[np.ndarray]:
    """A made-up glyph with a plausible size for ``token`` (unit: a typical symbol)."""
    if token in ("-", "\\frac"):
        return _line(0.6 if token == "-" else 2.0)
    if token == ".":
        return [np.zeros((1, 2), np.float32)]
    if token == "=":
        return [*_line(0.6), *(s + [0, 0.3] for s in _line(0.6))]
    if token == "\\sqrt":
        return [np.array([[0, 0.6], [0.15, 0.5], [0.35, 1.0], [0.6, 0], [1.6, 0]], np.float32)]
    if token in ("(", ")", "[", "]", "\\{", "\\}", "|"):
        return _zigzag(0.3, 1.4)
    if token in ("\\sum", "\\int"):
        return _zigzag(1.0, 1.4) if token == "\\sum" else _zigzag(0.5, 1.8)
    if token in (",", "'", "\\prime"):
        return _zigzag(0.1, 0.3)
    if token.startswith("\\") and token[1:] in ("sin", "cos", "tan", "log", "lim"):
        return _zigzag(1.5, 1.0)
    if token in "acemnorsuvwxz+<>":
        return _zigzag(0.6, 0.7)
    return _zigzag(0.6, 1.0)


def tiny_library(without: tuple[str, ...] = ("'", "\\ldots", "\\cdots", "\\cdot")
                 ) -> SymbolLibrary:
    """Two samples of every inked token but ``without`` (those drawn from substitutes)."""
    glyphs = {}
    for t in SYMBOLS:
        if t in INK_FREE or t in without:
            continue
        glyphs[t] = [Glyph(tuple(s * k for s in _shape(t)), 0) for k in (1.0, 1.1)]
    return SymbolLibrary(glyphs, ["invented"])


@pytest.fixture(scope="module")
def library() -> SymbolLibrary:
    return tiny_library()


def boxes(tokens: list[str], library: SymbolLibrary, seed: int,
          style: HandStyle | None = UPRIGHT) -> dict[str, list[tuple[float, ...]]]:
    drawing = compose(tokens, library, np.random.default_rng(seed), style)
    out: dict[str, list[tuple[float, ...]]] = {}
    for token, b in drawing.symbols:
        out.setdefault(token, []).append(b)
    return out


def centre_y(b) -> float:
    return (b[1] + b[3]) / 2


# -- library from InkML ----------------------------------------------------------------

# One formula in unit squares: x, <, ., a "sin" word, a minus, a label outside the dictionary;
# then x over a bar over 2 (a fraction).
STROKES = [
    [(0.0, 0.0), (1.0, 1.0)], [(1.0, 0.0), (0.0, 1.0)],  # x, 1 high
    [(1.6, 0.2), (2.2, 0.5), (1.6, 0.8)],  # <, 0.6 high
    [(2.5, 0.95), (2.55, 1.0)],  # ., 0.05 high
    [(3.0, 0.0), (3.5, 1.0), (4.0, 0.5)],  # sin
    [(4.5, 0.5), (5.0, 0.5)],  # minus
    [(5.5, 0.0), (5.5, 1.0)],  # "foo"
    [(6.0, -1.5), (6.8, -0.5)], [(6.8, -1.5), (6.0, -0.5)],  # x above the bar
    [(5.8, 0.0), (7.0, 0.0)],  # the bar
    [(6.1, 0.5), (6.7, 0.5), (6.1, 1.5)],  # 2 below it
]
SEGMENTS = [("x", [0, 1]), ("\\lt", [2]), (".", [3]), ("sin", [4]), ("-", [5]), ("foo", [6]),
            ("x", [7, 8]), ("-", [9]), ("2", [10])]


def test_labels_map_to_caption_tokens():
    assert label_token("\\lt") == "<" and label_token("\\gt") == ">"
    assert label_token("COMMA") == "," and label_token(",") == ","
    assert label_token("sin") == "\\sin" and label_token("\\lim") == "\\lim"
    assert label_token("{") == "\\{" and label_token("\\}") == "\\}"
    assert label_token("x") == "x" and label_token("\\alpha") == "\\alpha"
    assert label_token("foo") is None and label_token("^") is None


def test_library_keeps_relative_sizes_whatever_the_units(tmp_path):
    files = [(f"src{k}/f{k}.inkml",
              make_inkml(STROKES, SEGMENTS, scale=scale, integers=scale > 1).encode())
             for k, scale in enumerate((100.0, 0.0137))]
    files.append(("src0/bad.inkml", b"<ink>"))
    lib, rep = build_library(files)
    assert rep.files == 2 and len(rep.skipped) == 1 and "bad.inkml" in rep.skipped[0]
    assert rep.ignored_labels == {"foo": 2}
    assert lib.counts() == {"x": 4, "<": 2, ".": 2, "\\sin": 2, "-": 2, "\\frac": 2, "2": 2}
    assert lib.sources == ["src0", "src1"]
    # Same shapes in units 7300x apart: the same normalised glyphs.
    by_source = {s: [g for g in lib.glyphs["x"] if g.source == s] for s in (0, 1)}
    np.testing.assert_allclose(by_source[0][0].size, by_source[1][0].size, rtol=1e-3)
    x_h, lt_h, dot_h = (lib.glyphs[t][0].size[1] for t in ("x", "<", "."))
    assert lt_h / x_h == pytest.approx(0.6, rel=1e-3)
    assert dot_h / x_h == pytest.approx(0.05, rel=1e-2)
    for g in lib.glyphs["x"]:  # bounding box at the origin
        lo = np.concatenate(g.strokes).min(axis=0)
        np.testing.assert_allclose(lo, 0.0, atol=1e-6)
    # The bar with ink above and below is a fraction bar, the lone one a minus.
    assert lib.glyphs["\\frac"][0].size[0] > lib.glyphs["-"][0].size[0]
    lib.save(tmp_path / "lib.npz")
    back = SymbolLibrary.load(tmp_path / "lib.npz")
    assert back.counts() == lib.counts() and back.sources == lib.sources
    for t in lib.glyphs:
        for a, b in zip(lib.glyphs[t], back.glyphs[t], strict=True):
            assert a.source == b.source
            for sa, sb in zip(a.strokes, b.strokes, strict=True):
                np.testing.assert_array_equal(sa, sb)


def test_loading_a_wrong_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "x.npz"
    bad.write_bytes(b"not a library")
    with pytest.raises(ValueError, match="not a symbol library"):
        SymbolLibrary.load(bad)


# -- layout ----------------------------------------------------------------------------

def test_parse_tree_and_errors():
    tree = parse(tok("( a + b ) ^ { 2 }"))
    (node,) = tree.items
    assert isinstance(node, Scripts) and isinstance(node.base, Fenced)
    assert parse(tok("\\sum \\limits _ { i } x")).items[0].limits
    for bad in ("\\frac { a }", "x ^", "{ x", "x }", "\\sqrt [ 3 { x }"):
        with pytest.raises(LayoutError):
            parse(bad.split())


@pytest.mark.parametrize("seed", range(4))
def test_superscript_is_higher_and_smaller_subscript_lower(library, seed):
    b = boxes(tok("x ^ { x } + y _ { y }"), library, seed)
    base, sup = b["x"]
    assert centre_y(sup) < centre_y(base) and sup[3] < centre_y(base)
    assert sup[3] - sup[1] < 0.8 * (base[3] - base[1])
    assert sup[0] > base[2] - 1e-9  # to the right of its base
    ybase, sub = b["y"]
    assert centre_y(sub) > centre_y(ybase) and sub[3] - sub[1] < 0.8 * (ybase[3] - ybase[1])


@pytest.mark.parametrize("seed", range(4))
def test_fraction_stacks_over_a_bar_that_spans_both(library, seed):
    b = boxes(tok("\\frac { a + b } { 2 } = 1"), library, seed)
    (bar,) = b["\\frac"]
    num = [b["a"][0], b["+"][0], b["b"][0]]
    (den,) = b["2"]
    assert all(n[3] < bar[1] for n in num) and den[1] > bar[3]
    assert bar[0] <= min(n[0] for n in [*num, den]) and bar[2] >= max(n[2] for n in [*num, den])
    assert b["="][0][0] > bar[2]  # what follows comes after the whole fraction


@pytest.mark.parametrize("seed", range(4))
def test_root_encloses_its_body_and_index_sits_left(library, seed):
    b = boxes(tok("\\sqrt [ 3 ] { x + 1 }"), library, seed)
    (rad,) = b["\\sqrt"]
    body = [b["x"][0], b["+"][0], b["1"][0]]
    assert all(rad[0] < s[0] and s[2] <= rad[2] and rad[1] < s[1] for s in body)
    (index,) = b["3"]
    assert index[2] < min(s[0] for s in body) and index[3] < rad[3]


@pytest.mark.parametrize("seed", range(4))
def test_big_operator_bounds(library, seed):
    b = boxes(tok("\\sum _ { i = 1 } ^ { n } x + \\int _ { 0 } ^ { 1 } y d y"), library,
              seed)
    (op,) = b["\\sum"]
    below = [b["i"][0], b["="][0], b["1"][0]]
    assert all(s[1] > op[3] for s in below) and b["n"][0][3] < op[1]
    assert op[0] <= (b["n"][0][0] + b["n"][0][2]) / 2 <= op[2]
    (integral,) = b["\\int"]
    low, high = b["0"][0], b["1"][1]  # beside the integral, the upper bound above the lower
    assert high[0] > (integral[0] + integral[2]) / 2 and centre_y(high) < centre_y(low)
    assert b["x"][0][0] > op[2]


def test_structure_leaves_no_ink_and_fences_grow(library):
    b = boxes(tok("\\lim \\limits _ { n \\rightarrow \\infty } \\{ ( \\frac { 1 } { n } ) \\}"),
              library, 0)
    assert not set(b) & INK_FREE and "\\{" in b and "\\}" in b
    paren, num, den = b["("][0], b["1"][0], b["n"][1]
    assert paren[3] - paren[1] >= 0.9 * (den[3] - num[1])  # grown to the fraction's height
    assert b["n"][0][1] > b["\\lim"][0][3]  # \lim's bound below it


def test_substitutes_and_missing_tokens(library):
    b = boxes(tok("f ' , a \\cdot b \\cdots c \\ldots"), library, 0)
    assert {"'", "\\cdot", "\\cdots", "\\ldots"} <= set(b)  # drawn with \prime and "."
    small = tiny_library(without=("x", "\\Pi", "'", "\\prime"))
    assert missing_tokens(tok("x + \\Pi ' { } ^ _"), small) == ["'", "\\Pi", "x"]
    with pytest.raises(MissingSymbolError) as e:
        compose(tok("y + x"), small, np.random.default_rng(0))
    assert e.value.tokens == ["x"]


def test_same_seed_same_strokes_slant_changes_them(library):
    toks = tok("\\frac { x ^ { 2 } } { \\sqrt { y } } - ( a + b )")
    one, two = (compose(toks, library, np.random.default_rng(5)) for _ in range(2))
    for a, b in zip(one.strokes, two.strokes, strict=True):
        np.testing.assert_array_equal(a, b)
    other = compose(toks, library, np.random.default_rng(6))
    assert not all(np.array_equal(a, b) for a, b in zip(one.strokes, other.strokes,
                                                          strict=True))
    for mode in ("default", "crohme"):
        img = render_strokes(one.strokes, mode=mode, strict=True)
        assert img.dtype == np.uint8 and img.shape[0] > 20


# -- dataset writer and CLI ------------------------------------------------------------

def test_dataset_is_deterministic_across_workers(library, tmp_path, hash_tree):
    a = synth_hand_dataset(tmp_path / "a", 6, 3, library, workers=1)
    b = synth_hand_dataset(tmp_path / "b", 6, 3, library, workers=2)
    assert a.written == b.written == 6 and not a.failed
    assert hash_tree(tmp_path / "a") == hash_tree(tmp_path / "b")
    synth_hand_dataset(tmp_path / "c", 6, 4, library, mode="default")
    assert hash_tree(tmp_path / "c") != hash_tree(tmp_path / "a")
    lines = (tmp_path / "a" / "caption.txt").read_text().splitlines()
    assert [ln.split("\t")[0] for ln in lines] == [f"h3_{i:07d}" for i in range(6)]
    img = np.asarray(Image.open(tmp_path / "a" / "images" / "h3_0000000.png"))
    assert set(np.unique(img)) <= {0, 255}  # crohme mode: binary


def test_formulas_with_missing_tokens_are_redrawn_or_skipped(tmp_path):
    small = tiny_library(without=("x", "'", "\\ldots", "\\cdots", "\\cdot"))
    rep = synth_hand_dataset(tmp_path / "gen", 8, 1, small)
    assert rep.written == 8 and rep.redrawn > 0
    for line in (tmp_path / "gen" / "caption.txt").read_text().splitlines():
        assert "x" not in line.split("\t")[1].split()
    rows = [("k1", tok("y + 1")), ("k2", tok("x + 1")),
            ("k3", tok("\\frac { a } { b }"))]
    rep = synth_hand_dataset(tmp_path / "cap", 4, 0, small, captions=rows)
    assert rep.skipped == [("k2", ["x"])] and rep.written == 4
    written = {ln.split("\t")[1] for ln in (tmp_path / "cap" / "caption.txt").read_text()
               .splitlines()}
    assert written == {"y + 1", "\\frac { a } { b }"}


def test_excluded_expressions_are_never_written(library, tmp_path):
    first = synth_hand_dataset(tmp_path / "a", 6, 5, library)
    drawn = [ln.split("\t")[1] for ln in (tmp_path / "a" / "caption.txt").read_text()
             .splitlines()]
    # Held-out expressions, written with other spacing: the rule collapses whitespace.
    banned = ["  ".join(e.split()) for e in drawn[:3]]
    rep = synth_hand_dataset(tmp_path / "b", 6, 5, library, exclude=banned)
    again = [ln.split("\t")[1] for ln in (tmp_path / "b" / "caption.txt").read_text()
             .splitlines()]
    assert rep.written == 6 and rep.redrawn > first.redrawn
    assert not set(again) & set(drawn[:3])
    assert again[3:] == drawn[3:]  # the other samples keep their formulas
    rows = [("k1", tok("y + 1")), ("k2", tok("a + b"))]
    rep = synth_hand_dataset(tmp_path / "c", 2, 0, library, captions=rows,
                             exclude=["a  + b"])
    assert rep.excluded == ["k2"] and rep.written == 2
    assert {ln.split("\t")[1] for ln in (tmp_path / "c" / "caption.txt").read_text()
            .splitlines()} == {"y + 1"}
    with pytest.raises(ValueError, match="not excluded"):
        synth_hand_dataset(tmp_path / "d", 2, 0, library, captions=rows[1:],
                           exclude=["a + b"])


def test_short_formulas_are_one_to_three_tokens_and_honour_exclusions(library, tmp_path):
    gen = FormulaGenerator(seed=2)
    drawn = [gen.short() for _ in range(2000)]
    assert {len(t) for t in drawn} == {1, 2, 3}
    assert sum(len(t) == 1 for t in drawn) > 500  # lone symbols are the hard case
    rep = synth_hand_dataset(tmp_path / "s", 12, 7, library, short=True,
                             exclude=["x", "y", "1"])
    rows = [ln.split("\t")[1].split() for ln in (tmp_path / "s" / "caption.txt")
            .read_text().splitlines()]
    assert rep.written == 12 and all(1 <= len(t) <= 3 for t in rows)
    assert not {" ".join(t) for t in rows} & {"x", "y", "1"}


def _ink_dir(root: Path) -> Path:
    """Three invented InkML files in a source folder."""
    (root / "inv").mkdir(parents=True)
    for k, scale in enumerate((100.0, 30.0, 0.02)):
        (root / "inv" / f"f{k}.inkml").write_text(
            make_inkml(STROKES, SEGMENTS, scale=scale, integers=scale > 1), encoding="utf-8")
    return root


def test_cli_symbols_then_synth_hand(tmp_path):
    lib_path = tmp_path / "lib" / "symbols.npz"
    res = runner.invoke(app, ["data", "symbols", "--inkml", str(_ink_dir(tmp_path / "ink")),
                              "--out", str(lib_path)])
    assert res.exit_code == 0, res.output
    assert "\\frac 3" in res.output and "x 6" in res.output and "\\Pi 0" in res.output
    assert "tokens with no sample:" in res.output and "'foo' x3" in res.output
    assert "wrote 24 samples of 7 of 106 inked tokens" in res.output
    caps = tmp_path / "caps.txt"
    caps.write_text("a\tx < 2\nb\tx - 2 \\sin x\nc\ty = 2\n", encoding="utf-8")
    out = tmp_path / "hand"
    res = runner.invoke(app, ["data", "synth-hand", "--n", "3", "--out", str(out),
                              "--symbols", str(lib_path), "--captions", str(caps),
                              "--mode", "default", "--seed", "2"])
    assert res.exit_code == 0, res.output
    assert "skipped caption: c: no sample for = y" in res.output
    assert "wrote 3 images" in res.output and "1 captions skipped" in res.output
    assert (out / "skipped.txt").read_text() == "c\t= y\n"
    assert len(list((out / "images").glob("*.png"))) == 3
    res = runner.invoke(app, ["data", "synth-hand", "--n", "3", "--out", str(tmp_path / "ex"),
                              "--symbols", str(lib_path), "--captions", str(caps),
                              "--exclude", str(caps), "--exclude", str(caps)])
    assert res.exit_code == 2 and "not excluded" in res.output  # every caption is banned
    res = runner.invoke(app, ["data", "synth-hand", "--n", "1", "--out", str(out),
                              "--symbols", str(lib_path), "--exclude", str(tmp_path / "no.txt")])
    assert res.exit_code == 2 and "no.txt: no such caption file" in res.output
    res = runner.invoke(app, ["data", "synth-hand", "--n", "1", "--out", str(out),
                              "--symbols", str(tmp_path / "nope.npz")])
    assert res.exit_code == 2 and "nope.npz" in res.output
    res = runner.invoke(app, ["data", "synth-hand", "--n", "1", "--out", str(out),
                              "--symbols", str(lib_path), "--captions", str(caps), "--short"])
    assert res.exit_code == 2 and "--short" in res.output


# -- the real symbols, when this machine has them --------------------------------------

@pytest.mark.skipif(not (REAL / "train_inkml.tar.gz").is_file(),
                    reason=f"CROHME data not found at {REAL} (research-only; not shipped)")
def test_real_symbols_compose_and_render():
    files = itertools.islice(iter_inkml(REAL / "train_inkml.tar.gz"), 100)
    lib, rep = build_library(files)
    assert rep.files == 100 and len(lib.glyphs) >= 30 and rep.glyphs > 300
    assert 0.3 < lib.x_height < 1.5  # in typical symbol heights
    gen, rng, done = FormulaGenerator(seed=0), np.random.default_rng(0), 0
    while done < 5:
        toks = gen.generate()
        if missing_tokens(toks, lib):
            continue
        drawing = compose(toks, lib, rng)
        roots_with_index = sum(toks[k:k + 2] == ["\\sqrt", "["] for k in range(len(toks)))
        inked = Counter(t for t in toks if t not in INK_FREE)
        inked -= Counter({"[": roots_with_index, "]": roots_with_index})
        assert Counter(t for t, _ in drawing.symbols) == inked
        for mode in ("default", "crohme"):
            img = render_strokes(drawing.strokes, mode=mode, strict=True)
            assert 20 < img.shape[0] < 2000 and 20 < img.shape[1] < 2000
        done += 1
