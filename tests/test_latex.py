"""texlens.latex: the canonical LaTeX normaliser."""

from __future__ import annotations

import random
import shutil
import subprocess
from pathlib import Path

import pytest

from texlens.latex import (
    LatexError,
    bracket_end,
    check_braces,
    group_end,
    lex,
    normalize,
    split_args,
    to_latex,
)

CORPUS = Path(__file__).resolve().parents[2] / "shared/data/formulas"


def n(latex: str) -> str:
    return " ".join(normalize(latex))


@pytest.mark.parametrize("latex, expected", [
    # scripts: always braced, subscript first; primes are the superscript TeX makes
    ("x^2", "x ^ { 2 }"),
    ("x^2_i", "x _ { i } ^ { 2 }"),
    ("x^{y^2}", "x ^ { y ^ { 2 } }"),
    ("{x}^2", "x ^ { 2 }"),
    ("{}^{14}C", "{ } ^ { 1 4 } C"),
    ("x_2^{}", "x _ { 2 } ^ { }"),
    ("f'^2", "f ^ { \\prime 2 }"),
    ("f''", "f ^ { \\prime \\prime }"),
    ("f'_i", "f _ { i } ^ { \\prime }"),
    ("f'^{ab}", "f ^ { \\prime a b }"),
    ("f'^{a+}", "f ^ { \\prime { a + } }"),
    ("x^{\\prime}", "x ^ { \\prime }"),
    ("\\sum\\limits_{i=1}^n", "\\sum \\limits _ { i = 1 } ^ { n }"),
    ("x \\sp 2 \\sb 3", "x _ { 3 } ^ { 2 }"),
    # arguments braced, optional ones in [ ]
    ("\\frac12", "\\frac { 1 } { 2 }"),
    ("\\frac\\alpha\\beta", "\\frac { \\alpha } { \\beta }"),
    ("\\sqrt[3]{x}", "\\sqrt [ 3 ] { x }"),
    ("\\hat x", "\\hat { x }"),
    ("\\mathbb Q", "\\mathbb { Q }"),
    ("\\operatorname*{lim}_{x\\to0}", "\\operatorname* { l i m } _ { x \\rightarrow 0 }"),
    # one spelling of a glyph: LaTeX's own operator names, \ast, \not=
    ("\\operatorname{ln}^2 x", "\\ln ^ { 2 } x"),
    ("\\operatorname{cosh}", "\\cosh"),
    ("\\operatorname{Coker} + \\operatorname*{cos} + \\operatorname{lim}",
     "\\operatorname { C o k e r } + \\operatorname* { c o s } + \\operatorname { l i m }"),
    ("a^\\ast \\not= b \\not\\in c \\not =^2", "a ^ { * } \\neq b \\not \\in c \\neq ^ { 2 }"),
    ("\\xrightarrow[a]{f}", "\\xrightarrow [ a ] { f }"),
    # a ] inside an optional argument keeps its braces (LaTeX ends it at the first ])
    ("\\sqrt[{]}]{x}", "\\sqrt [ { ] } ] { x }"),
    # \text{ } is a space; an empty text argument is the one token {}
    ("\\text{ }M", "\\text { ~ } M"),
    ("\\text{}M", "\\text {} M"),
    ("\\sqrt[{[a]}]{x}", "\\sqrt [ { [ a ] } ] { x }"),
    # \dag is {\dagger} in math: an Ord atom, not the Bin \dagger
    ("a \\dag b", "a { \\dagger } b"),
    ("x^\\dag", "x ^ { \\dagger }"),
    # old font switches, infix fractions
    ("{\\rm abc}", "\\mathrm { a b c }"),
    ("{\\rm d}x", "\\mathrm { d } x"),
    ("{\\bf h} \\cdot {\\cal S}_{eff}", "\\mathbf { h } \\cdot \\mathcal { S } _ { e f f }"),
    ("{a \\rm b \\over c}", "\\frac { a \\mathrm { b } } { \\mathrm { c } }"),
    ("a \\over b", "\\frac { a } { b }"),
    ("1 + {a \\over b}", "1 + \\frac { a } { b }"),
    ("n \\choose k", "\\binom { n } { k }"),
    ("a \\atop b", "\\genfrac {} {} { 0pt } {} { a } { b }"),
    ("\\genfrac(){0pt}{1}{a}{b}", "\\genfrac { ( } { ) } { 0pt } { 1 } { a } { b }"),
    ("\\bm{x} \\Bbb R", "\\boldsymbol { x } \\mathbb { R }"),
    # delimiters and sizes
    ("\\left( x \\right.", "\\left ( x \\right ."),
    ("\\left\\lbrace a \\middle| b \\right\\rbrace^2",
     "\\left \\{ a \\middle | b \\right \\} ^ { 2 }"),
    ("\\left( a \\over b \\right)", "\\left ( \\frac { a } { b } \\right )"),
    ("\\Bigl( x \\bigr]", "\\Bigl ( x \\bigr ]"),
    # environments
    ("\\begin{pmatrix} a & b \\\\ c & d \\end{pmatrix}",
     "\\begin{pmatrix} a & b \\\\ c & d \\end{pmatrix}"),
    ("\\begin{array}{c|cc} 1 & 2 & 3 \\\\ \\hline x & y & z \\end{array}",
     "\\begin{array} { c | c c } 1 & 2 & 3 \\\\ \\hline x & y & z \\end{array}"),
    ("\\begin{cases} 1 & \\text{if } x>0 \\\\ 0 & \\text{else}\\end{cases}",
     "\\begin{cases} 1 & \\text { i f ~ } x > 0 \\\\ 0 & \\text { e l s e } \\end{cases}"),
    ("\\begin{matrix} a \\over b & c \\end{matrix}",
     "\\begin{matrix} \\frac { a } { b } & c \\end{matrix}"),
    ("\\begin{align*} a &= b \\\\ c &= d\\end{align*}",
     "\\begin{aligned} a & = b \\\\ c & = d \\end{aligned}"),
    ("\\begin{equation*} x \\label{eq:1} \\nonumber \\end{equation*}", "x"),
    # a position option joins its \\begin token; other [..] after \\begin{aligned} is content
    ("\\begin{aligned}[t] a &= b \\end{aligned}", "\\begin{aligned}[t] a & = b \\end{aligned}"),
    ("\\begin{aligned}[y] &= b \\end{aligned}", "\\begin{aligned} [ y ] & = b \\end{aligned}"),
    ("\\begin{array}[b]{c} a \\end{array}", "\\begin{array}[b] { c } a \\end{array}"),
    ("\\begin{alignedat}{2} a &= b & c &= d \\end{alignedat}",
     "\\begin{alignedat} { 2 } a & = b & c & = d \\end{alignedat}"),
    # spacing is kept; dimensions are one token; \ is ~ without its {} (an Ord atom)
    ("a\\,b\\;c\\quad d\\ e~f", "a \\, b \\; c \\quad d \\nobreakspace e ~ f"),
    ("x = \\ - 1", "x = \\nobreakspace - 1"),
    ("\\hspace{1 pt} \\mspace{0mu}", "\\hspace { 1pt } \\mspace { 0mu }"),
    # text: one token per character, spaces as ~
    ("\\text{if } x", "\\text { i f ~ } x"),
    ("\\mbox{a  b}", "\\text { a ~ b }"),
    ("x_{\\mbox{a}}", "x _ { \\mbox { a } }"),  # \mbox does not shrink in a script
    ("\\textrm{Var}(X)", "\\text { V a r } ( X )"),
    ("\\text{for $x^2$}", "\\text { f o r ~ $ x ^ { 2 } $ }"),
    # aliases
    ("a \\le b \\ne c \\to d \\gets e", "a \\leq b \\neq c \\rightarrow d \\leftarrow e"),
    ("\\lbrace \\vert \\Vert \\lbrack \\rbrack \\rbrace", "\\{ | \\| [ ] \\}"),
    ("\\land \\lor \\lnot \\lt \\gt", "\\wedge \\vee \\neg < >"),
    ("a\\thinspace b \\medspace c \\> d \\thickspace e", "a \\, b \\: c \\: d \\; e"),
    ("\\dfrac{a}{b} \\iff c", "\\dfrac { a } { b } \\iff c"),  # these differ on the page
    # redundant braces
    ("{x}", "x"),
    ("{\\alpha} + {2}", "\\alpha + 2"),
    ("{{a+b}}", "a + b"),
    ("c{{a+b}}", "c a + b"),  # Ords at both ends: spaced the same without the braces
    ("x = {\\vec L_S} + 1", "x = \\vec { L } _ { S } + 1"),
    ("a {b \\, c^2} d", "a b \\, c ^ { 2 } d"),
    ("x {a+} y", "x { a + } y"),  # a Bin at the end: the group changes the spacing
    ("x {\\sum_i y} z", "x { \\sum _ { i } y } z"),  # an Op at the start
    ("x {\\left( y \\right)} z", "x { \\left ( y \\right ) } z"),  # an Inner atom
    ("x {\\scriptstyle a b} z", "x { \\scriptstyle a b } z"),  # a switch up to the brace
    ("x {a b}' z", "x { a b } ^ { \\prime } z"),  # the prime is the group's
    ("x^{a b}", "x ^ { a b }"),  # an argument keeps its braces
    ("x {\\vert a} y", "x | a y"),  # \\vert is the character |, an Ord
    ("\\frac{{a+b}}{c}", "\\frac { a + b } { c }"),
    ("{\\mathbf{x}}_i", "\\mathbf { x } _ { i }"),
    ("1{,}5 + {+}", "1 { , } 5 + { + }"),
    ("{\\hat x}^2", "{ \\hat { x } } ^ { 2 }"),
    ("{x^2}^3", "{ x ^ { 2 } } ^ { 3 }"),
    ("\\foo{x}{y}", "\\foo { x } { y }"),  # unknown macro: its groups may be arguments
    # wrappers
    ("$x$", "x"),
    ("\\[ x \\]", "x"),
    ("$$ {\\displaystyle a} $$", "a"),
])
def test_normalize(latex: str, expected: str) -> None:
    assert n(latex) == expected
    assert n(expected) == expected  # canonical form is a fixed point


@pytest.mark.parametrize("latex, message", [
    ("\\frac{a}", "frac"),
    ("{a", "expecting '}'"),
    ("a}", "closing brace"),
    ("\\begin{pmatrix} a \\end{bmatrix}", "bmatrix"),
    ("\\newcommand{\\x}{y}", "\\newcommand"),
    ("\\def\\x{y}", "\\def"),
    ("\\left( x", "\\left without \\right"),
    ("x \\right)", "\\right without \\left"),
    ("x^", "missing"),
    ("x^2^3", "double superscript"),
    ("x_a_b", "double subscript"),
    ("x^2'", "prime after ^"),
    ("\\boldmath x", "\\boldmath"),
    ("\\vspace{1pt}", "\\vspace"),
    ("a & b", "outside an alignment"),
    ("a \\over b \\over c", "ambiguous"),
    ("\\begin{tabular}{c} a \\end{tabular}", "tabular"),
    ("\\frac\\sqrt2 3", "unbraced argument"),
    ("\\left\\alpha x \\right)", "delimiter"),
    ("\\sqrt[[a]]{x}", "first ']'"),
    ("", "empty"),
])
def test_errors(latex: str, message: str) -> None:
    with pytest.raises(LatexError, match=None) as info:
        normalize(latex)
    assert message in str(info.value)


def test_tokens_have_no_spaces() -> None:
    toks = normalize("\\text{a b} \\hspace{ 2 em } \\begin{array}{ p{2cm} c } x & y \\end{array}")
    assert all(t and " " not in t for t in toks)
    assert "2em" in toks and "2cm" in toks


def test_to_latex_joins_text_arguments() -> None:
    toks = normalize("\\text{if } x \\textbf{e.g.\\ \\S 3}")
    assert to_latex(toks) == "\\text {if~} x \\textbf {e.g.~\\S3}"
    assert normalize(to_latex(toks)) == toks
    assert normalize(" ".join(toks)) == toks


# -- token-list helpers (shared by tokens, crohme_truth, synth.render, handwriting.parse) --

def _t(caption: str) -> list[str]:
    return caption.split()


def test_lex_splits_like_tex() -> None:
    assert lex("\\frac12+\\alpha_i\\,\\{x\\}\\ y") == [
        "\\frac", "1", "2", "+", "\\alpha", "_", "i", "\\,", "\\{", "x", "\\}", "\\ ", "y"]
    assert lex("a\n\\\\ b") == ["a", "\\\\", "b"]


def test_group_and_bracket_ends() -> None:
    toks = _t("{ a { b } } c")
    assert group_end(toks, 0) == 6 and group_end(toks, 2) == 5
    with pytest.raises(LatexError, match="without '}'"):
        group_end(_t("{ a { b }"), 0)
    # LaTeX ends an optional argument at the first ] outside braces
    assert bracket_end(_t("[ { ] } ] x"), 0) == 5
    with pytest.raises(LatexError, match="unclosed"):
        bracket_end(_t("[ 3 x"), 0)
    check_braces(_t("{ a } { }"))
    for bad in ("} {", "{ a", "a }"):
        with pytest.raises(LatexError, match="unbalanced"):
            check_braces(_t(bad))


def test_split_args() -> None:
    toks = _t("\\sqrt [ 3 ] { x + 1 } y")
    assert split_args(toks, 1, "om", "\\sqrt") == ([["3"], ["x", "+", "1"]], 9)
    assert split_args(_t("x 2 y"), 0, "om", "\\sqrt") == ([None, ["x"]], 1)
    # an unbraced nested command takes its arguments along only when asked to
    toks = _t("\\frac 1 2 y")
    assert split_args(toks, 0, "m", "^", nested={"\\frac": "mm"}) == ([toks[:3]], 3)
    assert split_args(toks, 0, "m", "^") == ([["\\frac"]], 1)
    for bad in ("", "}", "^ 2", "& x"):
        with pytest.raises(LatexError, match="\\^ is missing an argument"):
            split_args(_t(bad), 0, "m", "^")


def _corpus_lines(k: int) -> list[str]:
    if not CORPUS.is_dir():
        pytest.skip(f"formula corpus not found at {CORPUS}")
    rng = random.Random(0)
    lines = []
    for path in sorted(CORPUS.glob("books/*.txt")) + [CORPUS / "im2latex100k-val.txt"]:
        rows = [x for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]
        lines += rng.sample(rows, min(k, len(rows)))
    return lines


def test_idempotent_on_corpus() -> None:
    done = 0
    for line in _corpus_lines(40):
        try:
            toks = normalize(line)
        except LatexError:
            continue
        assert normalize(" ".join(toks)) == toks, line
        assert normalize(to_latex(toks)) == toks, line
        done += 1
    assert done >= 300


@pytest.mark.skipif(shutil.which("latex") is None or shutil.which("dvipng") is None,
                    reason="needs TeX (latex) and dvipng")
def test_typesets_like_the_input(tmp_path: Path) -> None:
    """Input and to_latex(normalize(input)) give the same pixels."""
    np = pytest.importorskip("numpy")
    from PIL import Image

    pairs = [("{\\rm d}x + {n\\choose k} + a\\over b", None), ("f'^2_i + \\frac12", None),
             ("\\left\\lbrace x \\middle| \\text{if } x \\le 1\\right\\rbrace", None),
             ("\\begin{bmatrix}1\\\\2\\end{bmatrix} {x}^2 \\hat x", None),
             ("2{\\frac12}{\\mathbf{x}}_i", None),
             # ~ is \nobreakspace{}: its {} would make the minus binary and add a thin
             # space before \left( and \sum
             ("x = \\ - 1 \\ , \\ \\left( a \\right) :=\\ \\sum b \\ = ~ - 1", None),
             ("a \\dag b + c^{\\ddag \\mu} + \\sqrt[{]}]{x} + M, \\text{ }M_i", None),
             ("x + {a \\atop b} + \\genfrac{}{}{}{}{c}{d} + \\genfrac(]{1pt}{3}{e}{f}", None),
             ("\\operatorname{ln} x + \\operatorname{cos}_1^2 y, a\\ast b \\not= c^\\ast", None),
             ("\\begin{aligned}[t] a &= b \\end{aligned} "
              "\\begin{aligned}[y] &= 1\\end{aligned}", None)]
    pairs = [(a, to_latex(normalize(a))) for a, _ in pairs]
    for name, col in (("a", 0), ("b", 1)):
        body = "\n".join(f"\\[{p[col]}\\]\\newpage" for p in pairs)
        (tmp_path / f"{name}.tex").write_text(
            "\\documentclass{article}\\usepackage{amsmath,amssymb,amsfonts,mathtools,mathrsfs,bm}"
            f"\\pagestyle{{empty}}\\begin{{document}}\n{body}\n\\end{{document}}\n")
        subprocess.run(["latex", "-interaction=nonstopmode", "-halt-on-error", f"{name}.tex"],
                       cwd=tmp_path, check=True, capture_output=True, timeout=120)
        subprocess.run(["dvipng", "-q", "-D", "100", "-T", "tight", "-o", f"{name}-%02d.png",
                        f"{name}.dvi"], cwd=tmp_path, check=True, capture_output=True,
                       timeout=120)
    for k in range(1, len(pairs) + 1):
        a = np.array(Image.open(tmp_path / f"a-{k:02d}.png").convert("L"))
        b = np.array(Image.open(tmp_path / f"b-{k:02d}.png").convert("L"))
        assert a.shape == b.shape and (a == b).all(), pairs[k - 1]
