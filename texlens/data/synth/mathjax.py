"""Render LaTeX formulas with MathJax (the web's renderer), as a second family beside real TeX.

A model trained on one renderer learns that renderer, so the training data mixes families.
MathJax v4 lays each formula out as SVG paths in one of several OpenType math fonts, and
resvg rasterises the SVG; both run in one node process per call (``js/render.mjs``), fed
JSON lines on stdin, so node's start-up is paid once per batch, not per formula.

Same contract as ``texlens.data.synth.tex.render_tex``: one result per formula, in order,
either a uint8 ink-coverage array (255 = ink) cropped to the ink, or a ``RenderFailure``
carrying MathJax's message (an unknown macro, a missing brace, a glyph the font lacks).

Setup: ``make mathjax`` (``npm ci`` in ``js/``); ``mathjax_missing()`` says what is absent.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from texlens.data.synth.tex import RenderFailure

JS_DIR = Path(__file__).parent / "js"
SCRIPT = JS_DIR / "render.mjs"
# The MathJax v4 fonts published on npm (render.mjs's FONTS holds the same names).
MATHJAX_FONTS = ("newcm", "modern", "stix2", "termes", "tex")
_MODULES = (
    "@mathjax/src",
    *(f"@mathjax/mathjax-{font}-font" for font in MATHJAX_FONTS),
    "@resvg/resvg-js",
)
# TeX's default body size; at `dpi` one em is this many points, as latex + dvipng draws it.
TEX_SIZE_PT = 10.0


def mathjax_missing() -> str | None:
    """None when node and the npm modules are installed, else what is missing."""
    if shutil.which("node") is None:
        return "node is not installed (apt-get install nodejs)"
    for module in _MODULES:
        if not (JS_DIR / "node_modules" / module / "package.json").is_file():
            return (f"npm module {module} is not installed in {JS_DIR} (run `make mathjax`, "
                    "or `npm ci` there)")
    return None


def _crop(ink: np.ndarray) -> np.ndarray | None:
    """The tight box around the ink, or None when there is none."""
    rows = np.flatnonzero(ink.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(ink.any(axis=0))
    return ink[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]


def render_mathjax(formulas: Sequence[str], font: str = "newcm", dpi: int = 150,
                   display: bool = True) -> list[np.ndarray | RenderFailure]:
    """Render each formula with MathJax in ``font``; 10 pt text at ``dpi``.

    ``display`` sets display style (limits above and below ``\\sum``, full-size fractions);
    False sets inline (text) style. Returns one ink array or RenderFailure per formula.
    """
    if font not in MATHJAX_FONTS:
        raise ValueError(f"unknown MathJax font {font!r}; known: {', '.join(MATHJAX_FONTS)}")
    if dpi <= 0:
        raise ValueError(f"dpi must be positive, got {dpi}")
    missing = mathjax_missing()
    if missing:
        raise RuntimeError(f"cannot render with MathJax: {missing}")
    if not formulas:
        return []
    em_px = TEX_SIZE_PT * dpi / 72.27  # TeX's point is 1/72.27 inch
    requests = "".join(
        json.dumps({"tex": tex, "font": font, "display": display, "em": em_px}) + "\n"
        for tex in formulas
    )
    # communicate() feeds stdin and drains stdout together, so a large batch cannot
    # deadlock on a full pipe.
    proc = subprocess.run(["node", str(SCRIPT)], input=requests, capture_output=True,
                          text=True, cwd=JS_DIR, check=False)
    replies = proc.stdout.splitlines()
    if proc.returncode != 0 or len(replies) != len(formulas):
        raise RuntimeError(
            f"{SCRIPT} exited with {proc.returncode} after {len(replies)} of {len(formulas)} "
            f"formulas: {proc.stderr.strip()[-2000:]}"
        )
    results: list[np.ndarray | RenderFailure] = []
    for reply in replies:
        out = json.loads(reply)
        if "error" in out:
            results.append(RenderFailure(f"MathJax ({font}): {out['error']}"))
            continue
        ink = np.frombuffer(base64.b64decode(out["ink"]), np.uint8).reshape(out["h"], out["w"])
        box = _crop(ink)
        results.append(box.copy() if box is not None
                       else RenderFailure(f"MathJax ({font}): the formula draws no ink"))
    return results
