"""LaTeX tokenizer and vocabulary.

Token style follows the CROHME / competition captions: one token per command
(``\\frac``), brace, script marker, letter and digit; arguments of ``\\frac``,
``\\sqrt``, ``^`` and ``_`` are always braced, so ``x^2`` and ``x^{2}`` give the
same tokens. Joining tokens with spaces gives valid LaTeX again.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable, Sequence

PAD, SOS, EOS, UNK = "<pad>", "<sos>", "<eos>", "<unk>"
SPECIALS = (PAD, SOS, EOS, UNK)

# Spellings that mean the same symbol; the caption style uses the right-hand side.
ALIASES = {
    "\\lt": "<",
    "\\gt": ">",
    "\\le": "\\leq",
    "\\ge": "\\geq",
    "\\ne": "\\neq",
    "\\to": "\\rightarrow",
    "\\dots": "\\ldots",
    "\\lbrace": "\\{",
    "\\rbrace": "\\}",
    "\\dfrac": "\\frac",
    "\\tfrac": "\\frac",
    "\\vert": "|",
    "\\lbrack": "[",
    "\\rbrack": "]",
}
# Wrappers whose content is kept and the wrapper itself dropped: captions never have them.
TEXT_WRAPPERS = {"\\mbox", "\\text", "\\mathrm", "\\textrm", "\\mathit", "\\rm", "\\displaystyle"}
# Sizing commands carry no symbol: \left( is just "(".
DROPPED = {"\\left", "\\right", "\\big", "\\Big", "\\bigg", "\\Bigg", "\\,", "\\;", "\\!", "\\ ",
           "\\quad", "\\qquad"}
# Number of mandatory arguments that must be braced in caption style.
ARITY = {"\\frac": 2, "\\sqrt": 1, "^": 1, "_": 1}


class TokenizeError(ValueError):
    """The LaTeX string cannot be split into caption tokens."""


def _lex(latex: str) -> list[str]:
    out: list[str] = []
    i, n = 0, len(latex)
    while i < n:
        c = latex[i]
        if c.isspace():
            i += 1
        elif c == "\\":
            j = i + 1
            while j < n and latex[j].isalpha():
                j += 1
            if j == i + 1:  # control symbol such as \{ or \,
                j = min(i + 2, n)
            out.append(latex[i:j])
            i = j
        else:
            out.append(c)
            i += 1
    return out


def _group_end(toks: list[str], start: int) -> int:
    """Index one past the argument that starts at ``start`` (a braced group or one token)."""
    if toks[start] != "{":
        return start + 1
    depth = 0
    for k in range(start, len(toks)):
        if toks[k] == "{":
            depth += 1
        elif toks[k] == "}":
            depth -= 1
            if depth == 0:
                return k + 1
    raise TokenizeError("unbalanced '{' in formula")


def _arg_end(toks: list[str], start: int) -> int:
    """One past the argument at ``start``; \\frac and \\sqrt take their own arguments
    along, since ``x^\\frac{1}{2}`` is valid LaTeX (CROHME truth has it)."""
    t = toks[start]
    if t not in ("\\frac", "\\sqrt"):
        return _group_end(toks, start)
    i = start + 1
    if t == "\\sqrt" and i < len(toks) and toks[i] == "[":
        if "]" not in toks[i:]:
            raise TokenizeError("unclosed '[' after \\sqrt")
        i = toks.index("]", i) + 1
    for _ in range(ARITY[t]):
        if i >= len(toks):
            raise TokenizeError(f"{t} is missing an argument")
        i = _arg_end(toks, i)
    return i


def _brace_args(toks: list[str]) -> list[str]:
    """Make every argument of \\frac, \\sqrt, ^ and _ a braced group (``\\frac12`` style)."""
    out: list[str] = []
    i = 0
    while i < len(toks):
        t = toks[i]
        out.append(t)
        i += 1
        if t not in ARITY:
            continue
        if t == "\\sqrt" and i < len(toks) and toks[i] == "[":
            close = toks.index("]", i) if "]" in toks[i:] else -1
            if close < 0:
                raise TokenizeError("unclosed '[' after \\sqrt")
            out.extend(_brace_args(toks[i:close + 1]))
            i = close + 1
        for _ in range(ARITY[t]):
            if i >= len(toks):
                raise TokenizeError(f"{t} is missing an argument")
            end = _arg_end(toks, i)
            arg = toks[i:end]
            inner = _brace_args(arg[1:-1] if arg[0] == "{" else arg)
            out.extend(["{", *inner, "}"])
            i = end
    return out


def tokenize(latex: str) -> list[str]:
    """Split a LaTeX formula into caption-style tokens.

    Already tokenised captions (``"\\frac { 1 } { 2 }"``) come back unchanged.
    Raises TokenizeError on unbalanced braces or missing arguments.
    """
    toks: list[str] = []
    raw = _lex(latex.strip().strip("$"))
    i = 0
    while i < len(raw):
        t = ALIASES.get(raw[i], raw[i])
        if t in DROPPED:
            i += 1
            if t in ("\\left", "\\right") and i < len(raw) and raw[i] == ".":
                i += 1  # \left. is an invisible delimiter
            continue
        if t in TEXT_WRAPPERS:
            i += 1
            if i < len(raw) and raw[i] == "{":
                end = _group_end(raw, i)
                raw = raw[:i] + raw[i + 1:end - 1] + raw[end:]
            continue
        toks.append(t)
        i += 1
    depth = 0
    for t in toks:  # counts alone would accept "} {"
        depth += (t == "{") - (t == "}")
        if depth < 0:
            raise TokenizeError("unbalanced braces in formula: '}' without '{'")
    if depth:
        raise TokenizeError("unbalanced braces in formula")
    return _brace_args(toks)


STYLES = ("crohme", "latex")


def normalizer(style: str) -> Callable[[str], list[str]]:
    """The function that turns a LaTeX string into a model's caption tokens.

    "crohme" is :func:`tokenize` (CROHME caption style); "latex" is
    :func:`texlens.latex.normalize`, the canonical form of any LaTeX math. Both accept
    their own output unchanged, so already tokenised captions pass through.
    """
    if style == "crohme":
        return tokenize
    if style == "latex":
        from texlens.latex import normalize  # imported late: it needs pylatexenc

        return normalize
    raise ValueError(f"unknown caption style {style!r}; choose from {', '.join(STYLES)}")


def join(tokens: Iterable[str]) -> str:
    """Tokens back to a LaTeX string (spaces between tokens, as in the captions)."""
    return " ".join(t for t in tokens if t not in SPECIALS)


class Vocab:
    """Token <-> id mapping. Ids 0..3 are always <pad> <sos> <eos> <unk>."""

    def __init__(self, tokens: Sequence[str]):
        body = [t for t in tokens if t not in SPECIALS]
        if len(set(body)) != len(body):
            raise ValueError("vocabulary has duplicate tokens")
        self.itos: list[str] = [*SPECIALS, *body]
        self.stoi: dict[str, int] = {t: i for i, t in enumerate(self.itos)}

    pad_id, sos_id, eos_id, unk_id = 0, 1, 2, 3

    @classmethod
    def build(cls, sequences: Iterable[Sequence[str]], min_count: int = 1,
              extra: Iterable[str] = ()) -> Vocab:
        """Vocabulary of every token seen at least ``min_count`` times, plus ``extra``."""
        counts = Counter(t for seq in sequences for t in seq)
        toks = sorted({t for t, c in counts.items() if c >= min_count} | set(extra))
        return cls(toks)

    def __len__(self) -> int:
        return len(self.itos)

    def __contains__(self, token: str) -> bool:
        return token in self.stoi

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocab) and self.itos == other.itos

    def encode(self, tokens: Sequence[str], add_special: bool = True) -> list[int]:
        ids = [self.stoi.get(t, self.unk_id) for t in tokens]
        return [self.sos_id, *ids, self.eos_id] if add_special else ids

    def decode(self, ids: Iterable[int]) -> list[str]:
        """Ids to tokens, stopping at <eos> and skipping <pad>/<sos>."""
        out = []
        for i in ids:
            i = int(i)
            if i == self.eos_id:
                break
            if i in (self.pad_id, self.sos_id):
                continue
            out.append(self.itos[i] if 0 <= i < len(self.itos) else UNK)
        return out

    def unknown(self, tokens: Iterable[str]) -> list[str]:
        return [t for t in tokens if t not in self.stoi]

    def to_json(self) -> str:
        return json.dumps(self.itos[len(SPECIALS):], ensure_ascii=False)

    @classmethod
    def from_list(cls, itos: Sequence[str]) -> Vocab:
        return cls(list(itos))

    @classmethod
    def from_file(cls, path: str) -> Vocab:
        """One token per line (the CROHME dictionary.txt format; extra columns ignored)."""
        with open(path, encoding="utf-8") as f:
            return cls([line.split()[0] for line in f if line.strip()])
