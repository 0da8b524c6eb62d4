"""Random formula generator producing caption-style token lists.

A small recursive grammar of school and university maths: polynomials,
fractions, scripts, roots, big operators with bounds, functions, brackets,
relations and sets. Every token of the CROHME 111-symbol dictionary can appear
(``SYMBOLS`` lists them; a test checks the generator reaches them all).
"""

from __future__ import annotations

import random
from collections.abc import Sequence

UPPER = list("ABCEFGHILMNPRSTVXY")
LOWER = list("abcdefghijklmnopqrstuvwxyz")
GREEK = ["\\alpha", "\\beta", "\\gamma", "\\lambda", "\\mu", "\\phi", "\\pi", "\\sigma",
         "\\theta", "\\Delta", "\\Pi"]
DIGITS = list("0123456789")
BINARY = ["+", "-", "\\times", "\\div", "\\cdot", "\\pm", "/"]
RELATIONS = ["=", "=", "=", "\\neq", "\\leq", "\\geq", "<", ">", "\\rightarrow", "\\in"]
FUNCTIONS = ["\\sin", "\\cos", "\\tan", "\\log"]
BRACKETS = [("(", ")"), ("(", ")"), ("[", "]"), ("\\{", "\\}"), ("|", "|")]
# The CROHME dictionary (111 tokens) plus nothing else: the generator never leaves it.
SYMBOLS = sorted(
    set(UPPER + LOWER + GREEK + DIGITS + BINARY + RELATIONS + FUNCTIONS)
    | {"(", ")", "[", "]", "\\{", "\\}", "|", "{", "}", "^", "_", "\\frac", "\\sqrt", "\\sum",
       "\\int", "\\lim", "\\limits", "\\infty", "!", "'", "\\prime", ",", ".", "\\ldots",
       "\\cdots", "\\exists", "\\forall"}
)


class FormulaGenerator:
    """Seeded random formulas; ``generate()`` returns one token list.

    ``max_tokens`` bounds the length: longer draws are redrawn, which keeps the
    length distribution close to CROHME's (median about 13 tokens).
    """

    def __init__(self, seed: int = 0, max_tokens: int = 50, max_depth: int = 2):
        self.rng = random.Random(seed)
        self.max_tokens = max_tokens
        self.max_depth = max_depth

    # -- leaves ---------------------------------------------------------------
    def variable(self) -> list[str]:
        r = self.rng.random()
        if r < 0.6:
            return [self.rng.choice("xyzabcnmtkijpqrsuvwdefghlo")]
        if r < 0.8:
            return [self.rng.choice(LOWER)]
        if r < 0.9:
            return [self.rng.choice(UPPER)]
        return [self.rng.choice(GREEK)]

    def number(self) -> list[str]:
        r = self.rng.random()
        if r < 0.55:
            return [self.rng.choice(DIGITS)]
        if r < 0.85:
            return [self.rng.choice("123456789")] + [self.rng.choice(DIGITS)
                                                      for _ in range(self.rng.randint(1, 2))]
        return [self.rng.choice(DIGITS), ".", *[self.rng.choice(DIGITS)
                                               for _ in range(self.rng.randint(1, 2))]]

    def atom(self) -> list[str]:
        r = self.rng.random()
        if r < 0.5:
            return self.variable()
        if r < 0.85:
            return self.number()
        if r < 0.9:
            return ["\\infty"]
        if r < 0.95:
            return [*self.number(), *self.variable()]
        return [*self.variable(), self.rng.choice(["'", "\\prime", "!"])]

    # -- structures -----------------------------------------------------------
    def scripted(self, depth: int) -> list[str]:
        base = self.atom() if self.rng.random() < 0.8 else self.variable()
        r = self.rng.random()
        small = self.atom() if self.rng.random() < 0.6 else self.expr(depth + 1, max_terms=2)
        if r < 0.4:
            return [*base, "^", "{", *small, "}"]
        if r < 0.75:
            return [*base, "_", "{", *small, "}"]
        return [*base, "_", "{", *self.atom(), "}", "^", "{", *small, "}"]

    def fraction(self, depth: int) -> list[str]:
        return ["\\frac", "{", *self.expr(depth + 1, 2), "}", "{", *self.expr(depth + 1, 2), "}"]

    def root(self, depth: int) -> list[str]:
        index = ["[", self.rng.choice("3n4"), "]"] if self.rng.random() < 0.2 else []
        return ["\\sqrt", *index, "{", *self.expr(depth + 1, 2), "}"]

    def bracketed(self, depth: int) -> list[str]:
        left, right = self.rng.choice(BRACKETS)
        out = [left, *self.expr(depth + 1, 2), right]
        if self.rng.random() < 0.3:
            out += ["^", "{", *self.atom(), "}"]
        return out

    def function(self, depth: int) -> list[str]:
        f = self.rng.choice(FUNCTIONS)
        head = [f]
        if f == "\\log" and self.rng.random() < 0.3:
            head += ["_", "{", *self.atom(), "}"]
        elif f != "\\log" and self.rng.random() < 0.2:
            head += ["^", "{", self.rng.choice("23"), "}"]
        if self.rng.random() < 0.5:
            return [*head, *self.variable()]
        return [*head, "(", *self.expr(depth + 1, 2), ")"]

    def big_operator(self, depth: int) -> list[str]:
        r = self.rng.random()
        body = self.expr(depth + 1, 2)
        if r < 0.35:
            i = self.rng.choice("iknj")
            # mathtext sets \sum's bounds above and below with or without \limits, so
            # "\sum \limits" could not be read back from its image (CROHME never
            # writes it). The draw stays so that every other formula of a seed stays.
            self.rng.random()
            return ["\\sum", "_", "{", i, "=", *self.number(), "}",
                    "^", "{", *(["\\infty"] if self.rng.random() < 0.4 else self.variable()), "}",
                    *body]
        if r < 0.7:
            lims = ["\\limits"] if self.rng.random() < 0.15 else []
            bounds = (["_", "{", *self.atom(), "}", "^", "{", *self.atom(), "}"]
                      if self.rng.random() < 0.7 else [])
            var = self.rng.choice("xtuy")
            # \limits without bounds changes nothing on the page (in TeX too).
            return ["\\int", *(lims if bounds else []), *bounds, *body, "d", var]
        var = self.rng.choice("xnth")
        target = ["\\infty"] if self.rng.random() < 0.5 else self.number()
        return ["\\lim", "_", "{", var, "\\rightarrow", *target, "}", *body]

    def sequence(self) -> list[str]:
        v = self.rng.choice("axn")
        dots = self.rng.choice(["\\ldots", "\\cdots"])
        return [v, "_", "{", "1", "}", ",", v, "_", "{", "2", "}", ",", dots, ",", v, "_",
                "{", "n", "}"]

    def term(self, depth: int) -> list[str]:
        if depth >= self.max_depth:
            return self.atom()
        r = self.rng.random()
        if r < 0.32:
            return self.atom()
        if r < 0.52:
            return self.scripted(depth)
        if r < 0.64:
            return self.fraction(depth)
        if r < 0.71:
            return self.root(depth)
        if r < 0.8:
            return self.bracketed(depth)
        if r < 0.88:
            return self.function(depth)
        if r < 0.96 and depth == 0:
            return self.big_operator(depth)
        return [*self.variable(), "(", *self.variable(), ")"]

    def expr(self, depth: int = 0, max_terms: int = 3) -> list[str]:
        n = self.rng.randint(1, max_terms)
        out = self.term(depth)
        for _ in range(n - 1):
            op = self.rng.choice(BINARY) if self.rng.random() < 0.8 else None
            out = [*out, op, *self.term(depth)] if op else [*out, *self.term(depth)]
        if self.rng.random() < 0.08:
            out = ["-", *out]
        return out

    def statement(self) -> list[str]:
        r = self.rng.random()
        if r < 0.04:
            return self.sequence()
        if r < 0.08:
            q = self.rng.choice(["\\forall", "\\exists"])
            v = self.variable()
            return [q, *v, "\\in", self.rng.choice(UPPER), ",", *self.expr(1, 2),
                    self.rng.choice(RELATIONS), *self.expr(1, 2)]
        if r < 0.5:
            return self.expr(0)
        lhs = self.expr(0, 2)
        out = [*lhs, self.rng.choice(RELATIONS), *self.expr(0, 2)]
        if self.rng.random() < 0.1:
            out += [self.rng.choice(RELATIONS), *self.expr(1, 2)]
        return out

    def short(self) -> list[str]:
        """One to three tokens: a lone symbol, a symbol with a sign, prime or second
        symbol, or two joined by an operator or relation. Such formulas are 13% of CROHME
        validation (lone letters and digits) and the orientation classifier's weakest
        case (turned, a lone i or l says little), yet ``generate`` draws few of them."""
        r = self.rng.random()
        if r < 0.45:
            return self.variable() if self.rng.random() < 0.7 else [self.rng.choice(DIGITS)]
        if r < 0.75:
            one = self.variable() if self.rng.random() < 0.7 else [self.rng.choice(DIGITS)]
            q = self.rng.random()
            if q < 0.3:
                return [self.rng.choice(["-", "+", "\\pm"]), *one]
            if q < 0.5:
                return [*one, self.rng.choice(["'", "!"])]
            return [*one, *self.atom()][:3]
        return [*self.variable(), self.rng.choice(BINARY + RELATIONS), *self.variable()]

    def generate(self) -> list[str]:
        while True:
            toks = self.statement()
            if 1 <= len(toks) <= self.max_tokens:
                return toks


def caption_cycle(captions: Sequence[Sequence[str]], seed: int):
    """Endless shuffled passes over real captions (for rendering real formulas)."""
    rng = random.Random(seed)
    order = list(range(len(captions)))
    while True:
        rng.shuffle(order)
        for i in order:
            yield list(captions[i])
