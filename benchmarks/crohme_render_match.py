"""How close "crohme" stroke rendering is to the standard CROHME offline images.

Renders the CROHME 2014 test InkML in crohme mode and prints size statistics of
those renderings next to the standard bitmaps of the same expressions (read from
the tarballs in memory; nothing is extracted):

    python benchmarks/crohme_render_match.py [--inkml TGZ] [--images TGZ]
        [--line-width 3] [--stroke-px 27.6] [--pad 12]

Columns: quartiles (25%, median, 75%) of height, width, aspect (w/h), ink fraction
and stroke width (2 x ink area / ink perimeter), plus the per-image ratio
rendered/standard of height and width.
"""

from __future__ import annotations

import argparse
import io
import tarfile
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from texlens.data.crohme import iter_inkml
from texlens.data.inkml import InkmlError, read_inkml
from texlens.data.strokes import MODES, render_strokes

DEFAULT_DIR = Path("../shared/data/crohme/2014")


def standard_images(path: Path) -> dict[str, np.ndarray]:
    """key -> binary image, from a tarball of ``<dir>/<key>_0.bmp`` files."""
    out = {}
    with tarfile.open(path, "r:*") as tar:
        for m in tar:
            name = Path(m.name).name
            if m.isfile() and name.endswith("_0.bmp"):
                data = tar.extractfile(m).read()
                out[name[:-len("_0.bmp")]] = np.asarray(Image.open(io.BytesIO(data)).convert("L"))
    return out


def stats(img: np.ndarray) -> tuple[float, float, float, float, float]:
    ink = (img > 127).astype(np.uint8)
    contours, _ = cv2.findContours(ink, cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
    perimeter = sum(cv2.arcLength(c, True) for c in contours)
    h, w = img.shape
    return h, w, w / h, float(ink.mean()), 2 * ink.sum() / max(perimeter, 1.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--inkml", type=Path, default=DEFAULT_DIR / "test_inkml.tar.gz")
    ap.add_argument("--images", type=Path, default=DEFAULT_DIR / "test_images.tar.gz")
    style = MODES["crohme"]
    ap.add_argument("--line-width", type=int, default=style.line_width)
    ap.add_argument("--stroke-px", type=float, default=style.stroke_px)
    ap.add_argument("--pad", type=int, default=style.pad)
    args = ap.parse_args()

    reference = standard_images(args.images)
    ours, theirs = [], []
    t0 = time.perf_counter()
    for name, data in iter_inkml(args.inkml):
        try:
            ink = read_inkml(data, name)
        except InkmlError as e:
            print(f"skipped: {e}")
            continue
        if ink.key not in reference:
            continue
        img = render_strokes(ink.traces, mode="crohme", line_width=args.line_width,
                             stroke_px=args.stroke_px, pad=args.pad)
        ours.append(stats(img))
        theirs.append(stats(reference[ink.key]))
    dt = time.perf_counter() - t0
    a, b = np.array(ours), np.array(theirs)
    print(f"{len(a)} expressions rendered in {dt:.1f} s (line width {args.line_width}, "
          f"stroke {args.stroke_px} px, pad {args.pad})")
    print(f"{'':>16} {'rendered: q25 / median / q75':>32} {'standard: q25 / median / q75':>32}")
    names = ("height", "width", "aspect w/h", "ink fraction", "stroke width px")
    for k, label in enumerate(names):
        cells = [" / ".join(f"{v:.3g}" for v in np.percentile(x[:, k], [25, 50, 75]))
                 for x in (a, b)]
        print(f"{label:>16} {cells[0]:>32} {cells[1]:>32}")
    for k, label in ((0, "height ratio"), (1, "width ratio")):
        q = np.percentile(a[:, k] / b[:, k], [25, 50, 75])
        print(f"{label:>16} {' / '.join(f'{v:.3f}' for v in q):>32}   (rendered / standard)")


if __name__ == "__main__":
    main()
