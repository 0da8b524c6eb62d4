"""Write a synthetic printed-formula dataset directory (``texlens data synth``).

Sample ``i`` of seed ``s`` is drawn from its own generators seeded by ``(s, i)``,
so the output is the same byte for byte whatever the number of worker processes
(texlens/data/writer.py).
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from texlens.data.splits import expression_split
from texlens.data.synth.generator import FormulaGenerator
from texlens.data.synth.render import RenderError, render
from texlens.data.writer import LayoutWriter, ordered_map, shuffled_cycle

SPLITS = ("all", "train", "val", "heldout")


def read_caption_file(path: str | Path, split: str = "all") -> list[tuple[str, list[str]]]:
    """``key<TAB>tokens`` lines, optionally only the ``train``, ``val`` or ``heldout`` part
    (by expression: :func:`texlens.data.splits.expression_split`; until 2026-12-03 the split
    was by key, which put 47% of the held-out CROHME expressions in training too)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, not {split!r}")
    rows = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            key, sep, caption = line.rstrip("\n").partition("\t")
            if not sep or not caption.strip():
                raise ValueError(f"{path}:{lineno}: expected 'key<TAB>tokens'")
            if split in ("all", expression_split(caption)):
                rows.append((key, caption.split()))
    return rows


def _sample(args: tuple[int, int, list[str] | None]) -> tuple[int, list[str], bytes | str]:
    seed, index, tokens = args
    if tokens is None:
        tokens = FormulaGenerator(seed=seed * 1_000_003 + index).generate()
    rng = np.random.default_rng([seed, index])
    try:
        img = render(tokens, rng)
    except RenderError as e:
        return index, tokens, str(e)
    buf = io.BytesIO()
    Image.fromarray(img, mode="L").save(buf, format="PNG", optimize=False)
    return index, tokens, buf.getvalue()


def synth_dataset(out: str | Path, n: int, seed: int,
                  captions: Sequence[tuple[str, list[str]]] | None = None,
                  workers: int = 1,
                  progress: Callable[[int], None] | None = None) -> dict[str, int]:
    """Render ``n`` formulas into ``out/images/*.png`` and ``out/caption.txt``.

    With ``captions`` the formulas are real ones, drawn in a seeded shuffled
    cycle (a caption rendered twice gets two different styles). Returns counts.
    """
    order: list[list[str] | None] = [None] * n
    if captions:
        order = [list(captions[i][1]) for i in shuffled_cycle(n, len(captions), seed)]
    jobs = [(seed, i, order[i]) for i in range(n)]
    failed = 0
    with LayoutWriter(out) as writer, ordered_map(_sample, jobs, workers, 64) as results:
        for index, tokens, result in results:
            if isinstance(result, str):
                failed += 1
                print(f"skipped sample {index}: {result}")
            else:
                writer.add(f"s{seed}_{index:07d}", tokens, result)
            if progress:
                progress(1)
    return {"written": len(writer.lines), "failed": failed}
