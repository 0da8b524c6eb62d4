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

from texlens.latex import LatexError, check_braces, group_end, lex, normalize, split_args, to_latex

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
# Arguments that caption style braces, as texlens.latex.split_args reads them: "m" a
# group or one token, "o" an optional [..].
ARGS = {"\\frac": "mm", "\\sqrt": "om", "^": "m", "_": "m"}


class TokenizeError(ValueError):
    """The LaTeX string cannot be split into caption tokens."""


def _brace_args(toks: list[str]) -> list[str]:
    """Make every argument of \\frac, \\sqrt, ^ and _ a braced group (``\\frac12`` style)."""
    out: list[str] = []
    i = 0
    while i < len(toks):
        t = toks[i]
        out.append(t)
        i += 1
        if t not in ARGS:
            continue
        # An unbraced \frac or \sqrt argument takes its own arguments along (x^\frac12).
        args, i = split_args(toks, i, ARGS[t], t, nested=ARGS)
        for kind, arg in zip(ARGS[t], args, strict=True):
            if arg is not None:
                out += ["[", *_brace_args(arg), "]"] if kind == "o" else \
                    ["{", *_brace_args(arg), "}"]
    return out


def tokenize(latex: str) -> list[str]:
    """Split a LaTeX formula into caption-style tokens.

    Already tokenised captions (``"\\frac { 1 } { 2 }"``) come back unchanged.
    Raises TokenizeError on unbalanced braces or missing arguments.
    """
    try:
        return _tokenize(latex)
    except LatexError as e:
        raise TokenizeError(str(e)) from None


def _tokenize(latex: str) -> list[str]:
    toks: list[str] = []
    raw = lex(latex.strip().strip("$"))
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
                end = group_end(raw, i)
                raw = raw[:i] + raw[i + 1:end - 1] + raw[end:]
            continue
        toks.append(t)
        i += 1
    check_braces(toks)
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
        return normalize
    raise ValueError(f"unknown caption style {style!r}; choose from {', '.join(STYLES)}")


def join(tokens: Iterable[str]) -> str:
    """Tokens back to a LaTeX string: spaces between tokens, as in the captions, except
    inside text arguments (``\\text {pic}``), where TeX would print them
    (:func:`texlens.latex.to_latex`; CROHME-style tokens have none)."""
    return to_latex([t for t in tokens if t not in SPECIALS])


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
