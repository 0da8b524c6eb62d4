"""Small invented InkML files for the tests (no CROHME data: its licence keeps it out).

Strokes are simple shapes drawn on a unit grid, then scaled and shifted so the
files differ in coordinate units like the real sources do.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

INKML_NS = "http://www.w3.org/2003/InkML"

# One formula, "x+1": two crossing diagonals, a plus, a vertical bar.
X_PLUS_1 = {
    "strokes": [
        [(0.0, 0.0), (0.5, 0.5), (1.0, 1.0)],
        [(1.0, 0.0), (0.5, 0.5), (0.0, 1.0)],
        [(1.5, 0.5), (2.5, 0.5)],
        [(2.0, 0.0), (2.0, 1.0)],
        [(3.0, 0.1), (3.2, 0.0), (3.2, 1.0)],
    ],
    "symbols": [("x", [0, 1]), ("+", [2, 3]), ("1", [4])],
    "truth": "$x+1$",
}


def stroke_text(points: Sequence[tuple[float, float]], scale: float, values: int,
                integers: bool) -> str:
    rows = []
    for i, (x, y) in enumerate(points):
        xy = [x * scale + 100, y * scale + 50]
        nums = [f"{round(v)}" if integers else f"{v:.4f}" for v in xy]
        if values == 3:
            nums.append(str(1000 + 10 * i))  # a time channel, ignored by the reader
        rows.append(" ".join(nums))
    return ", ".join(rows)


def make_inkml(strokes: Sequence[Sequence[tuple[float, float]]] = X_PLUS_1["strokes"],
               symbols: Sequence[tuple[str, list[int]]] = X_PLUS_1["symbols"],
               truth: str | None = X_PLUS_1["truth"], namespace: str | None = INKML_NS,
               prefix: str = "", values: int = 2, integers: bool = True,
               scale: float = 100.0, mathml: bool = True,
               trace_texts: dict[int, str] | None = None, writer: str | None = "test") -> str:
    """An InkML document: strokes, an outer Segmentation group of labelled symbols."""
    p = f"{prefix}:" if prefix else ""
    if namespace is None:
        xmlns = ""
    elif prefix:
        xmlns = f' xmlns:{prefix}="{namespace}"'
    else:
        xmlns = f' xmlns="{namespace}"'
    lines = [f"<{p}ink{xmlns}>"]
    if writer is not None:
        lines.append(f'<{p}annotation type="writer">{writer}</{p}annotation>')
    if truth is not None:
        lines.append(f'<{p}annotation type="truth">{truth}</{p}annotation>')
    if mathml:
        lines += [f'<{p}annotationXML type="truth" encoding="Content-MathML">',
                  "  <math xmlns='http://www.w3.org/1998/Math/MathML'><mi xml:id=\"x_1\">x</mi>"
                  "</math>",
                  f"</{p}annotationXML>"]
    for i, s in enumerate(strokes):
        text = (trace_texts or {}).get(i, stroke_text(s, scale, values, integers))
        lines.append(f'<{p}trace id="{i}">\n{text}\n</{p}trace>')
    if symbols:
        lines.append(f'<{p}traceGroup xml:id="{len(strokes)}">')
        lines.append(f'  <{p}annotation type="truth">Segmentation</{p}annotation>')
        for k, (label, ids) in enumerate(symbols):
            lines.append(f'  <{p}traceGroup xml:id="{len(strokes) + 1 + k}">')
            lines.append(f'    <{p}annotation type="truth">{label}</{p}annotation>')
            lines += [f'    <{p}traceView traceDataRef="{i}"/>' for i in ids]
            lines.append(f'    <{p}annotationXML href="{label}_{k}"/>')
            lines.append(f"  </{p}traceGroup>")
        lines.append(f"</{p}traceGroup>")
    lines.append(f"</{p}ink>")
    return "\n".join(lines) + "\n"


def dots_and_dashes(extent: float) -> list[np.ndarray]:
    """A flat expression (- . -) of huge coordinates: no stroke has any height."""
    return [np.array([[0.0, 5.0], [extent * 0.4, 5.0]]),
            np.array([[extent * 0.5, 5.0]]),
            np.array([[extent * 0.6, 5.0], [extent, 5.0 + 1e-9]])]
