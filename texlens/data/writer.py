"""What the dataset generators share: a seeded caption cycle, a worker pool that maps
jobs in order, and a writer of the standard layout (images/KEY.png + caption.txt).

Sample ``i`` of seed ``s`` is always built from generators seeded by ``(s, i)``, and
results come back in job order, so a dataset is the same byte for byte whatever the
number of worker processes.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from multiprocessing import get_context
from pathlib import Path
from typing import Any


def shuffled_cycle(n: int, count: int, seed: int) -> list[int]:
    """``n`` indices into ``count`` items: seeded shuffles of all of them, one after
    another, so every item is used once before any is used twice."""
    rng = random.Random(seed)
    idx: list[int] = []
    while len(idx) < n:
        perm = list(range(count))
        rng.shuffle(perm)
        idx.extend(perm)
    return idx[:n]


@contextmanager
def ordered_map(fn: Callable[[Any], Any], jobs: Sequence[Any], workers: int,
                chunksize: int = 16) -> Iterator[Iterable[Any]]:
    """``map(fn, jobs)`` in this process, or over ``workers`` forked processes (which
    inherit module state such as a loaded symbol library instead of unpickling it)."""
    if workers <= 1:
        yield map(fn, jobs)
        return
    with get_context("fork").Pool(workers) as pool:
        yield pool.imap(fn, jobs, chunksize=chunksize)


class LayoutWriter:
    """Writes samples as ``out/images/KEY.png`` and, on close, ``out/caption.txt``."""

    def __init__(self, out: str | Path):
        self.out = Path(out)
        (self.out / "images").mkdir(parents=True, exist_ok=True)
        self.lines: list[str] = []

    def add(self, key: str, tokens: Sequence[str], png: bytes) -> None:
        (self.out / "images" / f"{key}.png").write_bytes(png)
        self.lines.append(f"{key}\t{' '.join(tokens)}\n")

    def __enter__(self) -> LayoutWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        # Written even after an interruption, so the images already on disk are listed.
        (self.out / "caption.txt").write_text("".join(self.lines), encoding="utf-8")
