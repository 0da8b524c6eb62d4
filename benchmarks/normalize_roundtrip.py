"""Does the normalised formula typeset like the original? TeX pixels, per corpus file.

    python benchmarks/normalize_roundtrip.py [--root ../shared/data/formulas]
        [--per-file 600 | --all] [--seed 0] [--batch 200] [--workers 1]
        [--out outputs/roundtrip_diff.tsv] [--pngs 20]

For a per-file sample (``--per-file`` lines drawn at random from each file, or ``--all``),
typesets each formula and ``to_latex(normalize(formula))`` with real TeX (Computer
Modern, 150 dpi, display style, one latex run per batch) and compares the ink exactly
(:func:`texlens.metrics.render_match`). Prints per file: sampled, normalised, original
does not typeset, identical, differing (the normalised one does not typeset is counted
there too, and shown apart); then the share identical among the formulas that normalise
and typeset. The differing formulas go to ``--out`` (file, line, why, original,
normalised) and the first ``--pngs`` of them to side-by-side PNGs next to it
(original above, normalised below).
"""

from __future__ import annotations

import argparse
import random
from dataclasses import dataclass
from multiprocessing import Pool
from pathlib import Path

import numpy as np
from PIL import Image

from texlens.data.synth.tex import render_tex, tex_missing
from texlens.latex import LatexError, normalize, to_latex
from texlens.metrics import render_match


@dataclass
class Case:
    file: str
    line: int  # 1-based line number in its file
    original: str
    normalised: str | None = None  # None: normalize raised
    outcome: str = ""  # bad-original | identical | differ | bad-normalised | not-normalised


def sample(root: Path, per_file: int, seed: int) -> list[Case]:
    files = sorted(root.glob("books/*.txt")) + sorted(root.glob("*.txt"))
    if not files:
        raise SystemExit(f"no formula files under {root}")
    cases: list[Case] = []
    for path in files:
        lines = [(k + 1, x) for k, x in
                 enumerate(path.read_text(encoding="utf-8").splitlines()) if x.strip()]
        if per_file and len(lines) > per_file:
            # Sorted back into file order, so the listing reads like the file.
            lines = sorted(random.Random(f"{seed}:{path.name}").sample(lines, per_file))
        name = str(path.relative_to(root))
        cases += [Case(name, k, x) for k, x in lines]
    return cases


Result = tuple[str, str | None, np.ndarray | None, np.ndarray | None]


def judge(batch: list[Case]) -> list[Result]:
    """Typeset one batch (originals and normalised forms in one latex run). Per case: its
    outcome, the normalised string, and the two images when they differ (for the PNGs)."""
    norms: list[str | None] = []
    for c in batch:
        try:
            norms.append(to_latex(normalize(c.original)))
        except LatexError:
            norms.append(None)
    todo = [(c.original, n) for c, n in zip(batch, norms, strict=True) if n is not None]
    images = render_tex([o for o, _ in todo] + [n for _, n in todo], font="cm", dpi=150,
                        display=True)
    pairs = iter(zip(images[:len(todo)], images[len(todo):], strict=True))
    out: list[Result] = []
    for n in norms:
        if n is None:
            out.append(("not-normalised", None, None, None))
            continue
        a, b = next(pairs)
        if not isinstance(a, np.ndarray):
            out.append(("bad-original", n, None, None))
        elif not isinstance(b, np.ndarray):
            out.append(("bad-normalised", n, a, None))
        elif render_match(a, b):
            out.append(("identical", n, None, None))
        else:
            out.append(("differ", n, a, b))
    return out


def side_by_side(a: np.ndarray, b: np.ndarray | None, path: Path) -> None:
    """Original above, normalised below, dark ink on white, a grey rule between."""
    b = b if b is not None else np.zeros((10, 10), np.uint8)
    w = max(a.shape[1], b.shape[1]) + 8
    rows = []
    for img in (a, b):
        pad = np.zeros((img.shape[0] + 8, w), np.uint8)
        pad[4:4 + img.shape[0], 4:4 + img.shape[1]] = img
        rows.append(pad)
    rule = np.full((2, w), 96, np.uint8)
    Image.fromarray(255 - np.vstack([rows[0], rule, rows[1]])).save(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", default=str(Path(__file__).resolve().parents[2]
                                          / "shared/data/formulas"))
    ap.add_argument("--per-file", type=int, default=600)
    ap.add_argument("--all", action="store_true", help="every formula of every file")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch", type=int, default=200, help="formulas per latex run")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--out", default="outputs/roundtrip_diff.tsv")
    ap.add_argument("--pngs", type=int, default=20, help="side-by-side PNGs of differences")
    args = ap.parse_args()
    if (why := tex_missing()) is not None:
        raise SystemExit(why)
    cases = sample(Path(args.root), 0 if args.all else args.per_file, args.seed)
    batches = [cases[k:k + args.batch] for k in range(0, len(cases), args.batch)]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    png_dir = out.with_suffix("")
    png_dir.mkdir(exist_ok=True)
    for old in png_dir.glob("*.png"):
        old.unlink()
    n_png = 0
    with Pool(max(1, args.workers)) as pool, out.open("w", encoding="utf-8") as tsv:
        tsv.write("file\tline\tresult\toriginal\tnormalised\n")
        for batch, results in zip(batches, pool.imap(judge, batches), strict=True):
            for c, (outcome, norm, a, b) in zip(batch, results, strict=True):
                c.outcome, c.normalised = outcome, norm
                if outcome in ("differ", "bad-normalised"):
                    tsv.write(f"{c.file}\t{c.line}\t{outcome}\t{c.original}\t{norm}\n")
                    if n_png < args.pngs and a is not None:
                        n_png += 1
                        stem = f"{n_png:03d}_{Path(c.file).stem}_{c.line}"
                        side_by_side(a, b, png_dir / f"{stem}.png")
    report(cases)
    print(f"\ndifferences: {out}; side-by-side PNGs: {png_dir}/")


def report(cases: list[Case]) -> None:
    cols = ("sampled", "normalised", "orig fails", "identical", "differing", "(norm fails)")
    print(f"{'file':30s}" + "".join(f"{c:>13s}" for c in cols))
    files = list(dict.fromkeys(c.file for c in cases))
    total = [0] * len(cols)
    for name in [*files, "all"]:
        mine = cases if name == "all" else [c for c in cases if c.file == name]
        count = {o: sum(c.outcome == o for c in mine) for o in
                 ("not-normalised", "bad-original", "identical", "differ", "bad-normalised")}
        row = [len(mine), len(mine) - count["not-normalised"], count["bad-original"],
               count["identical"], count["differ"] + count["bad-normalised"],
               count["bad-normalised"]]
        if name != "all":
            total = [t + r for t, r in zip(total, row, strict=True)]
        print(f"{name:30s}" + "".join(f"{r:13d}" for r in row))
    compared = total[3] + total[4]
    print(f"\nidentical: {total[3]} / {compared} = {total[3] / max(1, compared):.2%} of the "
          "formulas that normalise and whose original typesets")


if __name__ == "__main__":
    main()
