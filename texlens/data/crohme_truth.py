"""CROHME truth LaTeX -> caption tokens (the WAP/BTTR/CoMER tokenisation).

The InkML truth is free-form LaTeX; the published captions are
:func:`texlens.tokens.tokenize` of it plus three clean-ups:

* grouping braces that are not an argument are dropped: MfrDB writes
  ``{x^{2}} + 1``, MathBrush ``{ - { \\mbox { t } } }``, the captions have
  ``x ^ { 2 } + 1`` and ``- t`` (in the training captions every ``{`` follows
  ``^``, ``_``, ``\\frac``, ``\\sqrt``, ``]`` or a ``\\frac`` argument's ``}``);
* stray ``$`` are removed (a few files have a ``$`` inside the formula too);
* ``log`` and ``lim`` spelled as letters (MfrDB writes ``l o g``) become ``\\log``
  and ``\\lim``: the captions never have those letter runs.

On the 2016 training set this reproduces 99.8% of the captions exactly; the rest
are number corrections the captions made (truth ``1.0``, ``06``, caption ``1``, ``6``)
and a handful of one-offs.
"""

from __future__ import annotations

from texlens.tokens import ARITY, TokenizeError, tokenize


def _close(toks: list[str], start: int) -> int:
    """Index of the ``}`` matching the ``{`` at ``start``."""
    depth = 0
    for k in range(start, len(toks)):
        depth += (toks[k] == "{") - (toks[k] == "}")
        if depth == 0:
            return k
    raise TokenizeError("unbalanced '{' in formula")


def drop_bare_groups(toks: list[str]) -> list[str]:
    """Remove ``{ }`` pairs that are not an argument of \\frac, \\sqrt, ^ or _.

    Expects :func:`tokenize` output, where every argument is already braced.
    """
    out: list[str] = []
    i = 0
    while i < len(toks):
        t = toks[i]
        if t == "{":
            end = _close(toks, i)
            out += drop_bare_groups(toks[i + 1:end])
            i = end + 1
            continue
        out.append(t)
        i += 1
        if t not in ARITY:
            continue
        if t == "\\sqrt" and i < len(toks) and toks[i] == "[":
            end = toks.index("]", i)  # tokenize already checked it is there
            out += ["[", *drop_bare_groups(toks[i + 1:end]), "]"]
            i = end + 1
        for _ in range(ARITY[t]):
            end = _close(toks, i)
            out += ["{", *drop_bare_groups(toks[i + 1:end]), "}"]
            i = end + 1
    return out


SPELLED = {("l", "o", "g"): "\\log", ("l", "i", "m"): "\\lim"}


def join_spelled(toks: list[str]) -> list[str]:
    """``l o g`` -> ``\\log`` and ``l i m`` -> ``\\lim``."""
    out: list[str] = []
    i = 0
    while i < len(toks):
        word = SPELLED.get(tuple(toks[i:i + 3]))
        out.append(word or toks[i])
        i += 3 if word else 1
    return out


def truth_tokens(latex: str) -> list[str]:
    """Caption tokens of a CROHME truth string. Raises TokenizeError."""
    return join_spelled(drop_bare_groups(tokenize(latex.replace("$", " "))))
