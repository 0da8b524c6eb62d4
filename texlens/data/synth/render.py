"""Render caption tokens to printed-formula images with matplotlib mathtext.

mathtext needs no TeX install and covers every CROHME symbol. It has no
``\\limits``, so the renderer sets ``\\int\\limits`` bounds above and below
itself, as TeX does. Each sample draws its own font set, size, resolution,
padding, ink/paper tone and light noise from a seeded generator, so a
(seed, index) pair always gives the same pixels.

Every caption must be readable back from its image. Two pairs would not be:
- ``\\int\\limits _ a ^ b`` and ``\\int _ a ^ b``, were ``\\limits`` dropped;
- ``x \\prime`` and ``x '`` in the STIX font sets, whose prime glyph (U+2032) is
  drawn small and raised even at full size, so it looks like the superscript
  prime ``'``. TeX's (cm) and DejaVu's full-size prime is large and reaches down
  to the baseline. A formula with ``\\prime`` is therefore drawn in the matching
  non-STIX font set (``PRIME_FONTSET``). (``x ^ { \\prime }`` and ``x '`` look
  alike in every font, as in TeX; no renderer can part them.)
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
from matplotlib import mathtext
from matplotlib.font_manager import FontProperties

from texlens.latex import split_args

FONTSETS = ("cm", "stix", "stixsans", "dejavusans", "dejavuserif")
# A formula with \prime is drawn in the serif/sans counterpart instead.
PRIME_FONTSET = {"stix": "cm", "stixsans": "dejavusans"}
_PARSER = mathtext.MathTextParser("agg")
# mathtext logs the whole box tree of any script stack it cannot pack exactly
# ("Underful Vlist"); the image is still right, and one warning runs to 80 lines.
logging.getLogger("matplotlib.mathtext").setLevel(logging.ERROR)


class RenderError(ValueError):
    """mathtext could not lay the formula out."""


@dataclass
class RenderStyle:
    fontsets: Sequence[str] = FONTSETS
    size_pt: tuple[float, float] = (14.0, 26.0)
    dpi: tuple[int, int] = (90, 130)
    pad_px: tuple[int, int] = (2, 14)
    noise_prob: float = 0.4
    noise_sigma: tuple[float, float] = (2.0, 10.0)
    blur_prob: float = 0.2


def _body(tokens: Sequence[str]) -> str:
    out: list[str] = []
    i = 0
    while i < len(tokens):
        t = tokens[i]
        if t == "\\limits":
            # Bounds of the operator before it go above and below it. mathtext has no
            # \limits; \int needs \underset/\overset (\sum and \lim, which mathtext
            # already sets so, come out the same).
            scripts: dict[str, list[str]] = {}
            i += 1
            while i + 1 < len(tokens) and tokens[i] in ("_", "^") and tokens[i] not in scripts:
                (scripts[tokens[i]],), i = split_args(tokens, i + 1, "m", tokens[i])
            if not scripts:
                continue
            op = out.pop() if out else ""
            if "^" in scripts:
                op = f"\\overset{{{_body(scripts['^'])}}}{{{op}}}"
            if "_" in scripts:
                op = f"\\underset{{{_body(scripts['_'])}}}{{{op}}}"
            out.append(op)
            continue
        if out and out[-1] in ("_", "^"):
            out[-1] += t
        else:
            out.append(t)
        i += 1
    return " ".join(out)


def to_mathtext(tokens: Sequence[str]) -> str:
    """Tokens to a mathtext string.

    No space may follow ``_`` or ``^``: mathtext takes that space as the script
    itself and sets the braced group after it full-size on the baseline, so
    ``x ^ { 2 }`` would look like ``x 2``.
    """
    return "$" + _body(tokens) + "$"


def render_ink(tokens: Sequence[str], fontset: str = "cm", size_pt: float = 20.0,
               dpi: int = 100) -> np.ndarray:
    """Coverage map of the formula: uint8, 255 where the glyphs are, no padding."""
    prop = FontProperties(size=size_pt, math_fontfamily=fontset)
    try:
        parsed = _PARSER.parse(to_mathtext(tokens), dpi=dpi, prop=prop)
    except ValueError as e:
        first = str(e).strip().splitlines()
        raise RenderError(f"mathtext cannot render {' '.join(tokens)!r}: "
                          f"{first[-1] if first else e}") from None
    return np.asarray(parsed.image, dtype=np.uint8)


def pick_fontset(tokens: Sequence[str], rng: np.random.Generator,
                 style: RenderStyle | None = None) -> str:
    """The sample's font set: drawn, then moved off STIX if the formula has ``\\prime``."""
    fontset = str(rng.choice(list((style or RenderStyle()).fontsets)))
    return PRIME_FONTSET.get(fontset, fontset) if "\\prime" in tokens else fontset


def render(tokens: Sequence[str], rng: np.random.Generator,
           style: RenderStyle | None = None) -> np.ndarray:
    """A printed-looking grayscale image (dark ink on light paper), uint8 HxW."""
    style = style or RenderStyle()
    ink = render_ink(tokens, fontset=pick_fontset(tokens, rng, style),
                     size_pt=float(rng.uniform(*style.size_pt)),
                     dpi=int(rng.integers(style.dpi[0], style.dpi[1] + 1)))
    pads = rng.integers(style.pad_px[0], style.pad_px[1] + 1, size=4)
    ink = np.pad(ink, ((pads[0], pads[1]), (pads[2], pads[3])))
    paper = rng.uniform(215, 255)
    tone = rng.uniform(0, 70)
    img = paper - (paper - tone) * (ink.astype(np.float32) / 255.0)
    if rng.random() < style.blur_prob:
        # A 3-tap blur: scanned print is rarely perfectly sharp.
        img = cv2.GaussianBlur(img, (3, 3), 0)
    if rng.random() < style.noise_prob:
        img = img + rng.normal(0.0, rng.uniform(*style.noise_sigma), img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)
