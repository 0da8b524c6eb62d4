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


class _Reader:
    def __init__(self, tokens: Sequence[str]):
        self.toks = list(tokens)
        self.i = 0

    def peek(self) -> str | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self) -> str:
        if self.i >= len(self.toks):
            raise LayoutError(f"caption ends early: {' '.join(self.toks)!r}")
        self.i += 1
        return self.toks[self.i - 1]

    def row(self, stop: str | None) -> Row:
        items: list[Node] = []
        while (t := self.peek()) is not None and t != stop:
            self.take()
            if t in ("^", "_"):
                self.script(items, t)
            elif t == "\\limits":
                base = items.pop() if items else Row()
                items.append(base if isinstance(base, Scripts) else Scripts(base))
                items[-1].limits = True
            elif t == "{":
                items.append(self.group_rest())
            elif t == "\\frac":
                items.append(Frac(self.arg(), self.arg()))
            elif t == "\\sqrt":
                index = None
                if self.peek() == "[":
                    self.take()
                    index = self.row("]")
                    self.take()
                items.append(Sqrt(self.arg(), index))
            elif t == "}":  # a "]" outside a root's index is a bracket, a "}" never is
                raise LayoutError(f"unbalanced '}}' in {' '.join(self.toks)!r}")
            else:
                items.append(Sym(t))
        if stop is not None and t is None:
            raise LayoutError(f"missing {stop!r} in {' '.join(self.toks)!r}")
        return Row(_fence(items))

    def group_rest(self) -> Row:
        inner = self.row("}")
        self.take()
        return inner

    def arg(self) -> Row:
        t = self.take()
        if t == "{":
            return self.group_rest()
        if t in ("}", "]", "^", "_"):
            raise LayoutError(f"missing argument before {t!r} in {' '.join(self.toks)!r}")
        return Row([Sym(t)])

    def script(self, items: list[Node], mark: str) -> None:
        arg = self.arg()
        last = items[-1] if items else None
        slot = "sub" if mark == "_" else "sup"
        if not isinstance(last, Scripts) or getattr(last, slot) is not None:
            last = Scripts(items.pop() if items else Row())
            items.append(last)
        setattr(last, slot, arg)


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
    reader = _Reader(tokens)
    tree = reader.row(None)
    if reader.peek() is not None:
        raise LayoutError(f"unbalanced {reader.peek()!r} in {' '.join(tokens)!r}")
    return tree
