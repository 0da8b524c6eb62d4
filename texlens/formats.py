"""Output formats of a prediction: what ``texlens predict --format`` and the server write.

``latex`` is the model's token string as it is; ``inline`` and ``display`` wrap it
for pasting into a document; ``mathml`` converts it with latex2mathml (for web
pages and screen readers); ``json`` is a dict with everything the prediction holds.
"""

from __future__ import annotations

from typing import Any
from xml.etree import ElementTree

FORMATS = ("latex", "inline", "display", "mathml", "json")


class FormatError(ValueError):
    """A prediction cannot be written in the asked format (say, unbalanced braces for MathML)."""


def check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise FormatError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    return fmt


# latex2mathml has no aligned or gathered environment (it writes their `&` as a bare
# identifier, which is not even XML); as MathML tables they are arrays of alternately
# right- and left-aligned columns, and of one centred column.
ARRAY_FOR = {"aligned": "rl" * 10, "gathered": "c"}


def to_mathml(latex: str, display: bool = True) -> str:
    """LaTeX -> a MathML ``<math>`` element (one line). Raises FormatError when the
    converter fails or writes something that is not well-formed XML."""
    from latex2mathml.converter import convert  # imported late: only this format needs it
    tables = latex
    for env, columns in ARRAY_FOR.items():
        tables = tables.replace(f"\\begin{{{env}}}", f"\\begin{{array}}{{{columns}}}")
        tables = tables.replace(f"\\end{{{env}}}", "\\end{array}")
    try:
        out = convert(tables, display="block" if display else "inline")
        ElementTree.fromstring(out)
    except Exception as e:  # latex2mathml raises many unrelated types for bad input
        raise FormatError(f"cannot convert to MathML: {type(e).__name__} {e}".strip()
                          + f" (latex: {latex!r})") from None
    return out


def to_text(pred: Any, fmt: str) -> str:
    """A prediction in one of the text formats (every format but ``json``)."""
    check_format(fmt)
    if fmt == "latex":
        return pred.latex
    if fmt == "inline":
        return f"${pred.latex}$"
    if fmt == "display":
        return f"$${pred.latex}$$"
    if fmt == "mathml":
        return to_mathml(pred.latex)
    raise FormatError("json is not a text format; use to_json")


def to_json(pred: Any, digits: int = 4) -> dict[str, Any]:
    """A prediction as a JSON-ready dict: latex, tokens, confidence, and when the
    prediction has them, per-token probabilities and the n-best list (beam search)."""
    out: dict[str, Any] = {"latex": pred.latex, "tokens": list(pred.tokens),
                           "confidence": round(float(pred.confidence), digits)}
    # token_probs is newer than Prediction's other fields: absent on older objects.
    probs = getattr(pred, "token_probs", None)
    if probs is not None:
        out["token_probs"] = [round(float(p), digits) for p in probs]
    if pred.nbest:
        out["nbest"] = [{"latex": t, "score": round(float(s), digits)} for t, s in pred.nbest]
    return out
