"""MathJax against real TeX on the book corpus: coverage, speed, size, and a picture.

    .venv/bin/python benchmarks/mathjax_vs_tex.py --n 2000 --show 20

Draws --n formulas, the same number from each book (the Stacks project alone is 82% of
the lines), renders them with MathJax (every font) and TeX (cm), and prints the share
each renders, MathJax's speed, and MathJax's image height over TeX's (1.0 = same size
at the same dpi). Writes outputs/mathjax_vs_tex.png: --show formulas, TeX left and
MathJax right, and outputs/mathjax_failures.txt.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from PIL import Image

from texlens.data.synth.mathjax import MATHJAX_FONTS, mathjax_missing, render_mathjax
from texlens.data.synth.tex import render_tex, tex_missing

BOOKS = Path(__file__).resolve().parents[2] / "shared/data/formulas/books"


def sample(n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    files = sorted(BOOKS.glob("*.txt"))
    if not files:
        raise SystemExit(f"no corpus under {BOOKS}")
    out: list[str] = []
    for i, path in enumerate(files):
        lines = [x for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]
        k = n // len(files) + (i < n % len(files))
        out += [lines[j] for j in rng.choice(len(lines), size=k, replace=False)]
    return out


def side_by_side(pairs: list[tuple[np.ndarray, np.ndarray]], gap: int = 12) -> np.ndarray:
    left_w = max(a.shape[1] for a, _ in pairs)
    width = left_w + 3 * gap + max(b.shape[1] for _, b in pairs)
    rows = []
    for a, b in pairs:
        h = max(a.shape[0], b.shape[0])
        row = np.zeros((h + gap, width), np.uint8)
        row[:a.shape[0], gap:gap + a.shape[1]] = a
        row[:b.shape[0], left_w + 2 * gap:left_w + 2 * gap + b.shape[1]] = b
        row[:, left_w + gap + gap // 2] = 128  # a divider
        rows.append(row)
    return 255 - np.concatenate(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--show", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dpi", type=int, default=150)
    ap.add_argument("--out", default="outputs")
    args = ap.parse_args()
    for missing in (mathjax_missing(), tex_missing()):
        if missing:
            raise SystemExit(missing)
    formulas = sample(args.n, args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    t = time.perf_counter()
    tex = render_tex(formulas, font="cm", dpi=args.dpi)
    tex_s = time.perf_counter() - t
    tex_ok = [isinstance(x, np.ndarray) for x in tex]
    print(f"TeX cm: {np.mean(tex_ok):.2%} of {len(formulas)} rendered, "
          f"{len(formulas) / tex_s:.0f} formulas/s")

    failures = []
    mj = {}
    for font in MATHJAX_FONTS:
        t = time.perf_counter()
        mj[font] = render_mathjax(formulas, font=font, dpi=args.dpi)
        secs = time.perf_counter() - t
        ok = np.array([isinstance(x, np.ndarray) for x in mj[font]])
        both = ok & np.array(tex_ok)
        # Height ratio only where both rendered: same formula, same dpi, same style.
        ratio = [mj[font][i].shape[0] / tex[i].shape[0] for i in np.flatnonzero(both)]
        print(f"MathJax {font}: {ok.mean():.2%} rendered ({ok.sum()}/{len(ok)}; "
              f"{both.sum() / sum(tex_ok):.2%} of those TeX renders), "
              f"{len(formulas) / secs:.0f} formulas/s, "
              f"height / TeX's median {np.median(ratio):.2f}")
        failures += [f"{font}\t{formulas[i]}\t{mj[font][i].message}"
                     for i in np.flatnonzero(~ok)]
    (out / "mathjax_failures.txt").write_text("".join(x + "\n" for x in failures),
                                              encoding="utf-8")

    first = MATHJAX_FONTS[0]
    both = [i for i, a in enumerate(tex_ok)
            if a and isinstance(mj[first][i], np.ndarray) and tex[i].shape[1] < 700]
    pairs = [(tex[i], mj[first][i]) for i in both[:args.show]]
    Image.fromarray(side_by_side(pairs)).save(out / "mathjax_vs_tex.png")
    print(f"wrote {out / 'mathjax_vs_tex.png'} (TeX cm | MathJax {first}), "
          f"{out / 'mathjax_failures.txt'}")


if __name__ == "__main__":
    main()
