"""Canonical LaTeX: one token sequence per formula, from any LaTeX math.

:func:`normalize` parses a formula with pylatexenc (our own argument table for math
macros) and prints it back as tokens. Joined by single spaces, the tokens are LaTeX
that TeX typesets like the input (amsmath, amssymb, amsfonts, mathtools, mathrsfs, bm),
so a model that learns them can be checked by rendering. The choices:

- One token per control word/symbol and per other character. A control space ``\\ ``
  becomes ``\\nobreakspace`` in math (the same glue; a token may not hold a space), not
  ``~``: that is ``\\nobreakspace{}``, whose empty group is an Ord atom and changes the
  spacing around it (``= \\ - 1`` has a unary minus, ``= ~ - 1`` a binary one).
- Scripts always braced, subscript first: ``x _ { i } ^ { 2 }``. A prime is written as
  the superscript TeX makes of it (``f'^2`` -> ``f ^ { \\prime 2 }``): the ``'`` token
  itself cannot be printed with spaces around it, since ``f ' ^ 2`` and ``f ' '`` are
  "Double superscript" errors in LaTeX (its prime macro looks at the very next token).
- Every mandatory argument braced; optional ones in ``[ ]``; dimensions and colour
  names (``1pt``, ``red``) are one token, since TeX cannot read ``1 p t``.
- Old font switches and infix fractions become commands: ``{\\rm d}`` -> ``\\mathrm { d }``,
  ``a \\over b`` -> ``\\frac { a } { b }``, ``\\choose`` -> ``\\binom``, ``\\atop`` ->
  ``\\genfrac {} {} { 0pt } {}`` (what amsmath's ``\\binom`` is built on; ``{}`` is one
  token there, since ``{ }`` would be a space, not an empty argument).
- Spacing commands (``\\,`` ``\\quad`` ``~`` ``\\hspace``) are kept: they move the
  symbols on the page, and a recogniser that reads the page must see them. ``\\label``,
  ``\\nonumber`` and ``\\notag`` print nothing and are dropped.
- Braces that change nothing on the page go. A group holding one ordinary atom (``{x}``,
  ``{\\alpha}``, ``{\\mathbf{x}}``) is that atom to TeX (TeXbook ch. 26: a group of one
  unscripted Ord atom is replaced by it). A longer group whose first and last atoms are
  Ords (``{a+b}``, ``{\\vec L_S}``) is set as one Ord atom, so its neighbours are spaced
  as they are from its first and last atoms: its braces go too, unless something binds
  to the group as a whole (a script after it, or it is a script's argument) or acts up
  to its closing brace (``\\scriptstyle``, ``\\color``). A recogniser cannot see such
  braces (printed-base left out many of them, counted as errors). Others stay:
  ``{+}`` and ``{a+}`` change spacing, ``{}^{14}C`` needs its empty group.
- Text arguments (``\\text{if }``) are one token per character, spaces as ``~``. In
  text mode the spaces between tokens would print, so :func:`to_latex` joins text
  arguments without them; ``" ".join`` of the tokens is read back to the same tokens
  by :func:`normalize` (a text argument spelt `` a b ~ c `` is taken as tokens). An empty
  text argument is the one token ``{}`` (``\\text { }`` is a space, ``\\text { ~ }``).
- Spellings of one glyph become one: ``\\le`` -> ``\\leq``, ``\\ast`` -> ``*`` (one symbol of
  fontmath.ltx), ``\\not =`` -> ``\\neq`` (how LaTeX defines it), ``\\operatorname{cos}`` ->
  ``\\cos`` for LaTeX's own operator names (amsopn.sty sets both alike). The books write
  ``\\operatorname{ln}`` ten times as often as ``\\ln``: a recogniser cannot tell them apart.
- Top-level wrappers (``$``, ``\\[``, ``equation*``) are dropped; ``align*`` becomes
  ``aligned`` and ``gather*`` ``gathered``, which set the same rows as display math
  (column pairs of ``align*`` spread over the line, so several pairs differ in gaps).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from pylatexenc import latexwalker as lw
from pylatexenc import macrospec as ms


class LatexError(ValueError):
    """The formula cannot be normalised; the message says why and where."""


def _w(names: str) -> list[str]:
    return names.split()


# Arguments of each macro: m = math argument, o = optional math [..], s = optional star,
# t = text argument, r = raw argument printed as one token (a dimension, a colour),
# R = optional raw [..], one token with its brackets: amsmath compares [t] to "t", and
# [ t ] would not match.
_ARGS: dict[str, str] = {
    **dict.fromkeys(_w("frac dfrac tfrac binom dbinom tbinom overset underset stackrel "
                    "sideset"), "mm"),
    "cfrac": "Rmm", "genfrac": "rrrrmm", "sqrt": "om",
    **dict.fromkeys(_w("hat widehat bar overline underline vec dot ddot dddot ddddot tilde "
                    "widetilde check breve acute grave mathring overrightarrow overleftarrow "
                    "overleftrightarrow underrightarrow underleftarrow underleftrightarrow "
                    "overbrace underbrace"), "m"),
    **dict.fromkeys(_w("mathrm mathbf mathit mathsf mathtt mathcal mathbb mathfrak mathscr "
                    "mathnormal boldsymbol bm pmb Bbb"), "m"),
    "operatorname": "sm",
    **dict.fromkeys(_w("text textrm textbf textit textsf texttt textup textnormal textsl "
                    "textsc emph mbox hbox fbox"), "t"),
    **dict.fromkeys(_w("xrightarrow xleftarrow xleftrightarrow xRightarrow xLeftarrow "
                    "xLeftrightarrow xmapsto xhookrightarrow xhookleftarrow"), "om"),
    **dict.fromkeys(_w("substack pmod pod mod phantom hphantom vphantom boxed mathop mathbin "
                    "mathrel mathord mathopen mathclose mathpunct mathinner ensuremath "
                    "lefteqn mathrlap mathllap mathclap shoveleft shoveright"), "m"),
    **dict.fromkeys(_w("rlap llap clap"), "t"),
    "smash": "Rm", "tag": "st", "label": "r", "hspace": "sr", "mspace": "r",
    "color": "r", "textcolor": "rm", "cline": "r", "mathchoice": "mmmm",
    "underbracket": "RRm", "overbracket": "RRm",
}
_PYLATEXENC_SPEC = {"m": "{", "t": "{", "r": "{", "o": "[", "R": "[", "s": "*"}

# Spellings of one glyph (checked in fontmath.ltx, latex.ltx, amsmath.sty).
ALIASES = {
    "\\le": "\\leq", "\\ge": "\\geq", "\\ne": "\\neq", "\\to": "\\rightarrow",
    "\\gets": "\\leftarrow", "\\lbrace": "\\{", "\\rbrace": "\\}", "\\lbrack": "[",
    "\\rbrack": "]", "\\vert": "|", "\\Vert": "\\|", "\\land": "\\wedge", "\\lor": "\\vee",
    "\\lnot": "\\neg", "\\lt": "<", "\\gt": ">", "\\thinspace": "\\,", "\\medspace": "\\:",
    "\\>": "\\:", "\\thickspace": "\\;", "\\negthinspace": "\\!", "\\owns": "\\ni",
    "\\bm": "\\boldsymbol", "\\Bbb": "\\mathbb",
    "\\textrm": "\\text", "\\textup": "\\text", "\\textnormal": "\\text", "\\emph": "\\textit",
    "\\sp": "^", "\\sb": "_", "\\ast": "*",
}
# LaTeX's operator names without limits (latex.ltx, amsopn.sty): \operatorname{cos} is
# \cos on the page. Those with limits (\lim, \max, \det, ...) differ in display style.
NAMED_OPERATORS = set(_w(
    "arccos arcsin arctan arg cos cosh cot coth csc deg dim exp hom ker lg ln log sec sin "
    "sinh tan tanh"))
# LaTeX's \dag in math is {\dagger}: an Ord atom, where \dagger alone is a Bin (spaced).
_GROUPED_ALIASES = {"\\dag": "\\dagger", "\\ddag": "\\ddagger"}
# \mbox and \hbox keep their size in scripts and fractions, \text shrinks: same only outside.
_BOX_TO_TEXT = {"\\mbox", "\\hbox"}
DROPPED = {"\\nonumber", "\\notag", "\\label", "\\protect"}
# Old switches that set a math alphabet for the rest of the group.
FONT_SWITCHES = {"\\rm": "\\mathrm", "\\bf": "\\mathbf", "\\it": "\\mathit", "\\cal": "\\mathcal",
                 "\\sf": "\\mathsf", "\\tt": "\\mathtt", "\\mit": "\\mathnormal"}
INFIX = {"\\over", "\\choose", "\\atop"}
DELIMITED = {"\\left", "\\right", "\\middle", *(f"\\{b}{s}" for b in ("big", "Big", "bigg", "Bigg")
                                                for s in ("", "l", "r", "m"))}
DELIMITERS = set("()[]|/.<>") | {
    "\\{", "\\}", "\\|", "\\langle", "\\rangle", "\\lfloor", "\\rfloor", "\\lceil", "\\rceil",
    "\\lvert", "\\rvert", "\\lVert", "\\rVert", "\\backslash", "\\uparrow", "\\downarrow",
    "\\updownarrow", "\\Uparrow", "\\Downarrow", "\\Updownarrow", "\\lgroup", "\\rgroup",
    "\\lmoustache", "\\rmoustache", "\\arrowvert", "\\Arrowvert", "\\bracevert", "\\ulcorner",
    "\\urcorner", "\\llcorner", "\\lrcorner"}
SPACES = {"\\,", "\\:", "\\;", "\\!", "\\quad", "\\qquad", "~", "\\nobreakspace", "\\enspace",
          "\\hfill", "\\negmedspace", "\\negthickspace", "\\hspace", "\\hspace*", "\\mspace"}
# Commands that put no atom in the math list: a script after them has an empty base.
NON_ATOMS = SPACES | {"\\displaystyle", "\\textstyle", "\\scriptstyle", "\\scriptscriptstyle",
                      "\\color", "\\hline", "\\cline"}
MATH_ALPHABETS = {"\\mathrm", "\\mathbf", "\\mathit", "\\mathsf", "\\mathtt", "\\mathcal",
                  "\\mathbb", "\\mathfrak", "\\mathscr", "\\mathnormal"}
# Commands whose result is a braced group (an Ord atom) in LaTeX: braces around them are moot.
_ORD_COMMANDS = MATH_ALPHABETS | {"\\mathord", "\\frac", "\\dfrac", "\\tfrac", "\\binom",
                                  "\\dbinom", "\\tbinom", "\\genfrac"}
# Commands whose atom TeX spaces as an Ord whatever their argument: accents (Acc), roots
# (Rad), over- and underlines, boxes (TeXbook ch. 17-18).
_SPACED_AS_ORD = _ORD_COMMANDS | {f"\\{n}" for n in _w(
    "hat widehat bar overline underline vec dot ddot dddot ddddot tilde widetilde check breve "
    "acute grave mathring overrightarrow overleftarrow overleftrightarrow underrightarrow "
    "underleftarrow underleftrightarrow sqrt text textbf textit textsf texttt textsl textsc "
    "mbox hbox fbox boxed")}
# Inside a group these act up to its closing brace: the braces around them stay.
_SCOPED = {"\\displaystyle", "\\textstyle", "\\scriptstyle", "\\scriptscriptstyle", "\\color",
           "&", "\\\\"}
GREEK = _w("alpha beta gamma delta epsilon varepsilon zeta eta theta vartheta iota kappa "
         "varkappa lambda mu nu xi pi varpi rho varrho sigma varsigma tau upsilon phi varphi "
         "chi psi omega Gamma Delta Theta Lambda Xi Pi Sigma Upsilon Phi Psi Omega digamma")
ORD_SYMBOLS = {f"\\{g}" for g in GREEK} | {f"\\{n}" for n in (
    _w("infty partial nabla ell hbar hslash imath jmath aleph beth gimel daleth wp Re Im emptyset "
    "varnothing forall exists nexists neg top bot angle measuredangle triangle prime backprime "
    "flat sharp natural clubsuit diamondsuit heartsuit spadesuit surd Box square blacksquare "
    "lozenge blacklozenge checkmark mho eth complement Bbbk S P copyright pounds"))}
ORD_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789./|@")
# Known macros without arguments: a group after any other macro keeps its braces, in case
# that macro reads it as an argument.
SYMBOLS = ORD_SYMBOLS | NON_ATOMS | DELIMITERS | DELIMITED | {f"\\{n}" for n in (
    _w("in notin ni subset supset subseteq supseteq subsetneq supsetneq sqsubset sqsupset "
    "sqsubseteq sqsupseteq cap cup sqcap sqcup uplus vee wedge setminus times div cdot ast star "
    "circ bullet oplus ominus otimes oslash odot pm mp amalg diamond wr dagger ddagger "
    "triangleleft triangleright bigtriangleup bigtriangledown lhd rhd unlhd unrhd ltimes rtimes "
    "leq geq neq equiv sim simeq approx cong propto prec succ preceq succeq ll gg mid nmid "
    "parallel nparallel perp models vdash dashv doteq asymp bowtie smile frown lesssim gtrsim "
    "leqslant geqslant lessapprox gtrapprox approxeq coloneqq vcentcolon colon triangleq "
    "vartriangleleft vartriangleright trianglelefteq trianglerighteq nleq ngeq nsubseteq "
    "rightarrow leftarrow Rightarrow Leftarrow leftrightarrow Leftrightarrow longrightarrow "
    "longleftarrow Longrightarrow Longleftarrow longleftrightarrow Longleftrightarrow mapsto "
    "longmapsto hookrightarrow hookleftarrow rightharpoonup leftharpoonup rightleftharpoons "
    "twoheadrightarrow twoheadleftarrow rightarrowtail leftarrowtail rightrightarrows "
    "leftleftarrows leadsto nearrow searrow nwarrow swarrow iff implies impliedby "
    "sum prod coprod int iint iiint oint bigcup bigcap bigsqcup bigvee bigwedge bigoplus "
    "bigotimes bigodot biguplus smallint lim liminf limsup sup inf max min det dim ker hom "
    "deg arg exp log ln lg sin cos tan cot sec csc sinh cosh tanh coth arcsin arccos arctan gcd "
    "Pr injlim projlim varinjlim varprojlim limits nolimits bmod not "
    "ldots cdots vdots ddots dots dotsc dotsb dotsm dotsi dotso cdotp ldotp "
    "mathstrut strut diagup diagdown cdotp centerdot therefore because"))}
TEXT_ACCENTS = set("'\"`^~=.uvHcdbrkt")
TEXT_ONLY = {"\\par", "\\item", "\\boldmath", "\\unboldmath", "\\vspace", "\\noindent",
             "\\newline", "\\linebreak", "\\pagebreak", "\\put", "\\unitlength", "\\setlength",
             "\\linethickness", "\\i", "\\j", "\\o", "\\O", "\\l", "\\L", "\\ae", "\\AE", "\\oe",
             "\\OE", "\\aa", "\\AA", "\\ss", "\\footnote", "\\kern", "\\mkern", "\\hskip",
             "\\mskip", "\\vskip", "\\raise", "\\lower", "\\buildrel", "\\above", "\\parbox",
             "\\raisebox", "\\makebox", "\\rule", "\\atopwithdelims", "\\overwithdelims",
             "\\abovewithdelims", "\\tiny", "\\scriptsize", "\\footnotesize", "\\small",
             "\\normalsize", "\\large", "\\Large", "\\LARGE", "\\huge", "\\Huge"}
DEFINITIONS = {"\\def", "\\gdef", "\\edef", "\\xdef", "\\let", "\\newcommand", "\\renewcommand",
               "\\providecommand", "\\DeclareMathOperator", "\\newenvironment",
               "\\renewenvironment", "\\DeclareRobustCommand", "\\futurelet", "\\expandafter",
               "\\csname", "\\catcode"}
# Paragraph material: a box of text may break lines, which our ~ for spaces would change.
_NOT_IN_TEXT = {"\\parbox", "\\par", "\\\\", "\\newline", "\\linebreak", "\\vspace"}
TEXT_COMMANDS = {f"\\{n}" for n, a in _ARGS.items() if "t" in a}

# Environments: name -> arguments (as in _ARGS).
ENVIRONMENTS = {
    **dict.fromkeys(_w("matrix pmatrix bmatrix Bmatrix vmatrix Vmatrix smallmatrix cases dcases "
                    "rcases split"), ""),
    **dict.fromkeys(_w("matrix* pmatrix* bmatrix* Bmatrix* vmatrix* Vmatrix*"), "R"),
    "array": "Rr", "subarray": "r", "aligned": "", "gathered": "", "alignedat": "r",
}
# Top-level display environments and what draws the same inside display math.
WRAPPERS = {"equation": None, "equation*": None, "displaymath": None, "math": None,
            "align": "aligned", "align*": "aligned", "gather": "gathered",
            "gather*": "gathered", "alignat": "alignedat", "alignat*": "alignedat"}
UNSUPPORTED_ENVS = {"multline", "multline*", "eqnarray", "eqnarray*", "flalign", "flalign*"}


def _context() -> ms.LatexContextDb:
    db = ms.LatexContextDb()
    macros = [ms.MacroSpec(name, "".join(_PYLATEXENC_SPEC[k] for k in spec))
              for name, spec in _ARGS.items()]
    macros += [ms.MacroSpec(a, "{") for a in TEXT_ACCENTS]
    envs = [ms.EnvironmentSpec(n, "".join(_PYLATEXENC_SPEC[k] for k in a))
            for n, a in ENVIRONMENTS.items()]
    envs += [ms.EnvironmentSpec(n, "{" if n.startswith("alignat") else "")
             for n in [*WRAPPERS, *UNSUPPORTED_ENVS]]
    db.add_context_category("texlens", macros=macros, environments=envs, specials=[])
    db.set_unknown_macro_spec(ms.MacroSpec(""))
    db.set_unknown_environment_spec(ms.EnvironmentSpec(""))
    return db


_CONTEXT = _context()


@dataclass
class _Item:
    """One unit of a math list: a token, a command with its arguments, a group, a marker."""

    # tok | cmd | group | env | scripted (a base with its scripts) | markers that the
    # assembly consumes: sup | sub | prime | infix | switch | delim
    kind: str
    toks: list[str]
    pos: int
    inner: list[_Item] = field(default_factory=list)  # a group's items
    ordish: bool = False  # one unscripted Ord atom: braces around it change nothing

    @property
    def head(self) -> str:
        return self.toks[0] if self.toks else ""


def _braced(toks: Sequence[str]) -> list[str]:
    return ["{", *toks, "}"]


class _Normalizer:
    def __init__(self, source: str):
        self.src = source

    def error(self, why: str, pos: int | None = None) -> LatexError:
        if pos is None:
            return LatexError(why)
        near = self.src[max(0, pos - 15):pos + 25].replace("\n", " ")
        return LatexError(f"{why} (at character {pos}: ...{near}...)")

    def parse(self, text: str) -> list[lw.LatexNode]:
        try:
            walker = lw.LatexWalker(text, latex_context=_CONTEXT, tolerant_parsing=False)
            nodes, _, _ = walker.get_latex_nodes(pos=0)
        except lw.LatexWalkerError as e:
            msg = str(e).split("\n")[0]
            raise LatexError(f"cannot parse {text!r}: {msg}") from None
        return nodes

    # ---- math mode -----------------------------------------------------------------
    def items(self, nodes: Iterable[lw.LatexNode], small: bool = False) -> list[_Item]:
        """Math nodes -> items, each a complete unit (a command carries its arguments)."""
        out: list[_Item] = []
        for n in nodes:
            if n is None or n.isNodeType(lw.LatexCommentNode):
                continue
            if n.isNodeType(lw.LatexCharsNode):
                out += self.chars(n)
            elif n.isNodeType(lw.LatexGroupNode):
                if n.delimiters[0] == "[":  # pylatexenc nests [..] in an optional argument
                    raise self.error("'[..]' inside an optional argument: LaTeX ends the "
                                     "argument at the first ']' (brace the inner one)", n.pos)
                sub = small or bool(out and out[-1].kind in ("sup", "sub"))
                inner = self.scope(self.items(n.nodelist, sub))
                out.append(_Item("group", _braced(_tokens(inner)), n.pos, inner))
            elif n.isNodeType(lw.LatexMacroNode) and n.macroname == "ensuremath":
                arg = n.nodeargd.argnlist[0]  # already in math: the argument as it is
                self.check_arg("\\ensuremath", arg)
                out += self.items(arg.nodelist if arg.isNodeType(lw.LatexGroupNode) else [arg],
                                  small)
            elif n.isNodeType(lw.LatexMacroNode):
                # An argument of ^ or _ is set smaller (\mbox does not shrink, \text does).
                item = self.macro(n, small or bool(out and out[-1].kind in ("sup", "sub")))
                if item is not None:
                    out.append(item)
            elif n.isNodeType(lw.LatexEnvironmentNode):
                out.append(self.environment(n, n.environmentname, small))
            elif n.isNodeType(lw.LatexMathNode):
                raise self.error("math shift ($ or \\[) inside math", n.pos)
            else:
                raise self.error(f"unexpected {type(n).__name__}", n.pos)
        for i in range(len(out) - 1, 0, -1):  # fontmath.ltx defines \neq as \not=
            if out[i].toks == ["="] and out[i - 1].toks == ["\\not"]:
                out[i - 1:i + 1] = [_Item("tok", ["\\neq"], out[i - 1].pos)]
        return out

    def chars(self, n: lw.LatexCharsNode) -> list[_Item]:
        out = []
        for k, c in enumerate(n.chars):
            pos = n.pos + k
            if c.isspace():
                continue
            if c == "#":
                raise self.error("macro parameter '#' outside a definition", pos)
            kind = {"^": "sup", "_": "sub", "'": "prime"}.get(c, "tok")
            out.append(_Item(kind, [c], pos, ordish=c in ORD_CHARS))
        return out

    def macro(self, n: lw.LatexMacroNode, small: bool) -> _Item | None:
        name = "\\" + n.macroname
        if n.macroname == " ":
            name = "\\nobreakspace"  # control space: the glue of ~ without its {} atom
        if name in DEFINITIONS:
            raise self.error(f"macro definitions ({name}) are not supported", n.pos)
        if name in TEXT_ONLY or n.macroname in TEXT_ACCENTS:
            raise self.error(f"{name} cannot be typeset in math mode", n.pos)
        if name in DROPPED:
            return None
        if name in ("\\begin", "\\end"):
            raise self.error(f"unmatched {name}", n.pos)
        if name in _BOX_TO_TEXT and not small:
            name = "\\text"
        if name in _GROUPED_ALIASES:
            inner = _Item("tok", [_GROUPED_ALIASES[name]], n.pos)
            return _Item("group", _braced(inner.toks), n.pos, [inner])
        name = ALIASES.get(name, name)
        if name in ("^", "_"):
            return _Item("sup" if name == "^" else "sub", [name], n.pos)
        if name == "\\\\":
            end = n.pos + n.len
            if self.src[end:end + 1] in ("[", "*"):
                raise self.error("row spacing \\\\[..] or \\\\* is not supported", n.pos)
            return _Item("tok", [name], n.pos)
        if name in FONT_SWITCHES:
            return _Item("switch", [FONT_SWITCHES[name]], n.pos)
        if name in INFIX:
            return _Item("infix", [name], n.pos)
        if name in DELIMITED:
            return _Item("delim", [name], n.pos)
        spec = _ARGS.get(name[1:])
        if not spec:
            # An alias may be a character (\\vert is |): its class is the character's.
            return _Item("tok", [name], n.pos, ordish=name in ORD_SYMBOLS or name in ORD_CHARS)
        return self.command(name, spec, n, small)

    def command(self, name: str, spec: str, n: lw.LatexMacroNode, small: bool) -> _Item:
        toks = [name]
        args = n.nodeargd.argnlist if n.nodeargd else []
        # Arguments of fractions, roots' indices and stacked symbols are set smaller.
        shrink = small or name in ("\\frac", "\\tfrac", "\\binom", "\\tbinom", "\\genfrac",
                                   "\\substack", "\\overset", "\\underset", "\\stackrel")
        for kind, arg in zip(spec, args, strict=False):
            if kind == "s":
                if arg is not None:
                    toks[0] += "*"
                continue
            if arg is None:
                if kind in "oR":
                    continue
                raise self.error(f"{name} is missing an argument", n.pos)
            self.check_arg(name, arg)
            if kind == "o":
                inner = self.arg_math(arg, True)
                if _bracket_at_top(inner):  # \sqrt[{]}]: the braces keep LaTeX reading on
                    inner = _braced(inner)
                toks += ["[", *inner, "]"]
            elif kind == "R":
                toks.append("[" + "".join(self.raw(arg, name)) + "]")
            elif kind == "m":
                toks += _braced(self.arg_math(arg, shrink))
            elif kind == "t":
                # An empty text is the one token "{}": "{ }" joined is \text{ }, a space.
                text = self.text_arg(arg)
                toks += _braced(text) if text else ["{}"]
            else:
                # "{ }" is one space token to TeX, and \genfrac tests its arguments for
                # emptiness: an empty raw argument is the single token "{}".
                raw = self.raw(arg, name)
                toks += _braced(raw) if raw else ["{}"]
        if toks[0] == "\\operatorname" and "".join(toks[2:-1]) in NAMED_OPERATORS:
            return _Item("tok", ["\\" + "".join(toks[2:-1])], n.pos)
        return _Item("cmd", toks, n.pos, ordish=toks[0] in _ORD_COMMANDS)

    def check_arg(self, name: str, arg: lw.LatexNode) -> None:
        """pylatexenc takes a stray '}', '^', '&' or a paragraph as an argument; TeX cannot."""
        if arg.isNodeType(lw.LatexCharsNode):
            if arg.chars == "" or arg.chars.strip() == "":
                raise self.error(f"{name} is missing an argument", arg.pos)
            if arg.chars in ("^", "_", "&", "#"):
                raise self.error(f"{name} is missing an argument (got {arg.chars!r})", arg.pos)
        elif arg.isNodeType(lw.LatexMacroNode):
            sub = "\\" + arg.macroname
            if _ARGS.get(arg.macroname) or sub in ("\\\\", "\\left", "\\right", "\\begin",
                                                   "\\end") or sub in INFIX:
                raise self.error(f"{sub} cannot be an unbraced argument of {name}", arg.pos)

    def arg_math(self, arg: lw.LatexNode, small: bool) -> list[str]:
        nodes = arg.nodelist if arg.isNodeType(lw.LatexGroupNode) else [arg]
        return _tokens(_unwrap(self.scope(self.items(nodes, small))))

    def raw(self, arg: lw.LatexNode, name: str) -> list[str]:
        """A dimension, colour or column spec: TeX reads it as characters, not math."""
        if not arg.isNodeType(lw.LatexGroupNode):
            text = self.src[arg.pos:arg.pos + arg.len]
        else:
            text = self.src[arg.pos + 1:arg.pos + arg.len - 1]
        text = text.strip()
        if not text:
            return []
        if re.search(r"\s", text):
            text = re.sub(r"\s+", "", text)
            if re.search(r"\\[A-Za-z]+[A-Za-z]", text):
                raise self.error(f"spaces in the argument of {name} are not supported", arg.pos)
        return [text]

    # ---- assembling a math list ----------------------------------------------------
    def scope(self, items: list[_Item]) -> list[_Item]:
        """One group's items: cells, \\left..\\right, infix fractions, switches, scripts."""
        cells: list[list[_Item]] = [[]]
        for it in items:  # & and \\ end TeX's group for \over and \rm, like a brace
            if it.head in ("&", "\\\\"):
                cells += [[it], []]
            else:
                cells[-1].append(it)
        out: list[_Item] = []
        for cell in cells:
            if len(cell) == 1 and cell[0].head in ("&", "\\\\"):
                out += cell
                continue
            out += self.cell(self.left_right(cell))
        return out

    def left_right(self, items: list[_Item]) -> list[_Item]:
        """Pair \\left with \\right (each a group to TeX) and give sizing commands their
        delimiter."""
        out: list[_Item] = []
        stack: list[tuple[_Item, list[_Item]]] = []
        i = 0
        while i < len(items):
            it = items[i]
            if it.kind == "delim":
                if i + 1 >= len(items) or items[i + 1].kind != "tok" or \
                        items[i + 1].head not in DELIMITERS:
                    got = items[i + 1].head if i + 1 < len(items) else "nothing"
                    raise self.error(f"{it.head} needs a delimiter, got {got!r}", it.pos)
                it = _Item("tok", [it.head, items[i + 1].head], it.pos)
                i += 1
                if it.head == "\\left":
                    stack.append((it, out))
                    out = []
                    i += 1
                    continue
                if it.head == "\\right":
                    if not stack:
                        raise self.error("\\right without \\left", it.pos)
                    left, outer = stack.pop()
                    inner = self.cell(out)
                    out = outer + [_Item("cmd", left.toks + _tokens(inner) + it.toks, left.pos)]
                    i += 1
                    continue
                if it.head == "\\middle" and not stack:
                    raise self.error("\\middle outside \\left..\\right", it.pos)
            out.append(it)
            i += 1
        if stack:
            raise self.error("\\left without \\right", stack[-1][0].pos)
        return out

    def cell(self, items: list[_Item]) -> list[_Item]:
        infix = [k for k, it in enumerate(items) if it.kind == "infix"]
        if len(infix) > 1:
            raise self.error("two of \\over/\\choose/\\atop in one group (ambiguous)",
                             items[infix[1]].pos)
        if infix:
            k = infix[0]
            num, den = items[:k], items[k + 1:]
            switches = [it for it in num if it.kind == "switch"]
            if switches:  # the font set in the numerator is still on in the denominator
                den = [switches[-1], *den]
            parts = [_tokens(_unwrap(self.cell(p))) for p in (num, den)]
            head = {"\\over": ["\\frac"], "\\choose": ["\\binom"],
                    "\\atop": ["\\genfrac", "{}", "{}", "{", "0pt", "}", "{}"]}
            toks = head[items[k].head] + _braced(parts[0]) + _braced(parts[1])
            return [_Item("cmd", toks, items[k].pos, ordish=True)]
        for k, it in enumerate(items):
            if it.kind == "switch":
                rest = _tokens(_unwrap(self.cell(items[k + 1:])))
                cmd = _Item("cmd", [it.head, *_braced(rest)], it.pos, ordish=True)
                items = items[:k] + [cmd]
                break
        # Groups after an unknown macro may be its arguments: their braces stay.
        kept: list[_Item] = []
        unknown = False
        for k, it in enumerate(items):
            if unknown and it.kind == "group":
                kept.append(it)
            else:
                one = _unwrap_group(it)
                inner = _spliced(one, items[k - 1] if k else None,
                                 items[k + 1] if k + 1 < len(items) else None)
                kept += inner if inner is not None else [one]
            unknown = _unknown(it) or (unknown and it.kind == "group")
        return self.scripts(kept)

    def scripts(self, items: list[_Item]) -> list[_Item]:
        """Attach ^, _ and primes to their base: ``base [\\limits] _ { } ^ { }``."""
        out: list[_Item] = []
        # The base being built: its item, limits tokens, sub, sup, and whether the last
        # thing read was a prime (a ^ may follow primes and joins their superscript).
        base: _Item | None = None
        mods: list[str] = []
        sub: list[str] | None = None
        sup: list[str] | None = None
        primed = False

        def flush() -> None:
            nonlocal base, mods, sub, sup, primed
            if base is not None:
                if sub is None and sup is None and not mods:
                    out.append(base)
                else:
                    toks = base.toks + mods
                    if sub is not None:
                        toks += ["_", *_braced(sub)]
                    if sup is not None:
                        toks += ["^", *_braced(sup)]
                    out.append(_Item("scripted", toks, base.pos))
            base, mods, sub, sup, primed = None, [], None, None, False

        i = 0
        while i < len(items):
            it = items[i]
            if it.kind in ("sup", "sub", "prime") or it.head in ("\\limits", "\\nolimits"):
                if base is None:  # TeX gives a script without a base an empty one
                    base = _Item("tok", [], it.pos)
                if it.head in ("\\limits", "\\nolimits"):
                    mods.append(it.head)
                    i += 1
                    continue
                if it.kind == "prime":
                    if sup is not None and not primed:
                        raise self.error("double superscript (a prime after ^)", it.pos)
                    sup = (sup or []) + ["\\prime"]
                    primed = True
                    i += 1
                    continue
                if i + 1 >= len(items) or items[i + 1].kind in ("sup", "sub", "prime",
                                                                   "infix", "switch"):
                    raise self.error(f"{it.head} is missing its argument", it.pos)
                arg = items[i + 1]
                if arg.head in ("&", "\\\\") or arg.head in NON_ATOMS:
                    raise self.error(f"{it.head} is missing its argument", it.pos)
                content = arg.toks[1:-1] if arg.kind == "group" else arg.toks
                if arg.kind == "group" and len(arg.inner) == 1 and arg.inner[0].kind == "group":
                    content = arg.inner[0].toks[1:-1]  # x^{{a}} is x^{a}
                if it.kind == "sub":
                    if sub is not None:
                        raise self.error("double subscript", it.pos)
                    sub = content
                else:
                    if sup is not None and not primed:
                        raise self.error("double superscript", it.pos)
                    if sup is not None and arg.kind == "group" and len(arg.inner) > 1 \
                            and _spliced(arg, None, None) is None:
                        content = _braced(content)  # x'^{a+} is x^{\prime{a+}} to TeX
                    sup = (sup or []) + content
                primed = False
                i += 2
                continue
            flush()
            if it.kind in ("tok", "cmd", "group", "env") and it.head not in NON_ATOMS and \
                    it.head not in ("&", "\\\\"):
                base = it
            else:
                out.append(it)
            i += 1
        flush()
        return out

    # ---- environments --------------------------------------------------------------
    def environment(self, n: lw.LatexEnvironmentNode, name: str, small: bool) -> _Item:
        if name in WRAPPERS or name in UNSUPPORTED_ENVS:
            raise self.error(f"\\begin{{{name}}} only works as the whole formula", n.pos)
        spec = ENVIRONMENTS.get(name)
        if spec is None:
            raise self.error(f"unknown environment {name!r}", n.pos)
        toks = [f"\\begin{{{name}}}"]
        args = n.nodeargd.argnlist if n.nodeargd else []
        for kind, arg in zip(spec, args, strict=False):
            if arg is None:
                if kind == "R":
                    continue
                raise self.error(f"\\begin{{{name}}} is missing an argument", n.pos)
            if kind == "R":
                toks[0] += "[" + "".join(self.raw(arg, name)) + "]"  # as for aligned, below
            elif name in ("array", "subarray"):
                toks += _braced(self.colspec(arg))
            else:
                toks += _braced(self.raw(arg, name))
        items = self.items(n.nodelist, small or name in ("smallmatrix", "subarray"))
        # amsmath takes [t], [b] or [c] right after \begin{aligned} as a position and any
        # other [..] as content (its \alignsafe@testopt); it does not skip a space first,
        # so the position joins the \begin token.
        if name in ("aligned", "gathered") and len(items) >= 3 and \
                [it.head for it in items[:3]] in (["[", p, "]"] for p in "tbc"):
            toks[0] += "".join(it.head for it in items[:3])
            items = items[3:]
        body = self.scope(items)
        toks += _tokens(body) + [f"\\end{{{name}}}"]
        return _Item("env", toks, n.pos)

    def colspec(self, arg: lw.LatexNode) -> list[str]:
        """Column letters one token each; a braced part (p{3cm}, @{}) one token."""
        if not arg.isNodeType(lw.LatexGroupNode):
            return self.raw(arg, "array")
        text = self.src[arg.pos + 1:arg.pos + arg.len - 1]
        out: list[str] = []
        for m in re.finditer(r"\{([^{}]*)\}|\\[A-Za-z]+|\S", text):
            if m.group(1) is not None:
                inner = m.group(1).strip()
                if re.search(r"\s", inner):
                    raise self.error("spaces inside a braced part of a column spec", arg.pos)
                out += _braced([inner] if inner else [])
            else:
                out.append(m.group(0))
        return out

    # ---- text mode -----------------------------------------------------------------
    def text_arg(self, arg: lw.LatexNode) -> list[str]:
        if not arg.isNodeType(lw.LatexGroupNode):
            return self.text(arg.nodelist if hasattr(arg, "nodelist") else [arg])
        start = arg.pos + 1
        content = self.src[start:arg.pos + arg.len - 1]
        pieces = content[1:-1].split(" ") if len(content) >= 2 else []
        if len(content) > 1 and content.startswith(" ") and content.endswith(" ") \
                and all(_TOKEN.fullmatch(p) for p in pieces):
            # Our own output read back: the spaces only separate tokens.
            compact = _Normalizer(_join_text(pieces))
            return compact.text(compact.parse(compact.src))
        return self.text(arg.nodelist)

    def text(self, nodes: Iterable[lw.LatexNode]) -> list[str]:
        out: list[str] = []
        for n in nodes:
            if n is None or n.isNodeType(lw.LatexCommentNode):
                continue
            if n.isNodeType(lw.LatexCharsNode):
                for c in n.chars:
                    if c.isspace():
                        if not out or out[-1] != " ":
                            out.append(" ")  # runs of spaces are one space in TeX
                    elif c in "^_#&":
                        raise self.error(f"{c!r} in text needs math mode", n.pos)
                    else:
                        out.append(c)
            elif n.isNodeType(lw.LatexGroupNode):
                out += _braced(self.text(n.nodelist))
            elif n.isNodeType(lw.LatexMathNode):
                inner = self.scope(self.items(n.nodelist))
                out += ["$", *_tokens(inner), "$"]
            elif n.isNodeType(lw.LatexMacroNode):
                name = "\\" + n.macroname
                if name in DEFINITIONS or name in _NOT_IN_TEXT:
                    raise self.error(f"{name} is not supported in a text argument", n.pos)
                if n.macroname == " ":
                    out.append(" ")
                    continue
                spec = _ARGS.get(n.macroname, "t" if n.macroname in TEXT_ACCENTS else "")
                out.append(name)
                args = n.nodeargd.argnlist if n.nodeargd else []
                for kind, arg in zip(spec, args, strict=False):
                    if arg is None:
                        continue
                    if kind == "s":
                        out[-1] += "*"
                    elif kind in "mo":
                        out += _braced(self.arg_math(arg, True))
                    else:
                        out += _braced(self.text_arg(arg)) if arg.isNodeType(
                            lw.LatexGroupNode) else self.text([arg])
            else:
                raise self.error(f"{type(n).__name__} is not supported in text", n.pos)
        return ["~" if t == " " else t for t in out]


_TOKEN = re.compile(r"\\[A-Za-z]+\*?|\\.|[^\s]")


def _join_text(toks: Sequence[str]) -> str:
    """Text-mode tokens back to text: no spaces, except after a control word (TeX skips it)."""
    out = ""
    for t in toks:
        if out and re.search(r"\\[A-Za-z]+\*?$", out) and (t[0].isalpha() or t == "*"):
            out += " "
        out += t
    return out


def _tokens(items: Iterable[_Item]) -> list[str]:
    return [t for it in items for t in it.toks]


def _bracket_at_top(toks: Sequence[str]) -> bool:
    depth = 0
    for t in toks:
        depth += (t == "{") - (t == "}")
        if depth == 0 and t == "]":
            return True
    return False


def _unknown(it: _Item) -> bool:
    return it.kind == "tok" and re.fullmatch(r"\\[A-Za-z]+", it.head) is not None \
        and it.head not in SYMBOLS


def _unwrap_group(it: _Item) -> _Item:
    """{x} -> x when the group holds one Ord atom (TeX drops such braces itself)."""
    while it.kind == "group" and len(it.inner) == 1 and (
            it.inner[0].ordish or it.inner[0].kind == "group"):
        it = it.inner[0]
    return it


def _ord_edge(it: _Item) -> bool:
    """Whether TeX spaces this item as an Ord atom (a scripted one by its base)."""
    if it.kind == "group":
        return True
    if it.kind == "tok":
        return it.ordish
    if it.kind == "cmd":
        return it.ordish or it.head in _SPACED_AS_ORD
    if it.kind == "scripted":
        return it.head in ("{", *_SPACED_AS_ORD) or it.head in ORD_SYMBOLS or \
            it.head in ORD_CHARS
    return False


def _spliced(it: _Item, before: _Item | None, after: _Item | None) -> list[_Item] | None:
    """{a+b} -> a + b: the items of a group whose first and last atoms are Ords, when
    nothing outside binds to the group as a whole (not a script's argument, no script or
    \\limits after it), and nothing inside is scoped by its braces (style, colour).

    TeX sets such a group as one Ord atom (TeXbook ch. 17); spliced into the list, its
    first and last atoms are Ords too, so every space between atoms, inside and at both
    ends, is the same: the braces are not visible, and a reader of the page cannot know
    whether they were there. (``{+}``, ``{a+}``, ``{}`` and ``{a b}^2`` keep them.)"""
    if it.kind != "group" or not it.inner:
        return None
    if before is not None and before.kind in ("sup", "sub"):
        return None
    if after is not None and (after.kind in ("sup", "sub", "prime")
                              or after.head in ("\\limits", "\\nolimits")):
        return None
    if not (_ord_edge(it.inner[0]) and _ord_edge(it.inner[-1])):
        return None
    if any(x.head in _SCOPED for x in it.inner):
        return None
    return it.inner


def _unwrap(items: list[_Item]) -> list[_Item]:
    """An argument that is one group: its content ({{a+b}} -> {a+b})."""
    while len(items) == 1 and items[0].kind == "group":
        items = items[0].inner
    return items


def _strip_wrappers(norm: _Normalizer, nodes: list) -> tuple[list, str | None, list]:
    """Drop $, \\[, equation* around the formula; return (nodes, env to draw it in, args)."""
    while True:
        real = [n for n in nodes if not (n.isNodeType(lw.LatexCommentNode) or (
            n.isNodeType(lw.LatexCharsNode) and not n.chars.strip()))]
        if len(real) == 1 and real[0].isNodeType(lw.LatexMathNode):
            nodes = real[0].nodelist
            continue
        if len(real) == 1 and real[0].isNodeType(lw.LatexEnvironmentNode):
            name = real[0].environmentname
            if name in UNSUPPORTED_ENVS:
                raise norm.error(f"\\begin{{{name}}} has no display-math equivalent", 0)
            if name in WRAPPERS:
                args = real[0].nodeargd.argnlist if real[0].nodeargd else []
                if WRAPPERS[name] is None:
                    nodes = real[0].nodelist
                    continue
                return real[0].nodelist, WRAPPERS[name], args
        for n in real:
            if n.isNodeType(lw.LatexMathNode):
                raise norm.error("the formula mixes text and math ($ inside)", n.pos)
        return nodes, None, []


def normalize(latex: str) -> list[str]:
    """Any LaTeX math -> canonical tokens (see the module docstring). Idempotent.

    Raises LatexError (a ValueError) when the formula cannot be typeset as math or uses
    something not supported (definitions, text-only commands, unbalanced groups).
    """
    if not latex.strip():
        raise LatexError("empty formula")
    norm = _Normalizer(latex)
    nodes, env, args = _strip_wrappers(norm, norm.parse(latex))
    items = _unwrap(norm.scope(norm.items(nodes)))
    while items and items[0].head == "\\displaystyle":  # a display formula already is
        items = _unwrap(items[1:])
    if env is None:
        for it in items:
            if it.head in ("&", "\\\\"):
                raise norm.error(f"{it.head} outside an alignment environment", it.pos)
    toks = _tokens(items)
    if env is not None:
        head = [f"\\begin{{{env}}}"]
        if env == "alignedat":
            if not args or args[0] is None:
                raise norm.error("\\begin{alignat} is missing its column count", 0)
            head += _braced(norm.raw(args[0], "alignat"))
        toks = head + toks + [f"\\end{{{env}}}"]
    for t in toks:
        if not t or re.search(r"\s", t):
            raise norm.error(f"internal error: token {t!r}")
    return toks


def spelt_out(token: str) -> list[str]:
    """The tokens of an older spelling that normalise to ``token``: ``\\cosh`` was
    ``\\operatorname { c o s h }``. A model trained before the change can write it so."""
    if token[1:] in NAMED_OPERATORS and token.startswith("\\"):
        return ["\\operatorname", "{", *token[1:], "}"]
    return [token]


def to_latex(tokens: Sequence[str]) -> str:
    """Tokens -> LaTeX that typesets like the formula they came from.

    ``" ".join(tokens)``, except inside text arguments (``\\text { i f }``), whose tokens
    are joined without spaces since text mode would print them.
    """
    out = ""
    # Open braces: "m" math group, "t" text argument, "x" group inside text, "$" math in text.
    stack: list[str] = []
    text_next = False  # the next "{" opens a text argument
    for t in tokens:
        if stack and stack[-1] in "tx":
            if t == "$":
                stack.append("$")
            elif t == "{":
                stack.append("x")
            elif t == "}":
                stack.pop()
            if re.search(r"\\[A-Za-z]+\*?$", out) and (t[0].isalpha() or t == "*"):
                out += " "  # TeX skips a space after a control word, and needs one here
            out += t
            continue
        if t == "$" and stack and stack[-1] == "$":
            stack.pop()
        elif t == "{":
            stack.append("t" if text_next else "m")
        elif t == "}" and stack:
            stack.pop()
        text_next = t in TEXT_COMMANDS or t in ("\\tag", "\\tag*")
        out += (" " if out else "") + t
    return out


# ---- token lists -------------------------------------------------------------------
# Code that works on caption tokens rather than source text (texlens.tokens, crohme_truth,
# synth.render, handwriting.parse) reads groups and arguments with these, so TeX's brace
# rules are written once.

_LEX = re.compile(r"\\[A-Za-z]+|\\.|\S", re.S)
# What TeX cannot take as a one-token argument: a script, alignment or closing brace.
_NOT_AN_ARGUMENT = {"}", "^", "_", "&"}


def lex(latex: str) -> list[str]:
    """TeX's tokens of a string: control words (``\\frac``), control symbols (``\\{``,
    ``\\,``, ``\\ ``) and single characters; the spaces between them are dropped."""
    return _LEX.findall(latex)


def check_braces(tokens: Sequence[str]) -> None:
    """Raise LatexError unless every ``{`` has its ``}`` (counts alone would pass ``} {``)."""
    depth = 0
    for t in tokens:
        depth += (t == "{") - (t == "}")
        if depth < 0:
            raise LatexError("unbalanced braces: '}' without '{'")
    if depth:
        raise LatexError("unbalanced braces: '{' without '}'")


def group_end(tokens: Sequence[str], i: int) -> int:
    """One past the ``}`` that closes the ``{`` at ``tokens[i]``."""
    depth = 0
    for k in range(i, len(tokens)):
        depth += (tokens[k] == "{") - (tokens[k] == "}")
        if depth == 0:
            return k + 1
    raise LatexError("unbalanced braces: '{' without '}'")


def bracket_end(tokens: Sequence[str], i: int) -> int:
    """One past the ``]`` that ends the optional argument opened at ``tokens[i]``: like
    LaTeX, the first ``]`` outside braces (``\\sqrt[{]}]{x}`` has the index ``{]}``)."""
    depth = 0
    for k in range(i + 1, len(tokens)):
        depth += (tokens[k] == "{") - (tokens[k] == "}")
        if depth == 0 and tokens[k] == "]":
            return k + 1
    raise LatexError("unclosed '[' (optional argument)")


def split_args(tokens: Sequence[str], i: int, spec: str, name: str,
               nested: dict[str, str] | None = None) -> tuple[list[list[str] | None], int]:
    """The arguments of command ``name`` that start at ``tokens[i]``, and the index after
    them. ``spec`` has a letter per argument: ``m`` a braced group or one token, ``o`` an
    optional ``[..]`` (None when absent). Each comes without its braces or brackets.

    With ``nested`` (command -> spec), an unbraced argument that is one of those commands
    takes its own arguments along: ``x^\\frac12`` is valid LaTeX (CROHME truth has it).
    """
    args: list[list[str] | None] = []
    for kind in spec:
        if kind == "o":
            if i < len(tokens) and tokens[i] == "[":
                end = bracket_end(tokens, i)
                args.append(list(tokens[i + 1:end - 1]))
                i = end
            else:
                args.append(None)
            continue
        if i >= len(tokens):
            raise LatexError(f"{name} is missing an argument at the end of the formula")
        t = tokens[i]
        if t == "{":
            end = group_end(tokens, i)
            args.append(list(tokens[i + 1:end - 1]))
        elif t in _NOT_AN_ARGUMENT:
            raise LatexError(f"{name} is missing an argument (got {t!r})")
        else:
            end = i + 1
            if nested and t in nested:
                end = split_args(tokens, end, nested[t], t, nested)[1]
            args.append(list(tokens[i:end]))
        i = end
    return args, i
