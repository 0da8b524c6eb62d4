"""Write a dataset of formulas typeset by a real engine (``texlens data render``).

Every sample's look (font family, dpi, display or inline style, margins) is drawn from
a generator seeded by ``(seed, index)``. Samples that share a font, style and dpi are
then typeset together in chunks (one latex run each), the chunks spread over worker
processes; since the chunks depend on the draws only, the files are the same byte for
byte whatever the number of workers.
"""

from __future__ import annotations

import io
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from texlens.data.synth.mathjax import MATHJAX_FONTS, render_mathjax
from texlens.data.synth.tex import FONTS, RenderFailure, render_tex
from texlens.data.writer import ordered_map
from texlens.latex import to_latex

Renderer = Callable[..., list]  # (formulas, font=, dpi=, display=) -> [array | failure]

# Engines by name; each typesets a batch like render_tex: same arguments, same result.
# A new engine adds a line here and its font names to ENGINE_FONTS.
ENGINES: dict[str, Renderer] = {
    "tex": render_tex,
    "mathjax": render_mathjax,
}
# The font families each engine knows, all of them drawn when --fonts is not given.
ENGINE_FONTS: dict[str, Sequence[str]] = {
    "tex": tuple(FONTS),
    "mathjax": MATHJAX_FONTS,
}

# At most this many formulas per latex run: large enough that TeX's start-up (a few
# tenths of a second) is shared, small enough to keep the workers evenly busy.
CHUNK = 200
# dpi takes this many log-spaced values in its range, so that a chunk shares one.
DPI_LEVELS = 8
MARGIN_PX = (3, 20)


@dataclass(frozen=True)
class Formula:
    key: str
    caption: str
    line: int  # 1-based line of the input file, for reports


@dataclass(frozen=True)
class Look:
    font: str
    dpi: int
    display: bool
    margins: tuple[int, int, int, int]  # top, bottom, left, right


def read_formulas(path: str | Path) -> list[Formula]:
    """``key<TAB>caption`` lines, or one formula per line (keyed by line number).

    The first non-empty line decides which; blank lines are skipped.
    """
    rows: list[Formula] = []
    keyed: bool | None = None
    seen: dict[str, int] = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            if keyed is None:
                keyed = "\t" in line
            if keyed:
                key, sep, caption = line.partition("\t")
                if not sep or not key.strip() or not caption.strip():
                    raise ValueError(f"{path}:{lineno}: expected 'key<TAB>caption'")
                key = key.strip()
                if "/" in key or "\\" in key or key in (".", ".."):
                    raise ValueError(f"{path}:{lineno}: key {key!r} is not a file name")
            else:
                if "\t" in line:
                    raise ValueError(f"{path}:{lineno}: a tab in a file of one formula per "
                                     "line (the first line has no key<TAB>)")
                key, caption = str(lineno), line
            if key in seen:
                raise ValueError(f"{path}:{lineno}: key {key!r} already on line {seen[key]}")
            seen[key] = lineno
            rows.append(Formula(key, caption, lineno))
    return rows


def dpi_levels(lo: int, hi: int) -> list[int]:
    return sorted({int(round(d)) for d in np.geomspace(lo, hi, DPI_LEVELS if hi > lo else 1)})


def draw_look(seed: int, index: int, fonts: Sequence[str], dpis: Sequence[int],
              display_prob: float) -> Look:
    rng = np.random.default_rng([seed, index])
    font = fonts[int(rng.integers(len(fonts)))]
    dpi = dpis[int(rng.integers(len(dpis)))]
    display = bool(rng.random() < display_prob)
    margins = tuple(int(m) for m in rng.integers(MARGIN_PX[0], MARGIN_PX[1] + 1, size=4))
    return Look(font, dpi, display, margins)  # type: ignore[arg-type]


def to_png(ink: np.ndarray, margins: tuple[int, int, int, int]) -> bytes:
    """Dark ink on white paper, with the given margins."""
    t, b, left, r = margins
    img = 255 - np.pad(ink, ((t, b), (left, r)))
    buf = io.BytesIO()
    Image.fromarray(img.astype(np.uint8), mode="L").save(buf, format="PNG")
    return buf.getvalue()


def _chunk(job: tuple[str, str, int, bool, list[tuple[int, str, tuple]]]
           ) -> list[tuple[int, bytes | str]]:
    engine, font, dpi, display, items = job
    images = ENGINES[engine]([c for _, c, _ in items], font=font, dpi=dpi, display=display)
    out: list[tuple[int, bytes | str]] = []
    for (index, _, margins), img in zip(items, images, strict=True):
        if isinstance(img, np.ndarray):
            out.append((index, to_png(img, margins)))
        else:
            out.append((index, getattr(img, "message", str(img))))
    return out


def plan_chunks(formulas: Sequence[Formula], seed: int, fonts: Sequence[str],
                dpis: Sequence[int], display_prob: float, engine: str = "tex") -> list[tuple]:
    """The rendering jobs: samples grouped by (font, dpi, style), in chunks of CHUNK."""
    groups: dict[tuple[str, int, bool], list[tuple[int, str, tuple]]] = defaultdict(list)
    for i, f in enumerate(formulas):
        look = draw_look(seed, i, fonts, dpis, display_prob)
        # Captions are tokens: inside \text their letters must be joined again, or text
        # mode would print the spaces between them (to_latex; plain LaTeX passes through).
        source = to_latex(f.caption.split())
        groups[(look.font, look.dpi, look.display)].append((i, source, look.margins))
    jobs = []
    for (font, dpi, display), items in sorted(groups.items()):
        for s in range(0, len(items), CHUNK):
            jobs.append((engine, font, dpi, display, items[s:s + CHUNK]))
    return jobs


def render_dataset(out: str | Path, formulas: Sequence[Formula], seed: int = 0,
                   fonts: Sequence[str] | None = None, dpi: tuple[int, int] = (90, 300),
                   display_prob: float = 0.5, engine: str = "tex", workers: int = 1,
                   source: str = "input", progress: Callable[[int], None] | None = None,
                   ) -> dict:
    """Typeset ``formulas`` into ``out/KEY.png`` + ``out/caption.txt``.

    Formulas that do not typeset are listed in ``out/problems.txt`` (``source:line``,
    key, reason) and left out of caption.txt. Returns the counts and the problems.
    """
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; known: {', '.join(ENGINES)}")
    known = ENGINE_FONTS.get(engine)
    if not fonts and not known:
        raise ValueError(f"engine {engine!r}: name its font families (--fonts)")
    fonts = list(fonts or known)  # type: ignore[arg-type]
    unknown = [f for f in fonts if known and f not in known]
    if unknown:
        raise ValueError(f"unknown {engine} font families {', '.join(unknown)}; "
                         f"known: {', '.join(known)}")  # type: ignore[arg-type]
    if not 0 < dpi[0] <= dpi[1]:
        raise ValueError(f"dpi range must be 0 < min <= max, not {dpi[0]},{dpi[1]}")
    if not 0.0 <= display_prob <= 1.0:
        raise ValueError(f"display probability must be in [0, 1], not {display_prob}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    jobs = plan_chunks(formulas, seed, fonts, dpi_levels(*dpi), display_prob, engine)
    written: dict[int, str] = {}
    problems: list[tuple[int, str]] = []
    try:
        with ordered_map(_chunk, jobs, workers, 1) as results:
            for res in results:
                for index, got in res:
                    f = formulas[index]
                    if isinstance(got, bytes):
                        (out / f"{f.key}.png").write_bytes(got)
                        written[index] = f"{f.key}\t{f.caption}\n"
                    else:
                        problems.append((index, f"{source}:{f.line}\t{f.key}\t{got}"))
                if progress:
                    progress(len(res))
    finally:
        # Written even after an interruption, so the images already on disk are listed.
        (out / "caption.txt").write_text("".join(written[i] for i in sorted(written)),
                                         encoding="utf-8")
        lines = [p for _, p in sorted(problems)]
        (out / "problems.txt").write_text("".join(p + "\n" for p in lines), encoding="utf-8")
    return {"written": len(written), "failed": len(problems), "problems": lines}


__all__ = ["ENGINES", "Formula", "Look", "RenderFailure", "read_formulas", "render_dataset"]
