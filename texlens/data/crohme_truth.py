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

from texlens.latex import group_end, split_args
from texlens.tokens import ARGS, tokenize


def drop_bare_groups(toks: list[str]) -> list[str]:
    """Remove ``{ }`` pairs that are not an argument of \\frac, \\sqrt, ^ or _.

    Expects :func:`tokenize` output, where every argument is already braced.
    """
    out: list[str] = []
    i = 0
    while i < len(toks):
        t = toks[i]
        if t == "{":
            end = group_end(toks, i)
            out += drop_bare_groups(toks[i + 1:end - 1])
            i = end
            continue
        out.append(t)
        i += 1
        if t not in ARGS:
            continue
        args, i = split_args(toks, i, ARGS[t], t)
        for kind, arg in zip(ARGS[t], args, strict=True):
            if arg is not None:
                inner = drop_bare_groups(arg)
                out += ["[", *inner, "]"] if kind == "o" else ["{", *inner, "}"]
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
