"""One imaginary writer per expression: which samples they use, and how they vary.

A real writer draws every ``x`` of a formula much the same way, and one CROHME
source (one device, one group of writers) looks different from another. So a
writer keeps to one source when it has the symbol, settles on one or two samples
per token for the whole expression, and draws its own spacing, script size and
slant once. Symbol by symbol, only small jitter is left: size, baseline,
spacing and a slight turn.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from texlens.data.handwriting.glyphs import sources
from texlens.data.handwriting.symbols import Glyph, SymbolLibrary


@dataclass(frozen=True)
class HandStyle:
    """Ranges the writer's habits and the per-symbol jitter are drawn from."""

    same_source: float = 0.85  # chance to keep to one CROHME source
    samples_per_token: tuple[int, int] = (1, 2)  # samples a writer uses for one token
    spacing: tuple[float, float] = (0.8, 1.3)  # gaps between symbols, times the norm
    script_scale: tuple[float, float] = (0.55, 0.7)  # script size against its base
    slant_deg: tuple[float, float] = (-6.0, 10.0)  # the whole expression leans right (+)
    turn_deg: float = 2.0  # the whole expression's baseline, +-
    size_jitter: float = 0.08  # each symbol's size, +- relative
    baseline_jitter: float = 0.06  # each symbol's height on the line, +- x-heights
    gap_jitter: tuple[float, float] = (0.65, 1.35)  # each gap, times the writer's
    symbol_turn_deg: float = 3.0  # each symbol, +-


class Writer:
    """Picks samples and jitter for one expression, from one seeded generator."""

    def __init__(self, library: SymbolLibrary, rng: np.random.Generator,
                 style: HandStyle | None = None):
        self.library = library
        self.rng = rng
        self.style = style = style or HandStyle()
        self.ex = library.x_height
        use_one = rng.random() < style.same_source and library.sources
        self.source = int(rng.integers(len(library.sources))) if use_one else None
        self.spacing = float(rng.uniform(*style.spacing))
        self.script_scale = float(rng.uniform(*style.script_scale))
        self.slant = float(np.tan(np.radians(rng.uniform(*style.slant_deg))))
        self.turn = float(np.radians(rng.uniform(-style.turn_deg, style.turn_deg)))
        self._pool: dict[str, list[Glyph]] = {}

    def has(self, token: str) -> bool:
        return self.library.count(token) > 0

    def glyph(self, token: str) -> Glyph:
        """A sample for ``token`` (itself, not a substitute); the same few all expression."""
        pool = self._pool.get(token)
        if pool is None:
            found = self.library.glyphs.get(token, [])
            if not found:
                raise KeyError(f"no handwritten sample of {token!r} in the symbol library")
            own = self.library.of_source(token, self.source) if self.source is not None else []
            candidates = own or found
            k = int(self.rng.integers(self.style.samples_per_token[0],
                                      self.style.samples_per_token[1] + 1))
            picks = self.rng.choice(len(candidates), size=min(k, len(candidates)), replace=False)
            pool = self._pool[token] = [candidates[int(i)] for i in picks]
        return pool[int(self.rng.integers(len(pool)))]

    def drawable_as(self, token: str) -> str | None:
        """The library token that draws ``token`` (itself or a substitute), if any."""
        return next((s for s in sources(token) if self.has(s)), None)

    def size_factor(self) -> float:
        j = self.style.size_jitter
        return float(self.rng.uniform(1 - j, 1 + j))

    def baseline_shift(self) -> float:
        j = self.style.baseline_jitter
        return float(self.rng.uniform(-j, j)) * self.ex

    def symbol_turn(self) -> float:
        a = self.style.symbol_turn_deg
        return float(np.radians(self.rng.uniform(-a, a)))

    def gap(self, norm: float) -> float:
        """A gap of ``norm`` x-heights as this writer spaces it, with jitter."""
        return norm * self.ex * self.spacing * float(self.rng.uniform(*self.style.gap_jitter))
