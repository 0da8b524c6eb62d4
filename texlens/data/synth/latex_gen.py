"""Random formulas over the full LaTeX vocabulary of printed mathematics.

``generator.py`` stays inside CROHME's 111 symbols; this grammar covers what papers and
textbooks print: every Greek letter, Latin letters in nine math alphabets, accents, big
operators with limits, relations and arrows, ``\\left``/``\\right`` and sized
delimiters, functions and ``\\operatorname``, fractions, binomials and roots, nested
scripts and primes, ``\\text``, spacing, and the matrix, ``cases``, ``aligned``,
``gathered`` and ``array`` environments. It writes the canonical tokens of
``texlens.latex.normalize`` (every argument and script braced, subscript first, primes as
``^ { \\prime }``, environments as single ``\\begin{name}`` tokens), so a draw is its
own normal form; ``texlens.latex.to_latex`` turns it into LaTeX that TeX typesets.

Rare symbols matter as much as common ones to a model that must read them, so symbol
tables are drawn uniformly (only letters and relations lean towards the common ones):
in 20,000 draws every token the grammar can place appears (``placeable_tokens()``;
tests/test_latex_gen.py checks it). Given a target vocabulary, tables are cut to it and
draws holding any other token are redrawn; ``unplaceable()`` names the tokens of a
vocabulary the grammar never writes.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path

from texlens.data.splits import expression_split

# -- symbol tables --------------------------------------------------------------------
# One list per role: the grammar draws each role from its table, so a table is both
# what the generator can place and what the coverage test expects to see.
LOWER = list("abcdefghijklmnopqrstuvwxyz")
UPPER = list("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
DIGITS = list("0123456789")
# Letters that real formulas use most; drawn half the time so draws look like maths.
COMMON_LETTERS = list("xyzabcnkijtpqfgmrsuvwABCFGHKLMNPRSTVX")

GREEK = [
    "\\alpha", "\\beta", "\\gamma", "\\delta", "\\epsilon", "\\varepsilon", "\\zeta",
    "\\eta", "\\theta", "\\vartheta", "\\iota", "\\kappa", "\\varkappa", "\\lambda", "\\mu",
    "\\nu", "\\xi", "\\pi", "\\varpi", "\\rho", "\\varrho", "\\sigma", "\\varsigma", "\\tau",
    "\\upsilon", "\\phi", "\\varphi", "\\chi", "\\psi", "\\omega", "\\digamma",
    "\\Gamma", "\\Delta", "\\Theta", "\\Lambda", "\\Xi", "\\Pi", "\\Sigma", "\\Upsilon",
    "\\Phi", "\\Psi", "\\Omega",
    "\\varGamma", "\\varDelta", "\\varTheta", "\\varLambda", "\\varXi", "\\varPi",
    "\\varSigma", "\\varUpsilon", "\\varPhi", "\\varPsi", "\\varOmega",
]
# Which letters each font can set: \mathbb, \mathcal and \mathscr have capitals only.
FONTS: dict[str, list[str]] = {
    "\\mathbb": UPPER,
    "\\mathcal": UPPER,
    "\\mathscr": UPPER,
    "\\mathfrak": UPPER + LOWER,
    "\\mathbf": UPPER + LOWER + DIGITS,
    "\\mathrm": UPPER + LOWER + DIGITS,
    "\\mathsf": UPPER + LOWER + DIGITS,
    "\\mathit": UPPER + LOWER,
    "\\boldsymbol": UPPER + LOWER + GREEK,
}
# Capitals that \mathbb usually names (number sets): drawn often in \mathbb.
BB_COMMON = list("NZQRCFPEAKH")
# Narrow accents take one symbol; wide ones a whole expression.
ACCENTS = ["\\hat", "\\bar", "\\vec", "\\dot", "\\ddot", "\\tilde", "\\check", "\\breve",
           "\\acute", "\\grave", "\\mathring"]
WIDE_ACCENTS = ["\\widehat", "\\widetilde", "\\overline", "\\underline", "\\overrightarrow",
                "\\overleftarrow"]
BRACES = ["\\overbrace", "\\underbrace"]
BIG_OPS = ["\\sum", "\\prod", "\\coprod", "\\bigcup", "\\bigcap", "\\bigoplus", "\\bigotimes",
           "\\bigodot", "\\bigsqcup", "\\bigvee", "\\bigwedge", "\\biguplus"]
INTEGRALS = ["\\int", "\\iint", "\\iiint", "\\oint"]
LIMITS = ["\\lim", "\\sup", "\\inf", "\\max", "\\min", "\\limsup", "\\liminf",
          "\\varinjlim", "\\varprojlim"]
FUNCTIONS = ["\\sin", "\\cos", "\\tan", "\\cot", "\\sec", "\\csc", "\\arcsin", "\\arccos",
             "\\arctan", "\\sinh", "\\cosh", "\\tanh", "\\coth", "\\exp", "\\log", "\\ln",
             "\\lg", "\\det", "\\dim", "\\ker", "\\deg", "\\gcd", "\\Pr", "\\arg", "\\hom"]
OPERATOR_NAMES = ["Spec", "rank", "tr", "Hom", "End", "Aut", "id", "Im", "coker", "div",
                  "sgn", "Var", "Cov", "supp", "diag", "Pic", "GL", "colim", "Proj", "Tor",
                  "Ext", "Gal", "lcm", "curl", "span", "Res", "ord", "E"]
TEXT_WORDS = ["if", "otherwise", "for all", "for", "and", "or", "where", "when", "else",
              "such that", "as", "on", "in", "odd", "even", "if and only if", "s.t.", "a.e.",
              "with", "elsewhere", "for some", "is prime", "def", "const"]
RELATIONS = ["=", "<", ">", "\\leq", "\\geq", "\\neq", "\\approx", "\\equiv", "\\sim",
             "\\simeq", "\\cong", "\\propto", "\\subset", "\\subseteq", "\\supset",
             "\\supseteq", "\\subsetneq", "\\in", "\\notin", "\\ni", "\\mid", "\\nmid",
             "\\parallel", "\\perp", "\\prec", "\\preceq", "\\succ", "\\succeq", "\\ll", "\\gg",
             "\\asymp", "\\doteq", "\\models", "\\vdash", "\\dashv", "\\leqslant",
             "\\geqslant", "\\lesssim", "\\gtrsim", "\\triangleleft", "\\trianglelefteq",
             "\\coloneqq", ":", "\\frown", "\\vartriangleleft", "\\sqsubset",
             "\\sqsubseteq", "\\lessapprox", "\\iff", "\\implies"]
ARROWS = ["\\rightarrow", "\\leftarrow", "\\leftrightarrow", "\\Rightarrow", "\\Leftarrow",
          "\\Leftrightarrow", "\\longrightarrow", "\\longleftarrow", "\\longleftrightarrow",
          "\\Longrightarrow", "\\Longleftarrow", "\\Longleftrightarrow", "\\mapsto",
          "\\longmapsto", "\\hookrightarrow", "\\hookleftarrow", "\\twoheadrightarrow",
          "\\rightharpoonup", "\\uparrow", "\\downarrow", "\\updownarrow", "\\nearrow",
          "\\searrow", "\\leadsto", "\\rightrightarrows", "\\rightarrowtail"]
# Relations real formulas use most, drawn as often as the whole table above.
COMMON_RELATIONS = ["<", ">", "\\leq", "\\geq", "\\neq", "\\approx", "\\equiv", "\\sim",
                    "\\in", "\\subset", "\\subseteq", "\\rightarrow", "\\mapsto",
                    "\\Rightarrow", "\\cong"]
X_ARROWS = ["\\xrightarrow", "\\xleftarrow"]
STACKED = ["\\overset", "\\underset", "\\stackrel"]
# \ast is written * and \not = \neq in canonical LaTeX (texlens/latex.py).
BINARY = ["+", "-", "\\pm", "\\mp", "\\times", "\\div", "\\cdot", "\\circ", "\\star",
          "\\bullet", "\\otimes", "\\oplus", "\\ominus", "\\odot", "\\oslash", "\\wedge",
          "\\vee", "\\cup", "\\cap", "\\sqcup", "\\setminus", "\\amalg", "\\uplus",
          "\\diamond", "\\rtimes", "\\ltimes", "/", "*", "\\bmod", "\\triangleright",
          "\\bigtriangleup", "\\centerdot"]
# Ordinary symbols that stand where a variable could.
SYMBOLS = ["\\partial", "\\nabla", "\\infty", "\\hbar", "\\ell", "\\emptyset", "\\varnothing",
           "\\aleph", "\\beth", "\\imath", "\\jmath", "\\wp", "\\Re", "\\Im", "\\top", "\\bot",
           "\\angle", "\\triangle", "\\Box", "\\forall", "\\exists", "\\nexists", "\\neg",
           "\\#", "\\%", "\\&", "\\sharp", "\\flat", "\\natural", "\\complement", "\\dagger",
           "\\ddagger", "\\S", "\\checkmark", "\\clubsuit", "\\diamondsuit", "\\heartsuit",
           "\\spadesuit", "\\surd", "\\backslash", "\\square", "\\blacksquare",
           "\\bigstar", "\\blacklozenge", "\\blacktriangle", "\\pounds", "\\$", "\\_"]
# What superscripts often carry alone (A^\dagger, f^*, G^\perp, M^\vee ...).
SCRIPT_MARKS = ["*", "\\dagger", "\\star", "\\top", "\\perp", "\\vee", "\\times",
                "\\circ", "\\bullet", "\\sharp", "\\flat", "+", "-"]
DELIMS = [("(", ")"), ("[", "]"), ("\\{", "\\}"), ("\\langle", "\\rangle"),
          ("\\lfloor", "\\rfloor"), ("\\lceil", "\\rceil"), ("|", "|"), ("\\|", "\\|"),
          ("\\lvert", "\\rvert"), ("\\lVert", "\\rVert"),
          ("[", ")"), ("(", "]"), ("]", "[")]
SIZES = [("\\big", "\\big"), ("\\Big", "\\Big"), ("\\bigg", "\\bigg"), ("\\Bigg", "\\Bigg"),
         ("\\bigl", "\\bigr"), ("\\Bigl", "\\Bigr"), ("\\biggl", "\\biggr"),
         ("\\Biggl", "\\Biggr")]
FRACS = ["\\frac", "\\dfrac", "\\tfrac", "\\cfrac"]
BINOMS = ["\\binom", "\\dbinom", "\\tbinom"]
DOTS = ["\\ldots", "\\cdots", "\\dots"]
SPACES = ["\\,", "\\:", "\\;", "\\!", "\\quad", "\\qquad", "~", "\\enspace"]
TEXT_CMDS = ["\\text", "\\text", "\\text", "\\textit", "\\textbf"]
# \operatorname* sets its scripts below, like \lim.
STAR_OPERATORS = ["argmax", "argmin", "esssup", "colim", "plim"]
# Relations that \not negates.
NEGATED = ["\\in", "\\subset", "\\equiv", "\\sim", "\\leq", "\\mid", "\\cong"]
PUNCT = [",", ";", ".", "!", "?"]
MATRICES = ["matrix", "pmatrix", "bmatrix", "vmatrix", "Bmatrix", "Vmatrix", "smallmatrix"]
ARRAY_COLS = ["c", "l", "r"]

# Tokens the rules write directly. Primes are "^ { \prime }" (see prime()), never "'".
STRUCTURE = ["{", "}", "^", "_", "\\prime", "&", "\\\\", "[", "]", "(", ")", "|", ",", "=", "-",
             "+", "<", "\\left", "\\right", "\\middle", ".", "\\sqrt", "\\limits",
             "\\nolimits", "\\text", "\\operatorname", "\\pmod", "\\substack",
             "\\mathrm", "\\vdots", "\\ddots", "\\cdots", "\\ldots", "\\in", "\\mid",
             "\\rightarrow", "\\infty", "~", "\\begin{cases}", "\\end{cases}",
             "\\begin{aligned}", "\\end{aligned}", "\\begin{array}", "\\end{array}",
             "\\begin{gathered}", "\\end{gathered}", "\\hline", "\\colon", "\\vcentcolon",
             "\\not", "\\operatorname*", "\\displaystyle", "\\textstyle"]


def _chars(word: str) -> list[str]:
    """Text and operator names as canonical tokens: one per character, spaces as ``~``."""
    return ["~" if c == " " else c for c in word]


def placeable_tokens() -> set[str]:
    """Every token the grammar can write (the coverage test checks it writes them all)."""
    toks = set(LOWER + UPPER + DIGITS + GREEK + list(FONTS) + ACCENTS + WIDE_ACCENTS + BRACES
               + BIG_OPS + INTEGRALS + LIMITS + FUNCTIONS + RELATIONS + ARROWS + X_ARROWS
               + STACKED + BINARY + SYMBOLS + SCRIPT_MARKS + FRACS + BINOMS + DOTS + SPACES
               + PUNCT + ARRAY_COLS + STRUCTURE + TEXT_CMDS + NEGATED)
    toks |= {t for pair in DELIMS + SIZES for t in pair}
    toks |= {f"\\{e}{{{name}}}" for name in MATRICES for e in ("begin", "end")}
    for word in OPERATOR_NAMES + TEXT_WORDS + STAR_OPERATORS:
        toks |= set(_chars(word))
    return toks


def unplaceable(vocab: Iterable[str]) -> list[str]:
    """Tokens of ``vocab`` this grammar can never write (sorted), e.g. to report a corpus."""
    return sorted(set(vocab) - placeable_tokens())


class _Skip(Exception):
    """A rule needs a token the target vocabulary lacks: the caller draws another rule."""


class LatexFormulaGenerator:
    """Seeded random formulas in canonical tokens; ``generate()`` returns one token list.

    ``max_tokens`` caps the length (lengths spread from a few tokens to the cap, log-
    uniformly). ``vocab``: only tokens of it are written; every rule whose tokens it
    lacks is skipped, and tokens outside it are reported by ``unplaceable()``.
    """

    def __init__(self, seed: int = 0, max_tokens: int = 250,
                 vocab: Iterable[str] | None = None):
        if max_tokens < 5:
            raise ValueError(f"max_tokens must be at least 5, got {max_tokens}")
        self.rng = random.Random(seed)
        self.max_tokens = max_tokens
        self.vocab = set(vocab) if vocab is not None else None
        if self.vocab is not None:
            missing = [t for t in ("{", "}", "^", "_") if t not in self.vocab]
            if missing:
                raise ValueError(f"target vocabulary lacks the structural tokens {missing}")
        keep = self._keep
        self.letters = keep(LOWER + UPPER)
        self.common = keep(COMMON_LETTERS)
        self.digits = keep(DIGITS)
        self.greeks = keep(GREEK)
        self.fonts = {f: keep(ls) for f, ls in FONTS.items() if keep([f]) and keep(ls)}
        self.tables: dict[str, list] = {
            name: keep(table) for name, table in {
                "accents": ACCENTS, "wide": WIDE_ACCENTS, "braces": BRACES,
                "big_ops": BIG_OPS, "integrals": INTEGRALS, "limits": LIMITS,
                "functions": FUNCTIONS, "relations": RELATIONS, "arrows": ARROWS,
                "x_arrows": X_ARROWS, "stacked": STACKED, "binary": BINARY,
                "symbols": SYMBOLS, "marks": SCRIPT_MARKS, "fracs": FRACS, "binoms": BINOMS,
                "common_rel": COMMON_RELATIONS, "dots": DOTS, "spaces": SPACES,
                "punct": PUNCT, "cols": ARRAY_COLS, "text_cmds": TEXT_CMDS,
                "negated": NEGATED,
            }.items()
        }
        self.tables["delims"] = [p for p in DELIMS if keep(list(p)) == list(p)]
        self.tables["sizes"] = [p for p in SIZES if keep(list(p)) == list(p)]
        self.tables["matrices"] = [m for m in MATRICES
                                   if keep([f"\\begin{{{m}}}", f"\\end{{{m}}}"])]
        self.tables["opnames"] = [w for w in OPERATOR_NAMES if keep(_chars(w)) == _chars(w)]
        self.tables["words"] = [w for w in TEXT_WORDS if keep(_chars(w)) == _chars(w)]
        self.tables["star_ops"] = [w for w in STAR_OPERATORS if keep(_chars(w)) == _chars(w)]
        self.font_names = sorted(self.fonts)
        # Set per formula by generate(): terms per expression, nesting depth, and the
        # weight of large structures (big operators, environments).
        self.width, self.max_depth, self.heavy = 2, 2, 1.0
        self.formula_fonts = self.font_names
        self.in_wide_accent = False
        self.leaf_rules = [(8, lambda depth: self.atom()), (1, self.scripted)]
        self.top_rules, self.inner_rules = self.term_rules(True), self.term_rules(False)
        if not self.letters and not self.digits:
            raise ValueError("target vocabulary has no Latin letters or digits to build on")

    def _keep(self, tokens: list) -> list:
        return list(tokens) if self.vocab is None else [t for t in tokens if t in self.vocab]

    # -- drawing helpers --------------------------------------------------------------
    def pick(self, name: str):
        table = self.tables[name]
        if not table:
            raise _Skip(name)
        return self.rng.choice(table)

    def chance(self, p: float) -> bool:
        return self.rng.random() < p

    def one_of(self, rules: list[tuple[float, Callable[..., list[str]]]], *args) -> list[str]:
        """Draw a rule by weight and call it with ``args``; a rule the vocabulary cannot
        serve gives way to the rest."""
        while rules:
            x = self.rng.random() * sum(w for w, _ in rules)
            i = 0
            while i < len(rules) - 1 and x >= rules[i][0]:
                x -= rules[i][0]
                i += 1
            try:
                return rules[i][1](*args)
            except _Skip:
                rules = rules[:i] + rules[i + 1:]
        raise _Skip("no rule")

    @staticmethod
    def braced(toks: list[str]) -> list[str]:
        return ["{", *toks, "}"]

    # -- leaves -----------------------------------------------------------------------
    def letter(self) -> list[str]:
        table = self.common if self.common and self.chance(0.5) else self.letters
        if not table:
            raise _Skip("letters")
        return [self.rng.choice(table)]

    def greek(self) -> list[str]:
        if not self.greeks:
            raise _Skip("greek")
        return [self.rng.choice(self.greeks)]

    def font_letter(self) -> list[str]:
        if not self.formula_fonts:
            raise _Skip("fonts")
        font = self.rng.choice(self.formula_fonts)
        table = self.fonts[font]
        if font == "\\mathbb" and self.chance(0.5):
            table = [c for c in BB_COMMON if c in table] or table
        arg = [self.rng.choice(table)]
        if font in ("\\mathrm", "\\mathbf", "\\mathsf") and self.chance(0.15):
            arg += [self.rng.choice(table) for _ in range(self.rng.randint(1, 3))]
        return [font, *self.braced(arg)]

    def variable(self) -> list[str]:
        return self.one_of([(6, self.letter), (2.5, self.greek), (1.5, self.font_letter)])

    def number(self) -> list[str]:
        if not self.digits:
            raise _Skip("digits")
        d = self.digits
        r = self.rng.random()
        if r < 0.6:
            return [self.rng.choice(d)]
        if r < 0.85:
            return [self.rng.choice(d) for _ in range(self.rng.randint(2, 4))]
        return [self.rng.choice(d), ".", *[self.rng.choice(d)
                                          for _ in range(self.rng.randint(1, 3))]]

    def symbol(self) -> list[str]:
        return [self.pick("symbols")]

    def accented(self) -> list[str]:
        if self.in_wide_accent:
            raise _Skip("accent inside a wide accent")
        return [self.pick("accents"), *self.braced(self.variable())]

    def prime(self) -> list[str]:
        # normalize writes f' as the superscript TeX makes of it: f ^ { \prime }.
        base = self.one_of([(3, self.letter), (1, self.greek)])
        primes = ["\\prime"] * self.rng.choice([1, 1, 1, 2, 3])
        if self.chance(0.15):
            primes += self.number()  # f'^2 -> f ^ { \prime 2 }
        return [*base, "^", *self.braced(primes)]

    def atom(self) -> list[str]:
        return self.one_of([(10, self.variable), (5, self.number), (1.5, self.symbol),
                            (1.5, self.accented), (0.7, self.prime)])

    def small(self, depth: int) -> list[str]:
        """Script and limit contents: mostly one atom, sometimes a short expression."""
        return self.one_of([(6, self.atom), (1, lambda: [self.pick("marks")]),
                            (2, lambda: self.expr(depth + 1, 2)),
                            (1, lambda: ["-", *self.atom()]),
                            (0.6, lambda: [*self.atom(), ",", *self.atom()])])

    # -- structures -------------------------------------------------------------------
    def scripted(self, depth: int) -> list[str]:
        base = self.one_of([(8, self.variable), (1, self.accented), (1, self.symbol),
                            (1, self.number)])
        r = self.rng.random()
        if r < 0.1 and depth + 1 < self.max_depth:
            # nested scripts: x ^ { y ^ { 2 } }
            inner = [*self.variable(), self.rng.choice(["^", "_"]),
                     *self.braced(self.small(depth + 1))]
            return [*base, self.rng.choice(["^", "_"]), *self.braced(inner)]
        if r < 0.45:
            return [*base, "^", *self.braced(self.small(depth))]
        if r < 0.75:
            return [*base, "_", *self.braced(self.small(depth))]
        return [*base, "_", *self.braced(self.small(depth)),
                "^", *self.braced(self.small(depth))]

    def wide_accent(self, depth: int) -> list[str]:
        accent = self.pick("wide")
        # fourier's and mathdesign's \widehat and \widetilde stop with an undefined
        # control sequence over a wide body holding an amsmath accent: none inside them.
        outer = self.in_wide_accent
        self.in_wide_accent = outer or accent in ("\\widehat", "\\widetilde")
        try:
            body = self.expr(depth + 1, 2)
        finally:
            self.in_wide_accent = outer
        out = [accent, *self.braced(body)]
        if self.chance(0.2):
            out += ["^", *self.braced(self.small(depth))]
        return out

    def brace_note(self, depth: int) -> list[str]:
        kind = self.pick("braces")
        script = "^" if kind == "\\overbrace" else "_"
        note = self.text() if self.chance(0.3) else self.small(depth)
        return [kind, *self.braced(self.expr(depth + 1, 3)), script, *self.braced(note)]

    def fraction(self, depth: int) -> list[str]:
        # A style switch before a fraction, as papers write \displaystyle \frac in text.
        style = [self.rng.choice(["\\displaystyle", "\\textstyle"])] if self.chance(0.04) \
            else []
        return [*style, self.pick("fracs"), *self.braced(self.expr(depth + 1, 2)),
                *self.braced(self.expr(depth + 1, 2))]

    def binomial(self, depth: int) -> list[str]:
        return [self.pick("binoms"), *self.braced(self.small(depth)),
                *self.braced(self.small(depth))]

    def root(self, depth: int) -> list[str]:
        # The index is an optional argument: a "]" inside it would end it early.
        index = ["[", *self.atom(), "]"] if self.chance(0.25) else []
        return ["\\sqrt", *index, *self.braced(self.expr(depth + 1, 2))]

    def delimited(self, depth: int) -> list[str]:
        left, right = self.pick("delims")
        body = self.expr(depth + 1, 3)
        r = self.rng.random()
        if r < 0.4:
            out = [left, *body, right]
        elif r < 0.8:
            if self.chance(0.15):
                # set-builder with \middle: \left \{ x \middle | x > 0 \right \}
                body = [*body, "\\middle", "|", *self.expr(depth + 1, 2)]
            out = ["\\left", left, *body, "\\right", right]
        elif r < 0.9:
            # evaluation bar: \left . f \right | _ { x = 0 }
            out = ["\\left", ".", *body, "\\right", "|", "_",
                   *self.braced([*self.letter(), "=", *self.atom()])]
            return out
        else:
            big_l, big_r = self.pick("sizes")
            out = [big_l, left, *body, big_r, right]
        if self.chance(0.2):
            out += ["^", *self.braced(self.small(depth))]
        return out

    def function(self, depth: int) -> list[str]:
        if self.chance(0.25):
            head = ["\\operatorname", *self.braced(_chars(self.pick("opnames")))]
        else:
            head = [self.pick("functions")]
        r = self.rng.random()
        if r < 0.15:
            head += ["^", *self.braced(self.small(depth))]
        elif r < 0.25:
            head += ["_", *self.braced(self.small(depth))]
        if self.chance(0.4):
            return [*head, *self.atom()]
        if self.chance(0.7):
            return [*head, "(", *self.expr(depth + 1, 2), ")"]
        return [*head, "\\left", "(", *self.expr(depth + 1, 3), "\\right", ")"]

    def under_limits(self, depth: int) -> list[str]:
        """The lower limit of a sum or a lim: i = 1, i \\in I, x \\rightarrow 0, \\substack."""
        def assign() -> list[str]:
            return [*self.letter(), "=", *self.atom()]

        def member() -> list[str]:
            return [*self.letter(), self.rng.choice(["\\in", "<", "\\mid"]), *self.atom()]

        def tends() -> list[str]:
            return [*self.letter(), "\\rightarrow", *self.atom()]

        def stack() -> list[str]:
            rows = [self.rng.choice([assign, member])() for _ in range(self.rng.randint(2, 3))]
            body = rows[0]
            for row in rows[1:]:
                body = [*body, "\\\\", *row]
            return ["\\substack", *self.braced(body)]
        return self.one_of([(4, assign), (3, member), (2, tends), (1, self.atom),
                            (1, stack)])

    def limits_switch(self, scripts: list[str]) -> list[str]:
        # Without limits to place, \limits changes nothing on the page: never written so.
        r = self.rng.random()
        if not scripts:
            return []
        return ["\\limits"] if r < 0.1 else ["\\nolimits"] if r < 0.2 else []

    def big_operator(self, depth: int) -> list[str]:
        op = self.pick("big_ops")
        r = self.rng.random()
        scripts = []
        if r < 0.7:
            scripts = ["_", *self.braced(self.under_limits(depth)),
                       "^", *self.braced(self.small(depth))]
        elif r < 0.9:
            scripts = ["_", *self.braced(self.under_limits(depth))]
        return [op, *self.limits_switch(scripts), *scripts, *self.expr(depth + 1, 3)]

    def integral(self, depth: int) -> list[str]:
        op = self.pick("integrals")
        scripts = []
        if self.chance(0.7):
            scripts = ["_", *self.braced(self.small(depth))]
            if self.chance(0.8):
                scripts += ["^", *self.braced(self.small(depth))]
        op = [op, *self.limits_switch(scripts), *scripts]
        var = self.letter()
        d = ["\\mathrm", "{", "d", "}"] if self.chance(0.4) else ["d"]
        space = [self.pick("spaces")] if self.chance(0.4) else []
        return [*op, *self.expr(depth + 1, 3), *space, *d, *var]

    def limit(self, depth: int) -> list[str]:
        if self.chance(0.15):
            op = ["\\operatorname*", *self.braced(_chars(self.pick("star_ops")))]
        else:
            op = [self.pick("limits")]
        scripts = ["_", *self.braced(self.under_limits(depth))] if self.chance(0.85) else []
        op = [*op, *self.limits_switch(scripts), *scripts]
        if self.chance(0.2):
            return [*op, "\\{", *self.expr(depth + 1, 2), "\\}"]
        return [*op, *self.expr(depth + 1, 2)]

    def sequence(self, depth: int) -> list[str]:
        v = self.variable()
        dots = self.pick("dots")
        first, last = self.rng.choice([("1", "n"), ("0", "k"), ("1", "m"), ("2", "N")])
        sep = [","] if self.chance(0.5) else [self.pick("binary")]
        return [*v, "_", "{", first, "}", *sep, dots, *sep, *v, "_", "{", last, "}"]

    def set_builder(self, depth: int) -> list[str]:
        cond = [*self.letter(), "\\in", *self.variable()]
        return ["\\{", *cond, "\\mid", *self.relation_chain(depth + 1), "\\}"]

    def text(self) -> list[str]:
        return [self.pick("text_cmds"), *self.braced(_chars(self.pick("words")))]

    def cell(self, depth: int) -> list[str]:
        return self.one_of([(5, self.atom), (2, lambda: self.expr(self.max_depth - 1, 2)),
                            (1, lambda: self.scripted(self.max_depth - 1))])

    def matrix(self, depth: int) -> list[str]:
        env = self.pick("matrices")
        rows, cols = self.rng.randint(2, 4), self.rng.randint(1, 4)
        if min(rows, cols) >= 3 and self.chance(0.5):
            grid = self._dotted_grid(rows, cols)
        else:
            grid = [[self.cell(depth) for _ in range(cols)] for _ in range(rows)]
        return [f"\\begin{{{env}}}", *self._rows(grid), f"\\end{{{env}}}"]

    def _dotted_grid(self, rows: int, cols: int) -> list[list[list[str]]]:
        # a _ { 1 1 } & \cdots & a _ { 1 n } \\ \vdots & \ddots & \vdots \\ ...
        v = self.letter()
        row_ix = ["1", "2", "i", "m"][:rows - 1] if rows > 3 else ["1", "m"]
        col_ix = ["1", "2", "j", "n"][:cols - 1] if cols > 3 else ["1", "n"]
        grid = []
        for r in range(rows):
            if r == rows - 2:
                row = [["\\vdots"] for _ in range(cols)]
                row[-2] = ["\\ddots"]
            else:
                ri = row_ix[min(r, len(row_ix) - 1)] if r < rows - 1 else row_ix[-1]
                row = []
                for c in range(cols):
                    if c == cols - 2:
                        row.append(["\\cdots"])
                    else:
                        ci = col_ix[min(c, len(col_ix) - 1)] if c < cols - 1 else col_ix[-1]
                        row.append([*v, "_", "{", ri, ci, "}"])
            grid.append(row)
        return grid

    @staticmethod
    def _rows(grid: list[list[list[str]]]) -> list[str]:
        # "\\\\ [" would read the bracket as a row skip (and "\begin{aligned} [" as its
        # position): rows that start with "[" are not written.
        if any(row[0][:1] == ["["] for row in grid):
            raise _Skip("row starts with [")
        out: list[str] = []
        for i, row in enumerate(grid):
            if i:
                out.append("\\\\")
            for j, cell in enumerate(row):
                out += [*(["&"] if j else []), *cell]
        return out

    def array(self, depth: int) -> list[str]:
        cols = [self.pick("cols") for _ in range(self.rng.randint(1, 4))]
        spec = list(cols)
        if len(cols) > 1 and self.chance(0.3):
            spec.insert(self.rng.randint(1, len(cols) - 1), "|")
        grid = [[self.cell(depth) for _ in cols] for _ in range(self.rng.randint(2, 4))]
        if self.chance(0.25):
            grid[1][0] = ["\\hline", *grid[1][0]]  # a rule under the first row
        body = ["\\begin{array}", *self.braced(spec), *self._rows(grid), "\\end{array}"]
        if self.chance(0.6):
            left, right = self.pick("delims")
            return ["\\left", left, *body, "\\right", right]
        return body

    def cases(self, depth: int) -> list[str]:
        grid = []
        n = self.rng.randint(2, 4)
        for i in range(n):
            value = self.expr(self.max_depth - 1, 2)
            if i == n - 1 and self.chance(0.4):
                cond = ["\\text", "{", *_chars("otherwise"), "}"]
            elif self.chance(0.7):
                cond = [*self.text(), *self.relation_chain(self.max_depth - 1)]
            else:
                cond = self.relation_chain(self.max_depth - 1)
            grid.append([value, cond])
        return ["\\begin{cases}", *self._rows(grid), "\\end{cases}"]

    def applied(self, depth: int) -> list[str]:
        return [*self.variable(), "(", *self.expr(depth + 1, 2), ")"]

    def term_rules(self, top: bool) -> list[tuple[float, Callable[[int], list[str]]]]:
        """The rules of a term with their weights (each is called with the depth)."""
        h = self.heavy
        rules = [
            (22, lambda depth: self.atom()), (18, self.scripted), (7, self.fraction),
            (1.5, self.binomial), (3, self.root), (8, self.delimited), (6, self.function),
            (3, self.wide_accent), (1, self.brace_note),
            (h * 4 if top else h, self.big_operator),
            (h * 3 if top else h * 0.5, self.integral),
            (h * 3 if top else h * 0.5, self.limit),
            (h * 2 if top else h * 0.3, self.sequence),
            (h if top else 0, self.set_builder),
            (h * 2 if top else h * 0.3, self.matrix),
            (h * 0.6 if top else 0, self.array),
            (1, self.applied),
        ]
        return [(w, f) for w, f in rules if w > 0]

    def term(self, depth: int) -> list[str]:
        if depth >= self.max_depth:
            return self.one_of(self.leaf_rules, depth)
        return self.one_of(self.top_rules if depth == 0 else self.inner_rules, depth)

    def expr(self, depth: int = 0, max_terms: int = 3) -> list[str]:
        out = self.term(depth)
        for _ in range(self.rng.randint(1, max_terms) - 1):
            if self.chance(0.75):
                out = [*out, *self.binary(), *self.term(depth)]
            else:
                out = [*out, *self.term(depth)]
        if self.chance(0.06):
            out = ["-", *out]
        return out

    def binary(self) -> list[str]:
        if self.chance(0.6):
            return [self.rng.choice(["+", "-"])]
        return [self.pick("binary")]

    def relation(self) -> list[str]:
        def decorated() -> list[str]:
            over = self.text() if self.chance(0.3) else self.small(self.max_depth)
            return [self.pick("stacked"), *self.braced(over),
                    *self.braced([self.rng.choice(["=", *self.tables["relations"]])])]

        def x_arrow() -> list[str]:
            below = ["[", *self.small(self.max_depth), "]"] if self.chance(0.2) else []
            return [self.pick("x_arrows"), *below, *self.braced(self.small(self.max_depth))]
        return self.one_of([(12, lambda: ["="]), (4, lambda: [self.pick("common_rel")]),
                            (4, lambda: [self.pick("relations")]),
                            (3, lambda: [self.pick("arrows")]), (0.4, decorated),
                            (0.3, x_arrow), (0.3, lambda: ["\\not", self.pick("negated")]),
                            (0.15, lambda: ["\\vcentcolon", "="])])

    def relation_chain(self, depth: int) -> list[str]:
        out = self.expr(depth, 2)
        for _ in range(self.rng.choice([1, 1, 1, 2])):
            out = [*out, *self.relation(), *self.expr(depth, 2)]
        return out

    def statement(self) -> list[str]:
        def modular() -> list[str]:
            return [*self.expr(1, 2), "\\equiv", *self.expr(1, 2), "\\pmod",
                    *self.braced(self.atom())]

        def quantified() -> list[str]:
            q = self.rng.choice([t for t in ("\\forall", "\\exists") if t in self.tables[
                "symbols"]] or ["\\forall"])
            return [q, *self.letter(), "\\in", *self.variable(), ",",
                    *self.relation_chain(1)]

        def definition() -> list[str]:
            head = [*self.letter(), "(", *self.letter(), ")"]
            return [*head, "=", *self.cases(0)]

        def mapping() -> list[str]:
            # f \colon X \rightarrow Y
            return [*self.letter(), "\\colon", *self.variable(), self.pick("arrows"),
                    *self.variable()]
        return self.one_of([
            (3, lambda: self.expr(0, self.width)),
            (7, lambda: self.relation_chain(0) if self.width < 3 else
             [*self.expr(0, self.width), *self.relation(), *self.expr(0, self.width)]),
            (0.4, modular), (0.4, quantified), (0.5 * self.heavy, definition),
            (0.3, mapping),
        ])

    def aligned(self) -> list[str]:
        # 2-4 lines, "&" before the relation; later lines may leave the left side empty.
        grid = []
        for i in range(self.rng.randint(2, 4)):
            lhs = self.expr(1, 2) if i == 0 or self.chance(0.5) else []
            grid.append([lhs, [*self.relation(), *self.expr(0, min(self.width, 3))]])
        return ["\\begin{aligned}", *self._rows(grid), "\\end{aligned}"]

    def gathered(self) -> list[str]:
        grid = [[self.relation_chain(1)] for _ in range(self.rng.randint(2, 3))]
        return ["\\begin{gathered}", *self._rows(grid), "\\end{gathered}"]

    def separator(self) -> list[str]:
        return self.one_of([
            (4, lambda: [","]), (2, lambda: [",", self.pick("spaces")]),
            (2, lambda: [self.pick("spaces")]),
            (1.5, lambda: [self.pick("spaces"), *self.text(), self.pick("spaces")]),
            (1, lambda: [";"]), (2, self.relation),
        ])

    # -- whole formulas ---------------------------------------------------------------
    def formula(self, target: int) -> list[str]:
        if self.chance(0.05 * self.heavy):
            return self.aligned() if self.chance(0.8) else self.gathered()
        # A first statement far past the target is redrawn (three times at most), so
        # that short targets give short formulas.
        out = self.statement()
        for _ in range(3):
            if len(out) <= 1.5 * target + 5:
                break
            out = self.statement()
        for _ in range(50):
            if len(out) >= target:
                break
            more = [*self.separator(), *self.statement()]
            if len(out) + len(more) > self.max_tokens:
                continue  # this chunk would pass the cap: draw another, shorter one
            out += more
        if self.chance(0.1):
            out.append(self.pick("punct"))
        return out

    def generate(self) -> list[str]:
        for _ in range(1000):
            # Log-uniform target length: as many short formulas as long ones per octave.
            target = round(math.exp(self.rng.uniform(math.log(5), math.log(self.max_tokens))))
            # Deep, wide statements only where the target leaves room for them.
            self.width = 1 if target < 10 else 2 if target < 30 else self.rng.randint(2, 4)
            self.heavy = 0.2 if target < 20 else 0.5 if target < 50 else 1.0
            # At most three math alphabets in one formula, as in print: TeX has 16 math
            # families, and with some font packages (newtxmath) few are left for them.
            k = min(len(self.font_names), self.rng.choice([1, 2, 2, 3]))
            self.formula_fonts = self.rng.sample(self.font_names, k)
            self.in_wide_accent = False
            self.top_rules, self.inner_rules = self.term_rules(True), self.term_rules(False)
            self.max_depth = (1 if target < 12 else self.rng.choice([1, 2]) if target < 40
                              else self.rng.choice([2, 3]) if target < 120
                              else self.rng.choice([2, 3, 4]))
            try:
                toks = self.formula(target)
            except _Skip:
                continue
            if toks[0] == "\\displaystyle":
                toks = toks[1:]  # a display formula already is (normalize drops it too)
            if len(toks) > self.max_tokens:
                continue
            if self.vocab is not None and not self.vocab.issuperset(toks):
                continue
            return toks
        raise RuntimeError("no formula within max_tokens and the target vocabulary "
                           "in 1000 tries: raise max_tokens or widen the vocabulary")


def write_formulas(path: str | Path, n: int, seed: int = 0, max_tokens: int = 250,
                   vocab: Iterable[str] | None = None) -> Counter:
    """Write ``n`` draws as ``gen{seed}_{i:06d}<TAB>tokens`` lines (``data render``'s input).

    These are training formulas, so a draw whose expression falls on the validation or
    held-out side of :func:`texlens.data.splits.expression_split` is drawn again: a short
    random formula can equal a real held-out one, which would then be seen in training.
    Returns the histogram of lengths. The file appears whole or not at all.
    """
    path = Path(path)
    gen = LatexFormulaGenerator(seed, max_tokens=max_tokens, vocab=vocab)
    lengths: Counter = Counter()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    with open(tmp, "w", encoding="utf-8") as f:
        for i in range(n):
            toks = gen.generate()
            while expression_split(" ".join(toks)) != "train":
                toks = gen.generate()
            lengths[len(toks)] += 1
            f.write(f"gen{seed}_{i:06d}\t{' '.join(toks)}\n")
    tmp.replace(path)
    return lengths
