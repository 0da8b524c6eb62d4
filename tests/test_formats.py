"""Output formats (texlens/formats.py) and `texlens predict --format`."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from xml.etree import ElementTree

import pytest
from typer.testing import CliRunner

from texlens.cli import app
from texlens.formats import FORMATS, FormatError, check_format, to_json, to_mathml, to_text
from texlens.tokens import join

EXAMPLE = sorted((Path(__file__).parents[1] / "examples/printed/images").glob("*.png"))[0]
runner = CliRunner()


@dataclass
class Pred:  # the fields of texlens.recognizer.Prediction, token_probs included
    latex: str
    tokens: list[str]
    confidence: float
    nbest: list[tuple[str, float]] | None = None
    token_probs: list[float] | None = None


@dataclass
class OldPred:  # a Prediction without token_probs
    latex: str
    tokens: list[str]
    confidence: float
    nbest: list[tuple[str, float]] | None = None


FRAC_LATEX = r"\frac { 1 } { 2 } + x ^ { 2 }"
FRAC = Pred(FRAC_LATEX, FRAC_LATEX.split(" "), 0.91234)


def test_text_formats():
    assert to_text(FRAC, "latex") == FRAC.latex
    assert to_text(FRAC, "inline") == f"${FRAC.latex}$"
    assert to_text(FRAC, "display") == f"$${FRAC.latex}$$"
    mathml = to_text(FRAC, "mathml")
    assert mathml.startswith("<math") and "<mfrac>" in mathml and "<msup>" in mathml
    assert 'display="block"' in mathml and 'display="inline"' in to_mathml("x", display=False)
    with pytest.raises(FormatError, match="json is not a text format"):
        to_text(FRAC, "json")
    with pytest.raises(FormatError, match="unknown format 'pdf'"):
        check_format("pdf")


def test_unconvertible_latex_is_a_format_error():
    with pytest.raises(FormatError, match=r"cannot convert to MathML.*\\\\frac \{ 1 \} \{"):
        to_mathml(r"\frac { 1 } {")


def test_aligned_blocks_become_well_formed_mathml_tables():
    # latex2mathml has no aligned environment: read as is, its "&" made invalid XML.
    out = to_mathml("\\begin{aligned} x & = a + b \\\\ y & = 2 \\end{aligned}")
    root = ElementTree.fromstring(out)
    cells = [c for c in root.iter() if c.tag.endswith("mtd")]
    assert len(cells) == 4 and [c.get("columnalign") for c in cells[:2]] == ["right", "left"]
    assert "&" not in out.replace("&#x", "")
    with pytest.raises(FormatError, match="MathML"):
        to_mathml("a & b")  # a column separator outside a table: no valid MathML


def test_json_has_what_the_prediction_has():
    plain = to_json(OldPred("x", ["x"], 0.5))
    assert plain == {"latex": "x", "tokens": ["x"], "confidence": 0.5}
    full = to_json(Pred("x + 1", ["x", "+", "1"], 0.87654, nbest=[("x + 1", -0.1), ("x + l", -2.0)],
                        token_probs=[0.99, 0.512345, 0.8]))
    assert full["confidence"] == 0.8765
    assert full["token_probs"] == [0.99, 0.5123, 0.8]
    assert full["nbest"] == [{"latex": "x + 1", "score": -0.1}, {"latex": "x + l", "score": -2.0}]
    assert json.loads(json.dumps(full)) == full


def test_predict_formats_on_the_command_line():
    out = {}
    for fmt in FORMATS:
        r = runner.invoke(app, ["predict", str(EXAMPLE), "--format", fmt])
        assert r.exit_code == 0, r.output
        out[fmt] = r.stdout.strip()
    row = json.loads(out["json"])
    assert row["file"] == str(EXAMPLE) and row["latex"] == join(row["tokens"])
    assert out["latex"] == f"{EXAMPLE}\t{row['latex']}"
    assert out["inline"] == f"{EXAMPLE}\t${row['latex']}$"
    assert out["mathml"].split("\t")[1].startswith("<math")
    alias = runner.invoke(app, ["predict", str(EXAMPLE), "--json"])
    assert alias.stdout.strip() == out["json"]
    bad = runner.invoke(app, ["predict", str(EXAMPLE), "--format", "pdf"])
    assert bad.exit_code == 2 and "unknown format 'pdf'" in bad.output


def test_long_runs_keep_order_and_report_bad_files(tmp_path):
    # More than 20 images (the progress bar's threshold), one of them a decompression bomb.
    from test_image import blank_bitmap_png
    names = []
    for i in range(22):
        dest = tmp_path / f"f{i:02d}.png"
        shutil.copy(EXAMPLE, dest)
        names.append(dest)
    (tmp_path / "f99.png").write_bytes(blank_bitmap_png(30000, 30000))
    r = runner.invoke(app, ["predict", str(tmp_path), "--format", "json", "--batch-size", "4"])
    assert r.exit_code == 1
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert [row["file"] for row in rows] == [str(n) for n in names]
    assert len({row["latex"] for row in rows}) == 1
    assert "f99.png: image too large" in r.stderr and "1 of 23 files" in r.stderr
