"""How each caption token is written: where it sits on the baseline, what it spaces like,
and which library samples can draw it.

Lengths are in x-heights (``ex``: the height of a small ``x`` at the current size).
The positions follow typeset maths as people copy it by hand: letters stand on the
baseline, descenders hang about a third of their height below it, operators and
relations are centred on the maths axis (half an x-height up), fences too.
"""

from __future__ import annotations

from collections.abc import Iterable

from texlens.data.handwriting.labels import INK_FREE
from texlens.data.handwriting.symbols import SymbolLibrary

AXIS = 0.5  # height of the maths axis (centre of + - = and fences) above the baseline
PRIME_TOP = 1.55  # a prime's top, above the baseline

# Share of the glyph's height below the baseline.
DESCENDERS = {"g": 0.35, "j": 0.35, "p": 0.35, "q": 0.35, "y": 0.35, "f": 0.25, "\\beta": 0.25,
              "\\gamma": 0.35, "\\mu": 0.3, "\\phi": 0.25, "\\log": 0.2, "/": 0.15}
CENTRED = frozenset({"+", "-", "=", "\\times", "\\div", "\\pm", "\\cdot", "\\cdots", "<", ">",
                     "\\leq", "\\geq", "\\neq", "\\rightarrow", "\\in", "\\infty", "(", ")", "[",
                     "]", "\\{", "\\}", "|", "\\sum", "\\int"})
HANGING = frozenset({","})  # top just above the baseline
HIGH = frozenset({"'", "\\prime"})  # top at the height of a capital

BINARY = frozenset({"+", "-", "\\times", "\\div", "\\cdot", "\\pm", "/"})
RELATION = frozenset({"=", "\\neq", "\\leq", "\\geq", "<", ">", "\\rightarrow", "\\in"})
OPENING = frozenset({"(", "[", "\\{"})
CLOSING = frozenset({")", "]", "\\}"})
FENCES = OPENING | CLOSING | {"|"}
PUNCT = frozenset({","})
FUNCTION = frozenset({"\\sin", "\\cos", "\\tan", "\\log", "\\lim"})
BIG = frozenset({"\\sum", "\\int"})
# Bounds of these go below and above (\int only with \limits); other bases get side scripts.
STACKED_BOUNDS = frozenset({"\\sum", "\\lim"})

# Library tokens that can draw a caption token, in order of preference; a token with
# a drawn fallback (bars, radicals) is never missing.
SUBSTITUTES: dict[str, tuple[str, ...]] = {
    "'": ("'", "\\prime"),
    "\\prime": ("\\prime", "'"),
    "\\cdot": ("\\cdot", "."),
    "\\cdots": ("\\cdots", "."),  # three dots on the axis
    "\\ldots": ("\\ldots", "."),  # three dots on the baseline
    "\\frac": ("\\frac", "-"),
}
DRAWN = frozenset({"\\frac", "\\sqrt"})


def bottom(token: str, height: float, ex: float) -> float:
    """Where a glyph ``height`` high puts its lowest point: y below the baseline (y down)."""
    if token in DESCENDERS:
        return DESCENDERS[token] * height
    if token in CENTRED:
        return -AXIS * ex + height / 2
    if token in HANGING:
        return height - 0.2 * ex
    if token in HIGH:
        return -PRIME_TOP * ex + height
    return 0.0


def sources(token: str) -> tuple[str, ...]:
    return SUBSTITUTES.get(token, (token,))


def missing_tokens(tokens: Iterable[str], library: SymbolLibrary) -> list[str]:
    """The caption tokens the library cannot draw, sorted."""
    return sorted({t for t in tokens if t not in INK_FREE and t not in DRAWN
                   and not any(library.count(s) for s in sources(t))})
