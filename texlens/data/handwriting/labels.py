"""CROHME symbol labels -> caption tokens of the 111-symbol dictionary.

The 2016 training files label their traceGroups with 101 distinct strings. Most
are already caption tokens; the others are LaTeX aliases (``\\lt``, ``\\gt``)
or, in other CROHME releases, words (``COMMA``, ``sin`` without a backslash, a
bare ``{`` for a drawn brace). Labels that name no dictionary symbol give None.
"""

from __future__ import annotations

from texlens.data.synth.generator import SYMBOLS
from texlens.tokens import ALIASES

# Tokens that structure the caption but are never written as a symbol of their own.
INK_FREE = frozenset({"{", "}", "^", "_", "\\limits"})

_WORDS = {"COMMA": ",", "sin": "\\sin", "cos": "\\cos", "tan": "\\tan", "log": "\\log",
          "lim": "\\lim", "ldots": "\\ldots", "cdots": "\\cdots", "infty": "\\infty",
          "sqrt": "\\sqrt", "sum": "\\sum", "int": "\\int",
          # A segmented brace is ink: the literal \{ , never a caption's grouping brace.
          "{": "\\{", "}": "\\}"}
_TOKENS = frozenset(SYMBOLS) - INK_FREE


def label_token(label: str) -> str | None:
    """The caption token a symbol label stands for, or None when it is not in the dictionary."""
    label = label.strip()
    label = _WORDS.get(label, label)
    label = ALIASES.get(label, label)
    return label if label in _TOKENS else None
