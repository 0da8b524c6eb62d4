"""Formulas typeset by real TeX (latex + dvipng), many per run.

mathtext (render.py) is a renderer of its own: a model trained only on it reads
formulas typeset by TeX markedly worse. Here a batch of formulas becomes one LaTeX
document, one formula per page, compiled once; dvipng then draws every page with a
tight bounding box. A formula that does not compile is found from the log's line
numbers, dropped, and the rest compiled again, so one bad formula never costs the
batch.

Needs ``latex``, ``dvipng`` and the packages of ``FONTS`` (``make tex`` installs the
Debian packages); ``tex_missing()`` says what is absent.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image


@dataclass
class RenderFailure:
    """Why one formula produced no image (the LaTeX error, shortened)."""

    message: str


# amsmath..mathtools go before the font package: newtxmath, newpxmath and mathdesign
# redefine amssymb's symbols and refuse to be followed by it. bm goes after it, so \bm
# finds the family's bold math fonts.
_BEFORE = r"\usepackage{amsmath,amssymb,amsfonts,mathtools}"
# bm reserves math alphabets for bold versions of every font; with newtx and others that
# leaves too few for a formula with several \mathsf/\mathit/... ("Too many math
# alphabets"): bmmax/hmmax 0 make \boldsymbol switch \mathversion instead.
_AFTER = r"\providecommand\bmmax{0}\providecommand\hmmax{0}\usepackage{mathrsfs,bm}"

# Font family -> preamble lines. Each has its own math italic, symbols and large
# operators (Latin Modern differs from Computer Modern in weight and outline only).
FONTS: dict[str, str] = {
    "cm": "",
    "lmodern": r"\usepackage[T1]{fontenc}\usepackage{lmodern}",
    "times": r"\usepackage{newtxtext}\usepackage{newtxmath}",
    "palatino": r"\usepackage{newpxtext}\usepackage{newpxmath}",
    "utopia": r"\usepackage{fourier}",
    "euler": r"\usepackage[T1]{fontenc}\usepackage{tgpagella}\usepackage[euler-digits]{eulervm}",
    "kpfonts": r"\usepackage{kpfonts}",
    "cmbright": r"\usepackage{cmbright}",
    # mathdesign takes many math families; bm then must borrow bold via \mathversion.
    "charter": r"\newcommand\bmmax{0}\newcommand\hmmax{0}\usepackage[charter]{mathdesign}",
    "libertine": r"\usepackage{libertine}\usepackage[libertine]{newtxmath}",
}

# TeX wraps log lines at 79 characters; unwrapped, one error is one line.
_TEX_ENV = {"max_print_line": "100000", "error_line": "254", "half_error_line": "238"}
_ERROR = re.compile(r"^(.*?):(\d+): (.*)$")
_ENVIRONMENT = re.compile(r"\\(begin|end)\s*\{([^}]*)\}")


def preamble(font: str) -> str:
    if font not in FONTS:
        raise ValueError(f"unknown TeX font family {font!r}; known: {', '.join(FONTS)}")
    return "\n".join([
        r"\documentclass[10pt]{article}", _BEFORE, FONTS[font], _AFTER,
        # Wide pages: no overfull boxes, no page breaks inside a tall formula.
        r"\setlength{\textwidth}{80in}\setlength{\textheight}{80in}",
        r"\setlength{\parindent}{0pt}\pagestyle{empty}",
    ])


def _packages() -> list[str]:
    names = set()
    for text in [_BEFORE, _AFTER, *FONTS.values()]:
        for group in re.findall(r"\\usepackage(?:\[[^\]]*\])?\{([^}]*)\}", text):
            names.update(p.strip() for p in group.split(","))
    return sorted(names)


@functools.lru_cache(maxsize=1)
def tex_missing() -> str | None:
    """None when latex, dvipng and every family's packages are installed, else what is not."""
    tools = [t for t in ("latex", "dvipng", "kpsewhich") if shutil.which(t) is None]
    if tools:
        return f"not installed: {', '.join(tools)} (run `make tex`)"
    # xstring and fontaxes: loaded by newtx and libertine (texlive-latex-extra).
    files = [f"{p}.sty" for p in _packages()] + ["xstring.sty", "fontaxes.sty"]
    out = subprocess.run(["kpsewhich", *files], capture_output=True, text=True).stdout
    found = {Path(line).name for line in out.splitlines()}
    missing = [f for f in files if f not in found]
    return f"TeX packages not found: {', '.join(missing)} (run `make tex`)" if missing else None


def _precheck(formula: str) -> str | None:
    """Faults that would spill over into the next formula's page: caught before TeX."""
    if not formula.strip():
        return "empty formula"
    if "\n" in formula or "\r" in formula:
        return "line break inside the formula"
    depth = 0
    # Drop escaped characters (\{ \} \$ \\) first; what is left is TeX's grouping.
    for c in re.sub(r"\\.", "", formula):
        if c == "$":
            return "'$' inside the formula"
        depth += (c == "{") - (c == "}")
        if depth < 0:
            return "unbalanced braces: '}' without '{'"
    if depth:
        return "unbalanced braces: '{' without '}'"
    # A mismatched environment throws TeX's error recovery off the one-page-per-formula
    # layout (and can run it for a minute): \begin{bmatrix} ... \end{matrix}.
    opened: list[str] = []
    for kind, name in _ENVIRONMENT.findall(formula):
        if kind == "begin":
            opened.append(name)
        elif not opened or opened.pop() != name:
            return f"\\end{{{name}}} does not close the environment open there"
    return f"\\begin{{{opened[-1]}}} is never closed" if opened else None


def _document(formulas: Sequence[str], font: str, display: bool) -> tuple[str, list[int]]:
    """The LaTeX source and the first line of each formula's three-line block."""
    lines = preamble(font).split("\n") + [r"\begin{document}"]
    starts = []
    style = r"\displaystyle" if display else ""
    for f in formulas:
        # An \mbox, so an inline formula never breaks across lines. The formula has a
        # line of its own: a '%' in it then comments out nothing of ours.
        starts.append(len(lines) + 1)
        lines += [rf"\mbox{{${style}%", f, r"$}\newpage"]
    lines.append(r"\end{document}")
    return "\n".join(lines) + "\n", starts


def _short(msg: str, limit: int = 200) -> str:
    msg = " ".join(msg.split())
    return msg if len(msg) <= limit else msg[: limit - 3] + "..."


def _errors(log: str, job: str, starts: list[int]) -> tuple[dict[int, str], str | None]:
    """Per-formula first error (position -> message), and an error outside any formula."""
    per: dict[int, str] = {}
    lines = log.splitlines()
    for k, line in enumerate(lines):
        m = _ERROR.match(line)
        if not m:
            continue
        where, lineno, msg = m.group(1), int(m.group(2)), m.group(3)
        # The message may go on one line further (e.g. "LaTeX Error: \n Command ...").
        if k + 1 < len(lines) and lines[k + 1].strip() and not lines[k + 1].startswith("l."):
            msg += " " + lines[k + 1]
        if Path(where).name != f"{job}.tex" or not starts or lineno < starts[0]:
            return per, _short(f"{where}:{lineno}: {msg}")
        # A macro argument is read to its end before it runs, so TeX may name the last
        # line of the block (or, for \end{document}, a line after it): the block at or
        # before the line is the culprit; but an error at \end{document} after an earlier
        # one is that one's aftermath, not the last formula's fault.
        if lineno >= starts[-1] + 3 and per:
            continue
        pos = int(np.searchsorted(starts, lineno, side="right")) - 1
        per.setdefault(pos, _short(msg))
    return per, None


def _coverage(path: Path) -> np.ndarray | None:
    """The page's ink coverage (alpha of dvipng's transparent PNG), cropped to the ink."""
    with Image.open(path) as im:
        ink = np.asarray(im.convert("RGBA"))[..., 3]
    rows, cols = np.flatnonzero(ink.any(1)), np.flatnonzero(ink.any(0))
    if not len(rows):
        return None
    return np.ascontiguousarray(ink[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1])


def _typeset(formulas: list[str], font: str, dpi: int, display: bool, workdir: Path,
             timeout: float) -> list[np.ndarray | RenderFailure | None]:
    """One latex + dvipng run over all of ``formulas``: an image or a failure for each,
    or None for a formula that must be tried again without the failing ones."""
    job = "f"
    for old in workdir.iterdir():
        old.unlink()
    source, starts = _document(formulas, font, display)
    (workdir / f"{job}.tex").write_text(source, encoding="utf-8")
    cmd = ["latex", "-interaction=nonstopmode", "-file-line-error", "-no-shell-escape",
           f"{job}.tex"]
    env = {**os.environ, **_TEX_ENV}
    try:
        proc = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:
        # TeX prints "[n]" as each page ships out: the formula after the last one hangs.
        done = len(re.findall(rb"\[\d+", e.stdout or b""))
        stuck = min(done, len(formulas) - 1)
        out: list[np.ndarray | RenderFailure | None] = [None] * len(formulas)
        # Alone, with the whole limit to itself: a slow formula on a busy machine is not
        # a hanging one (the others are run again).
        out[stuck] = (RenderFailure(f"latex ran past {timeout:.0f} s") if len(formulas) == 1
                      else _typeset([formulas[stuck]], font, dpi, display, workdir, timeout)[0])
        return out
    log_path = workdir / f"{job}.log"
    log = log_path.read_text(encoding="utf-8", errors="replace") if log_path.exists() else ""
    per, general = _errors(log, job, starts)
    if general is not None:
        raise RuntimeError(f"LaTeX preamble of font family {font!r} fails: {general}")
    if per:
        return [RenderFailure(per[i]) if i in per else None for i in range(len(formulas))]
    pages = re.search(r"Output written on .*? \((\d+) pages?", log)
    if proc.returncode != 0 or not pages or int(pages.group(1)) != len(formulas):
        if len(formulas) == 1:
            return [RenderFailure(_short(f"latex gave no page (exit {proc.returncode})"))]
        # Something in a formula broke the one-page-per-formula layout: split and retry.
        half = len(formulas) // 2
        return (_typeset(formulas[:half], font, dpi, display, workdir, timeout)
                + _typeset(formulas[half:], font, dpi, display, workdir, timeout))
    # --picky: a page dvipng cannot draw in full (a missing glyph) gets no image at all.
    # dvipng's time grows with pages and dpi, and on a busy machine it can take several
    # times latex's: a generous limit, and past it a failure per formula, never a crash.
    try:
        run = subprocess.run(["dvipng", "--picky", "-T", "tight", "-D", str(dpi), "-bg",
                              "Transparent", "-z", "1", "-o", "p%d.png", f"{job}.dvi"],
                             cwd=workdir, capture_output=True, text=True,
                             timeout=60 + 4 * timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return [RenderFailure(f"dvipng ran past {60 + 4 * timeout:.0f} s")] * len(formulas)
    out = []
    for i in range(len(formulas)):
        png = workdir / f"p{i + 1}.png"
        ink = _coverage(png) if png.exists() else None
        if ink is None:
            why = "no ink" if png.exists() else f"dvipng drew no image: {run.stderr}"
            out.append(RenderFailure(_short(why)))
        else:
            out.append(ink)
    return out


def render_tex(formulas: Sequence[str], font: str = "cm", dpi: int = 150,
               display: bool = True, timeout: float | None = None,
               ) -> list[np.ndarray | RenderFailure]:
    """Typeset ``formulas`` (LaTeX math, no delimiters) in one latex run.

    Per formula: a uint8 ink coverage map (255 = ink, 0 = paper) cropped to the ink,
    or a RenderFailure. ``display`` sets display style (``\\displaystyle``), else
    inline (text) style. ``timeout`` bounds one latex run (default: 20 s + 200 ms per
    formula); a formula that hangs TeX fails alone.
    """
    preamble(font)  # an unknown family is an error before any work
    results: list[np.ndarray | RenderFailure | None] = [None] * len(formulas)
    for i, f in enumerate(formulas):
        bad = _precheck(f)
        if bad:
            results[i] = RenderFailure(bad)
    pending = [i for i, r in enumerate(results) if r is None]
    with tempfile.TemporaryDirectory(prefix="texlens-tex-") as tmp:
        while pending:
            limit = timeout if timeout is not None else 20.0 + 0.2 * len(pending)
            got = _typeset([formulas[i] for i in pending], font, dpi, display, Path(tmp), limit)
            for i, r in zip(pending, got, strict=True):
                results[i] = r
            # Those left None were fine but shared a run with a failure: run them again.
            pending = [i for i in pending if results[i] is None]
    return results  # type: ignore[return-value]
