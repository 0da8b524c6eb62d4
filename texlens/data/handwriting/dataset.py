"""Write a synthetic handwritten-formula dataset (``texlens data synth-hand``).

Like ``data synth``: sample ``i`` of seed ``s`` draws its formula and its
handwriting from generators seeded by ``(s, i)`` only, so the output is the same
byte for byte whatever the number of worker processes. A random formula that
the symbol library cannot draw (a token without samples), or that hits the
renderer's size bound, is replaced by the generator's next one; a given caption
with a token the library lacks is skipped up front and reported. So is a formula whose
expression is in ``exclude`` (validation and test captions: the generator writes short
generic formulas that those sets contain too, and training on them is not held out).
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from texlens.data.handwriting.glyphs import missing_tokens
from texlens.data.handwriting.layout import LayoutError, compose
from texlens.data.handwriting.symbols import SymbolLibrary
from texlens.data.splits import expression
from texlens.data.strokes import MODES, RenderBoundError, render_strokes
from texlens.data.synth.generator import FormulaGenerator
from texlens.data.writer import LayoutWriter, ordered_map, shuffled_cycle

MAX_DRAWS = 200  # random formulas tried for one sample before it counts as failed
_LIBRARY: SymbolLibrary | None = None  # set in each worker (inherited through fork)
_EXCLUDE: frozenset[str] = frozenset()  # expressions never written (likewise inherited)


@dataclass
class HandReport:
    written: int = 0
    failed: list[str] = field(default_factory=list)  # "sample i: why"
    skipped: list[tuple[str, list[str]]] = field(default_factory=list)  # caption key, missing
    redrawn: int = 0  # random formulas replaced: undrawable or excluded
    excluded: list[str] = field(default_factory=list)  # caption keys of excluded expressions


def _use(library: SymbolLibrary, exclude: frozenset[str]) -> None:
    global _LIBRARY, _EXCLUDE
    _LIBRARY, _EXCLUDE = library, exclude


def draw(tokens: Sequence[str], library: SymbolLibrary, rng: np.random.Generator,
         mode: str) -> bytes:
    """One formula as handwriting, PNG bytes. Raises LayoutError or RenderBoundError."""
    drawing = compose(tokens, library, rng)
    img = render_strokes(drawing.strokes, mode=mode, strict=True)
    buf = io.BytesIO()
    Image.fromarray(img, mode="L").save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def _sample(job: tuple[int, int, list[str] | None, str, bool]
            ) -> tuple[int, list[str], bytes | str, int]:
    seed, index, tokens, mode, short = job
    library = _LIBRARY
    assert library is not None, "worker started without a symbol library"
    rng = np.random.default_rng([seed, index])
    if tokens is not None:
        try:
            return index, tokens, draw(tokens, library, rng, mode), 0
        except (LayoutError, RenderBoundError) as e:
            return index, tokens, str(e), 0
    gen = FormulaGenerator(seed=seed * 1_000_003 + index)
    why = ""
    for attempt in range(MAX_DRAWS):
        toks = gen.short() if short else gen.generate()
        if missing_tokens(toks, library) or expression(toks) in _EXCLUDE:
            continue
        try:
            return index, toks, draw(toks, library, rng, mode), attempt
        except (LayoutError, RenderBoundError) as e:
            why = str(e)
    why = why or "missing symbols or excluded expressions"
    return index, [], f"no drawable formula in {MAX_DRAWS} draws ({why})", 0


def synth_hand_dataset(out: str | Path, n: int, seed: int, library: SymbolLibrary,
                       captions: Sequence[tuple[str, list[str]]] | None = None,
                       mode: str = "crohme", workers: int = 1,
                       progress: Callable[[int], None] | None = None,
                       exclude: Iterable[str] = (), short: bool = False) -> HandReport:
    """Write ``n`` handwritten formulas to ``out/images/*.png`` and ``out/caption.txt``.

    With ``captions`` the formulas are those (the drawable ones, in a seeded shuffled
    cycle, so one caption may be written by several writers); else random ones
    (``short``: of 1 to 3 tokens, :meth:`FormulaGenerator.short`). No
    formula whose expression (:func:`texlens.data.splits.expression`) is in ``exclude``
    is written: a given caption is skipped, a random one redrawn.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    report = HandReport()
    banned = frozenset(expression(e) for e in exclude)
    order: list[list[str] | None] = [None] * n
    if captions is not None:
        usable = []
        for key, toks in captions:
            missing = missing_tokens(toks, library)
            if missing:
                report.skipped.append((key, missing))
            elif expression(toks) in banned:
                report.excluded.append(key)
            else:
                usable.append(list(toks))
        if not usable:
            raise ValueError("no given caption is drawable by the symbol library and not excluded")
        order = [usable[i] for i in shuffled_cycle(n, len(usable), seed)]
    jobs = [(seed, i, order[i], mode, short) for i in range(n)]
    _use(library, banned)  # before the fork: the workers inherit it instead of unpickling 30 MB
    with LayoutWriter(out) as writer, ordered_map(_sample, jobs, workers) as results:
        for index, tokens, result, redrawn in results:
            report.redrawn += redrawn
            if isinstance(result, str):
                report.failed.append(f"sample {index}: {result}")
            else:
                writer.add(f"h{seed}_{index:07d}", tokens, result)
                report.written += 1
            if progress:
                progress(1)
    return report
