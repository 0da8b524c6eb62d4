"""Boxes of ink: strokes in one frame, and which strokes draw which caption token.

The layout builds a formula from the inside out by moving boxes and merging them.
Baseline at y = 0, y grows downwards (like InkML and images), so ink above the
baseline has negative y. Extents are those of the ink itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

Bounds = tuple[float, float, float, float]  # x0, y0 (top), x1, y1 (bottom)


@dataclass(frozen=True)
class Mark:
    token: str
    start: int  # strokes[start:stop] draw this token
    stop: int


@dataclass
class Box:
    strokes: list[np.ndarray] = field(default_factory=list)  # float64 (n, 2) each
    marks: list[Mark] = field(default_factory=list)

    @classmethod
    def of(cls, token: str, strokes: list[np.ndarray]) -> Box:
        return cls(list(strokes), [Mark(token, 0, len(strokes))])

    @property
    def empty(self) -> bool:
        return not self.strokes

    @property
    def bounds(self) -> Bounds:
        """Ink extent; an empty box is a point at the origin."""
        if not self.strokes:
            return 0.0, 0.0, 0.0, 0.0
        pts = np.concatenate(self.strokes)
        lo, hi = pts.min(axis=0), pts.max(axis=0)
        return float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1])

    def moved(self, dx: float, dy: float) -> Box:
        shift = np.array([dx, dy])
        return Box([s + shift for s in self.strokes], list(self.marks))

    def mapped(self, matrix: np.ndarray) -> Box:
        """Every point p becomes p @ matrix (row vectors)."""
        return Box([s @ matrix for s in self.strokes], list(self.marks))

    def add(self, other: Box) -> Box:
        """Merge ``other`` (already in this frame) into this box; returns self."""
        n = len(self.strokes)
        self.strokes += other.strokes
        self.marks += [Mark(m.token, m.start + n, m.stop + n) for m in other.marks]
        return self

    def symbols(self) -> list[tuple[str, Bounds]]:
        """Each drawn token with the bounds of its own ink, in drawing order."""
        out = []
        for m in self.marks:
            pts = np.concatenate(self.strokes[m.start:m.stop])
            lo, hi = pts.min(axis=0), pts.max(axis=0)
            out.append((m.token, (float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1]))))
        return out
