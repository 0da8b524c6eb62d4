"""Caption tokens -> a small formula tree for the handwriting layout.

Only what changes where ink goes is kept: rows of symbols, scripts, fractions,
roots, and fenced groups (an opening bracket with its matching closing one, so
both can grow to the height of what they enclose). Grouping braces and
``\\limits`` leave no ink: braces become rows, ``\\limits`` a flag on its operator.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from texlens.data.handwriting.glyphs import CLOSING, OPENING
from texlens.latex import LatexError, group_end, split_args


class LayoutError(ValueError):
    """A caption cannot be laid out (unbalanced braces, a script without an argument...)."""


@dataclass
class Sym:
    token: str


@dataclass
class Row:
    items: list[Node] = field(default_factory=list)


@dataclass
class Scripts:
    base: Node
    sub: Row | None = None
    sup: Row | None = None
    limits: bool = False  # \limits was written: bounds go below and above


@dataclass
class Frac:
    num: Row
    den: Row


@dataclass
class Sqrt:
    body: Row
    index: Row | None = None


@dataclass
class Fenced:
    left: Sym
    body: Row
    right: Sym


Node = Sym | Row | Scripts | Frac | Sqrt | Fenced


def _row(toks: list[str]) -> Row:
    """One row of tokens; each group and argument (found by texlens.latex's brace rules)
    is laid out as a row of its own."""
    items: list[Node] = []
    i = 0
    while i < len(toks):
        t = toks[i]
        i += 1
        if t in ("^", "_"):
            (arg,), i = split_args(toks, i, "m", t)
            last = items[-1] if items else None
            slot = "sub" if t == "_" else "sup"
            if not isinstance(last, Scripts) or getattr(last, slot) is not None:
                last = Scripts(items.pop() if items else Row())
                items.append(last)
            setattr(last, slot, _row(arg))
        elif t == "\\limits":
            base = items.pop() if items else Row()
            items.append(base if isinstance(base, Scripts) else Scripts(base))
            items[-1].limits = True
        elif t == "{":
            end = group_end(toks, i - 1)
            items.append(_row(toks[i:end - 1]))
            i = end
        elif t == "\\frac":
            (num, den), i = split_args(toks, i, "mm", t)
            items.append(Frac(_row(num), _row(den)))
        elif t == "\\sqrt":
            (index, body), i = split_args(toks, i, "om", t)
            items.append(Sqrt(_row(body), None if index is None else _row(index)))
        elif t == "}":
            raise LatexError("unbalanced braces: '}' without '{'")
        else:
            items.append(Sym(t))
    return Row(_fence(items))


def _closing(node: Node) -> bool:
    base = node.base if isinstance(node, Scripts) else node
    return isinstance(base, Sym) and base.token in CLOSING


def _fence(items: list[Node]) -> list[Node]:
    """Pair each opening bracket with the closing one at its depth (``[0, 1)`` pairs too)."""
    out: list[Node] = []
    opened: list[int] = []  # positions in ``out`` of unmatched opening brackets
    for node in items:
        if isinstance(node, Sym) and node.token in OPENING:
            opened.append(len(out))
            out.append(node)
        elif _closing(node) and opened:
            start = opened.pop()
            left, body = out[start], out[start + 1:]
            del out[start:]
            if isinstance(node, Scripts):  # (a+b)^2: the script belongs to the whole group
                node.base = Fenced(left, Row(body), node.base)
                out.append(node)
            else:
                out.append(Fenced(left, Row(body), node))
        else:
            out.append(node)
    return out


def parse(tokens: Sequence[str]) -> Row:
    """The formula tree of a caption token list. Raises LayoutError."""
    try:
        return _row(list(tokens))
    except LatexError as e:
        raise LayoutError(f"{e} in {' '.join(tokens)!r}") from None
