"""Unpack the standard CROHME offline test images into an evaluation directory.

The 2014 tarball holds ``off_image_test/<key>_0.bmp`` (white strokes on black,
0/255). Written flat next to the caption file they form the standard dataset
layout, so ``texlens evaluate --data DIR`` reads them as they are: the datasets
code finds ``<key>_0.bmp``, and preprocessing keeps the polarity (the border is
black, so nothing is inverted). The copy is the user's: CROHME is licensed for
research only and never belongs in this repository.
"""

from __future__ import annotations

import shutil
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

from texlens.data.synth.dataset import read_caption_file

IMAGE_SUFFIX = "_0.bmp"


@dataclass
class ExtractReport:
    images: int = 0
    captions: int = 0
    no_image: list[str] = field(default_factory=list)  # caption keys without a bitmap
    no_caption: list[str] = field(default_factory=list)  # bitmaps without a caption


def extract_crohme_images(images: str | Path, captions: str | Path,
                          out: str | Path) -> ExtractReport:
    """Write ``out/<key>_0.bmp`` for every bitmap in the tarball and ``out/caption.txt``."""
    images, out = Path(images), Path(out)
    keys = {k for k, _ in read_caption_file(captions)}
    out.mkdir(parents=True, exist_ok=True)
    report = ExtractReport(captions=len(keys))
    found = set()
    with tarfile.open(images, "r:*") as tar:
        for m in tar:
            # Only the file name is used: no member can write outside ``out``.
            name = Path(m.name).name
            if not (m.isfile() and name.endswith(IMAGE_SUFFIX)):
                continue
            src = tar.extractfile(m)
            if src is None:
                continue
            with src, open(out / name, "wb") as dst:
                shutil.copyfileobj(src, dst)
            key = name[: -len(IMAGE_SUFFIX)]
            found.add(key)
            report.images += 1
            if key not in keys:
                report.no_caption.append(key)
    report.no_image = sorted(keys - found)
    report.no_caption.sort()
    if Path(captions).resolve() != (out / "caption.txt").resolve():
        shutil.copyfile(captions, out / "caption.txt")
    return report
