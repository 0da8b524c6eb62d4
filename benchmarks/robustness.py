"""How a model reads formulas after what real inputs do to images: small screenshots,
high-resolution scans, blur, JPEG, sensor noise, dark mode, coloured ink and paper, phone
photos with uneven light, a slight skew, bold strokes, wide margins.

    python benchmarks/robustness.py --model printed-base --data data/base/val-corpus \
        --held-out --threads 2 --out outputs/robustness

Each corruption is applied to every image of the dataset (seeded, so reruns are
identical), written as PNG next to a copy of the captions, and scored by
``texlens.evaluate.evaluate`` exactly as ``texlens evaluate`` scores a dataset (same
denominator, ``--held-out`` as there). The images are brought to dark ink on white paper
first, whatever their polarity, so every corruption starts from the same page.
Writes OUT/robustness.md and OUT/robustness.json.

``--no-cleanup`` reads the images as texlens did before 2026-12-06: without the tone
stretch (``texlens.data.transforms.stretch_tones``) and the margin cut (``crop_margins``),
to measure what they buy.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import albumentations as A
import cv2
import numpy as np
import torch

import texlens.data.transforms as transforms
from texlens.data.image import load_image
from texlens.data.transforms import ink_bright, ink_height
from texlens.evaluate import evaluate, list_samples
from texlens.recognizer import Recognizer

Page = np.ndarray  # (H, W, 3) uint8, dark ink on light paper
Corruption = Callable[[Page, np.random.Generator], Page]


def _album(transform: A.BasicTransform) -> Corruption:
    def apply(page: Page, rng: np.random.Generator) -> Page:
        # albumentations draws from its own generator: seed it from ours per image.
        transform.set_random_seed(int(rng.integers(2**31)))
        return transform(image=page)["image"]
    return apply


def _symbols(px: float) -> Corruption:
    """Resized so the median symbol is ``px`` high: a screenshot of small text (6-8 px)
    or a high-resolution scan (40 px)."""
    def apply(page: Page, rng: np.random.Generator) -> Page:
        h = ink_height(ink_bright(cv2.cvtColor(page, cv2.COLOR_RGB2GRAY))) or px
        f = px / h
        size = (max(1, round(page.shape[1] * f)), max(1, round(page.shape[0] * f)))
        return cv2.resize(page, size, interpolation=cv2.INTER_AREA if f < 1 else cv2.INTER_CUBIC)
    return apply


def _recolour(ink: tuple[int, int, int], paper: tuple[int, int, int]) -> Corruption:
    def apply(page: Page, rng: np.random.Generator) -> Page:
        a = 1 - page.astype(np.float32) / 255  # ink amount
        out = (1 - a) * np.array(paper, np.float32) + a * np.array(ink, np.float32)
        return out.clip(0, 255).astype(np.uint8)
    return apply


def _photo(page: Page, rng: np.random.Generator) -> Page:
    """A phone photo of a printed page: twice the size, light falling off across it,
    greyish paper, a little blur, sensor noise and JPEG."""
    big = cv2.resize(page, (page.shape[1] * 2, page.shape[0] * 2),
                     interpolation=cv2.INTER_CUBIC).astype(np.float32)
    h, w = big.shape[:2]
    angle = rng.uniform(0, 2 * np.pi)
    ramp = (np.cos(angle) * np.linspace(-1, 1, w)[None, :]
            + np.sin(angle) * np.linspace(-1, 1, h)[:, None])
    light = 0.78 + 0.14 * ramp[..., None]  # 0.64 to 0.92 of white across the image
    out = (big * light * np.array([1.0, 0.97, 0.92], np.float32)).clip(0, 255).astype(np.uint8)
    out = cv2.GaussianBlur(out, (0, 0), 0.8)
    out = (out + rng.normal(0, 6, out.shape)).clip(0, 255).astype(np.uint8)
    ok, buf = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, 70])
    return cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)


def _skew(deg: float) -> Corruption:
    def apply(page: Page, rng: np.random.Generator) -> Page:
        h, w = page.shape[:2]
        m = cv2.getRotationMatrix2D((w / 2, h / 2), deg * rng.choice([-1, 1]), 1.0)
        # Grow the canvas so no ink is cut off.
        c, s = abs(m[0, 0]), abs(m[0, 1])
        nw, nh = int(h * s + w * c) + 2, int(h * c + w * s) + 2
        m[0, 2] += nw / 2 - w / 2
        m[1, 2] += nh / 2 - h / 2
        return cv2.warpAffine(page, m, (nw, nh), flags=cv2.INTER_CUBIC,
                              borderValue=(255, 255, 255))
    return apply


def _margin(page: Page, rng: np.random.Generator) -> Page:
    """The formula in a screenshot region three times its size."""
    h, w = page.shape[:2]
    out = np.full((3 * h, 3 * w, 3), 255, np.uint8)
    y, x = int(rng.integers(0, 2 * h + 1)), int(rng.integers(0, 2 * w + 1))
    out[y:y + h, x:x + w] = page
    return out


CORRUPTIONS: dict[str, Corruption] = {
    "clean": lambda page, rng: page,
    "symbols 6 px": _symbols(6),
    "symbols 8 px": _symbols(8),
    "symbols 40 px": _symbols(40),
    "blur (sigma 1)": _album(A.GaussianBlur(blur_limit=0, sigma_limit=(1.0, 1.0), p=1)),
    "JPEG quality 20": _album(A.ImageCompression(quality_range=(20, 20), p=1)),
    "noise (sigma 0.08)": _album(A.GaussNoise(std_range=(0.08, 0.08), p=1)),
    "dark mode": _recolour(ink=(212, 212, 212), paper=(30, 30, 30)),
    "blue ink, yellow paper": _recolour(ink=(20, 40, 140), paper=(250, 240, 190)),
    "phone photo": _photo,
    "skew 2 deg": _skew(2),
    "bold": _album(A.Morphological(scale=(2, 2), operation="erosion", p=1)),
    "wide margins": _margin,
}


def page_of(path: Path) -> Page:
    gray = load_image(path)
    paper = 255 - ink_bright(gray)  # dark ink on white, whatever the polarity
    return cv2.cvtColor(paper, cv2.COLOR_GRAY2RGB)


def corrupt_dataset(data: Path, name: str, out: Path, seed: int) -> Path:
    """A copy of ``data`` with every image corrupted by ``CORRUPTIONS[name]``."""
    samples, _ = list_samples(data)
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    shutil.copy(data / "caption.txt", out / "caption.txt")
    for s in samples:
        try:
            page = page_of(Path(s.image))
        except Exception:  # noqa: BLE001 - an unreadable image stays missing, scored wrong
            continue
        img = CORRUPTIONS[name](page, rng)
        cv2.imwrite(str(out / f"{s.key}.png"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="printed-base")
    ap.add_argument("--data", required=True, type=Path)
    ap.add_argument("--held-out", action="store_true",
                    help="leave out the lines whose formula the model trained on")
    ap.add_argument("--only", action="append", choices=list(CORRUPTIONS),
                    help="these corruptions only (repeat; default: all)")
    ap.add_argument("--limit", type=int, default=0, help="the first N scored lines only")
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("outputs/robustness"))
    ap.add_argument("--no-cleanup", action="store_true",
                    help="no tone stretch and no margin cut (texlens before 2026-12-06)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rec = Recognizer.load(args.model, backend=args.backend)
    if args.no_cleanup:
        transforms.stretch_tones = lambda gray: gray  # preprocess looks it up when called
        rec.cfg.data = dataclasses.replace(rec.cfg.data, margin_limit=float("inf"))
    rows = []
    for name in args.only or list(CORRUPTIONS):
        folder = args.out / "data" / name.replace(" ", "-").replace("(", "").replace(")", "")
        t0 = time.perf_counter()
        corrupt_dataset(args.data, name, folder, args.seed)
        m = evaluate(rec, folder, limit=args.limit, held_out=args.held_out)["metrics"]
        rows.append({"corruption": name, **{k: m[k] for k in (
            "n", "sentence_acc", "exprate_le1", "bleu", "ned", "n_unreadable")},
            "seconds": round(time.perf_counter() - t0, 1)})
        print(f"{name}: ExpRate {m['sentence_acc']:.4f} BLEU {m['bleu']:.4f} "
              f"NED {m['ned']:.4f} (n {m['n']}, {rows[-1]['seconds']} s)", flush=True)
    clean = next((r["sentence_acc"] for r in rows if r["corruption"] == "clean"), None)
    lines = [f"`{args.model}` on `{args.data}`{' (held out)' if args.held_out else ''}, "
             f"seed {args.seed}{', no cleanup' if args.no_cleanup else ''}", "",
             "| input | n | ExpRate % | vs clean | <=1 % | BLEU | NED |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        d = "" if clean is None else f"{100 * (r['sentence_acc'] - clean):+.1f}"
        lines.append(f"| {r['corruption']} | {r['n']} | {100 * r['sentence_acc']:.1f} | {d} | "
                     f"{100 * r['exprate_le1']:.1f} | {r['bleu']:.3f} | {r['ned']:.3f} |")
    (args.out / "robustness.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (args.out / "robustness.json").write_text(json.dumps(rows, indent=2), encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
