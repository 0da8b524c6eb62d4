"""The full-vocabulary formula generator: seeds, lengths, structure, coverage, canonical
form, and that TeX typesets what it writes."""

from __future__ import annotations

import re
from collections import Counter

import pytest
from typer.testing import CliRunner

from texlens.cli import app
from texlens.data.splits import expression_split
from texlens.data.synth.latex_gen import (
    GREEK,
    LatexFormulaGenerator,
    placeable_tokens,
    unplaceable,
)

COVERAGE_DRAWS = 20_000


@pytest.fixture(scope="module")
def draws() -> list[list[str]]:
    # One pass shared by the structure and coverage tests (it is the slow part).
    gen = LatexFormulaGenerator(seed=1)
    return [gen.generate() for _ in range(COVERAGE_DRAWS)]


def structure_error(toks: list[str]) -> str | None:
    """Why a token list is not well formed: braces, environments, \\left/\\right, cells."""
    stack: list[str] = []  # "{", "\\substack", "left" or an environment's "{name}"
    for i, t in enumerate(toks):
        if t == "{":
            stack.append("\\substack" if i and toks[i - 1] == "\\substack" else "{")
        elif t == "}":
            if not stack or stack.pop() not in ("{", "\\substack"):
                return f"'}}' at {i} closes nothing open"
        elif t.startswith("\\begin{"):
            stack.append(t[len("\\begin"):])
        elif t.startswith("\\end{"):
            if not stack or stack.pop() != t[len("\\end"):]:
                return f"{t} at {i} does not close the innermost environment"
        elif t == "\\left":
            stack.append("left")
        elif t == "\\right":
            if not stack or stack.pop() != "left":
                return f"\\right at {i} without its \\left in the same group"
        elif t == "\\middle" and "left" not in stack:
            return f"\\middle at {i} outside \\left ... \\right"
        rows = [s for s in stack if s.startswith("{") and len(s) > 1 or s == "\\substack"]
        if t in ("&", "\\\\") and not rows:
            return f"{t} at {i} outside an environment"
        if t in ("\\left", "\\right", "\\middle") and i + 1 == len(toks):
            return f"{t} at the end has no delimiter"
    return f"unclosed {stack[-1]}" if stack else None


def toks(text: str) -> list[str]:
    return text.split()


def test_same_seed_same_formulas_other_seed_others():
    a = LatexFormulaGenerator(seed=5)
    b = LatexFormulaGenerator(seed=5)
    first = [a.generate() for _ in range(30)]
    assert first == [b.generate() for _ in range(30)]
    c = LatexFormulaGenerator(seed=6)
    assert first != [c.generate() for _ in range(30)]


@pytest.mark.parametrize("cap", [5, 12, 40])
def test_max_tokens_is_a_hard_cap(cap):
    gen = LatexFormulaGenerator(seed=2, max_tokens=cap)
    lengths = [len(gen.generate()) for _ in range(150)]
    assert max(lengths) <= cap
    assert min(lengths) >= 1


def test_lengths_are_spread_and_capped(draws):
    lengths = [len(t) for t in draws]
    assert max(lengths) <= 250
    # wide: both short formulas and long ones, each a sizeable share
    assert sum(n <= 15 for n in lengths) > 0.1 * len(lengths)
    assert sum(n >= 150 for n in lengths) > 0.1 * len(lengths)


def test_draws_are_well_formed(draws):
    errors = [(structure_error(t), " ".join(t)) for t in draws]
    bad = [e for e in errors if e[0]]
    assert not bad, bad[:3]
    # Canonical details: no bare "'" (primes are ^ { \prime }), no aliases, no empty tokens.
    for t in draws[:2000]:
        assert "'" not in t and "\\to" not in t and "\\le" not in t
        assert all(tok and not re.search(r"\s", tok) for tok in t)


def test_structure_check_catches_faults():
    assert structure_error(toks("\\frac { a } { b")) is not None
    assert structure_error(toks("\\begin{pmatrix} a \\end{bmatrix}")) is not None
    assert structure_error(toks("\\left ( a")) is not None
    assert structure_error(toks("{ \\left ( } a \\right )")) is not None
    assert structure_error(toks("a & b")) is not None
    assert structure_error(toks("\\begin{cases} a & b \\\\ c & d \\end{cases}")) is None
    assert structure_error(toks("\\sum _ { \\substack { i \\\\ j } } x")) is None


def test_every_placeable_token_appears_and_nothing_else(draws):
    seen = Counter(t for toks in draws for t in toks)
    table = placeable_tokens()
    assert not table - set(seen), sorted(table - set(seen))
    assert not set(seen) - table, sorted(set(seen) - table)
    assert set(GREEK) <= table


def test_target_vocabulary_limits_and_reports():
    vocab = ["{", "}", "^", "_", "x", "y", "2", "=", "+", "\\frac", "\\alpha", "\\mathbb",
             "R", "\\sum", "i", "\\unknownmacro"]
    gen = LatexFormulaGenerator(seed=3, max_tokens=40, vocab=vocab)
    seen = {t for _ in range(200) for t in gen.generate()}
    assert seen <= set(vocab)
    # what the grammar can place within this vocabulary does appear
    assert {"\\frac", "\\alpha", "\\sum", "\\mathbb", "^", "_"} <= seen
    assert unplaceable(vocab) == ["\\unknownmacro"]


def test_bad_arguments_are_clear_errors():
    with pytest.raises(ValueError, match="max_tokens"):
        LatexFormulaGenerator(max_tokens=3)
    with pytest.raises(ValueError, match="structural tokens"):
        LatexFormulaGenerator(vocab=["x", "y"])


def test_output_is_a_fixed_point_of_normalize():
    latex = pytest.importorskip("texlens.latex", reason="texlens/latex.py (normalize) absent")
    gen = LatexFormulaGenerator(seed=4)
    for _ in range(400):
        toks = gen.generate()
        assert latex.normalize(" ".join(toks)) == toks, " ".join(toks)


def test_tex_typesets_every_draw():
    from texlens.data.synth.tex import RenderFailure, render_tex, tex_missing
    missing = tex_missing()
    if missing:
        pytest.skip(f"TeX is needed: {missing}")
    latex = pytest.importorskip("texlens.latex", reason="texlens/latex.py (to_latex) absent")
    gen = LatexFormulaGenerator(seed=8)
    formulas = [latex.to_latex(gen.generate()) for _ in range(60)]
    results = render_tex(formulas, dpi=40)
    fails = [(f, r.message) for f, r in zip(formulas, results, strict=True)
             if isinstance(r, RenderFailure)]
    assert not fails, fails[:3]


def test_cli_writes_keyed_lines(tmp_path):
    out = tmp_path / "gen.tsv"
    runner = CliRunner()
    args = ["data", "generate", "--n", "25", "--seed", "9", "--out", str(out),
            "--max-tokens", "60"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    lines = out.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 25
    keys = [line.split("\t")[0] for line in lines]
    assert keys == [f"gen9_{i:06d}" for i in range(25)]
    assert all(0 < len(line.split("\t")[1].split(" ")) <= 60 for line in lines)
    # Training formulas: none may be a validation or held-out expression.
    assert all(expression_split(line.split("\t")[1]) == "train" for line in lines)
    first = out.read_bytes()
    assert runner.invoke(app, args).exit_code == 0
    assert out.read_bytes() == first
    # --exclude leaves out the formulas of a test set
    test_set = tmp_path / "test.txt"
    test_set.write_text(f"t1\t{lines[2].split(chr(9))[1]}\n", encoding="utf-8")
    res = runner.invoke(app, [*args, "--exclude", str(test_set)])
    assert res.exit_code == 0 and "left out 1" in res.output, res.output
    assert out.read_text(encoding="utf-8").splitlines() == lines[:2] + lines[3:]


def test_cli_vocab_file(tmp_path):
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(["{", "}", "^", "_", "a", "b", "1", "+", "=", "\\nosuch"]))
    out = tmp_path / "gen.tsv"
    res = CliRunner().invoke(app, ["data", "generate", "--n", "20", "--out", str(out),
                                   "--max-tokens", "30", "--vocab", str(vocab)])
    assert res.exit_code == 0, res.output
    assert "\\nosuch" in res.output
    toks = {t for line in out.read_text().splitlines() for t in line.split("\t")[1].split()}
    assert toks <= {"{", "}", "^", "_", "a", "b", "1", "+", "="}
