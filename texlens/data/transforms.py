"""Preprocessing shared by training and inference, plus training augmentation.

The model always sees ink as bright pixels on a dark (zero) background, the CROHME
offline convention, so zero padding is blank paper. Three sizing modes:
``height`` (fixed height, aspect kept, batches padded to their widest image),
``fixed`` (every image resized to height x width) and ``scale`` (every image scaled
by one factor, so a symbol is as large in a tall fraction as in a flat sum; images
taller than ``height`` or wider than ``max_width`` are shrunk to fit, and batches
are padded in both directions). ``scale`` suits data whose renderer already
normalises symbol size, like rendered CROHME ink; ``ink_height`` makes it safe for
inputs that were not (see :func:`normalise_ink`).
"""

from __future__ import annotations

import os
from dataclasses import replace
from functools import partial

# albumentations asks PyPI for a newer version on import; texlens works offline, and on a
# machine without network that costs a DNS timeout and a warning in every loader process.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
import albumentations as A  # noqa: E402
import cv2  # noqa: E402
import numpy as np

from texlens.config import AugmentConfig, DataConfig


def ink_bright(gray: np.ndarray) -> np.ndarray:
    """Invert dark-on-light images: the border is paper, so its median tells the polarity."""
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    return 255 - gray if np.median(border) > 127 else gray


PAPER_BLACK = 8  # the paper tone (ink-bright) under which a page counts as black already
# Share of mid-tone pixels (a quarter to three quarters of the way from the darkest to the
# brightest) above which an image is not ink on paper: at most 0.18 in printed, TeX and
# CROHME renderings, 0.5 or more in noise, gradients and photographs. The recogniser gives
# such an input confidence 0 (texlens.recognizer), and its tones are not stretched: that
# would make a gradient look like ink on paper.
MIDTONE_MAX = 0.4


def midtone_share(a: np.ndarray) -> float:
    lo, hi = float(a.min()), float(a.max())
    r = (a.astype(np.float32) - lo) / max(hi - lo, 1e-6)
    return float(((r > 0.25) & (r < 0.75)).mean())


def stretch_tones(gray: np.ndarray) -> np.ndarray:
    """An ink-bright image's tones stretched so paper is 0 and ink 255: a dark-mode
    screenshot (light grey on dark grey), coloured ink on tinted paper or a photo's grey
    page reach the model as the black-and-white renderings it trained on. Paper is the
    median tone under the Otsu threshold, ink the 95th percentile above it (a few noisy
    bright pixels do not set it). An image whose paper is black already (under
    ``PAPER_BLACK``) is returned as it is: the renderings the models trained on, whose
    thin anti-aliased strokes may never reach 255, and blurred images, whose faint
    strokes stretched would read as bold (measured: benchmarks/robustness.py); so is one
    that is not ink on paper at all (``MIDTONE_MAX``)."""
    if gray.size == 0 or gray.max() == gray.min() or midtone_share(gray) > MIDTONE_MAX:
        return gray
    t, _ = cv2.threshold(gray, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    paper, ink = gray[gray <= t], gray[gray > t]
    if not len(paper) or not len(ink):
        return gray
    lo, hi = float(np.median(paper)), float(np.percentile(ink, 95))
    if lo < PAPER_BLACK or hi - lo < 32:  # black paper as trained on, or no contrast
        return gray
    out = (gray.astype(np.float32) - lo) * (255.0 / (hi - lo))
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


STRIDE = 8  # sizes are kept multiples of the CNN stride so no row or column is dropped


def _round_up(x: float, lo: int, hi: int) -> int:
    return max(lo, min(hi, int(np.ceil(round(x) / STRIDE)) * STRIDE))


def target_size(h: int, w: int, cfg: DataConfig) -> tuple[int, int]:
    h, w = max(h, 1), max(w, 1)
    if cfg.size_mode == "fixed":
        return cfg.height, cfg.width
    if cfg.size_mode == "height":
        return cfg.height, _round_up(w * cfg.height / h, STRIDE, cfg.max_width)
    if cfg.size_mode == "scale":
        f = min(cfg.scale, cfg.height / h, cfg.max_width / w)
        return _round_up(h * f, STRIDE, cfg.height), _round_up(w * f, STRIDE, cfg.max_width)
    raise ValueError(f"data.size_mode must be 'height', 'fixed' or 'scale', "
                     f"not {cfg.size_mode!r}")


def _components(gray: np.ndarray) -> np.ndarray:
    """(N, 5) OpenCV stats (left, top, width, height, area) of the ink's connected
    components in an ink-bright image, Otsu-thresholded."""
    _, binary = cv2.threshold(gray, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    _, _, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
    return stats[1:]


def _symbol_height(stats: np.ndarray) -> float | None:
    h, w = stats[:, cv2.CC_STAT_HEIGHT], stats[:, cv2.CC_STAT_WIDTH]
    keep = (h >= 3) & (h >= 0.3 * w)
    return float(np.median(h[keep])) if keep.any() else None


def ink_height(gray: np.ndarray) -> float | None:
    """Median height (px) of the ink's connected components in an ink-bright image,
    leaving out specks and flat strokes (minus signs, fraction bars), which say nothing
    about symbol size. None when there is no such component."""
    return _symbol_height(_components(gray))


def crop_margins(gray: np.ndarray, limit: float, keep: float) -> np.ndarray:
    """An ink-bright image whose sides have more than ``limit`` symbol heights of blank
    paper, each such side cut to ``keep`` (``data.margin_limit``, ``data.margin_keep``):
    formulas cut from a screenshot or a page often come with far more paper around them
    than any training image had (measured: benchmarks/robustness.py, "wide margins").
    Specks (under 3 px either way) do not hold a margin open. Unchanged when no symbol
    is found."""
    if limit <= 0 or keep < 0:
        raise ValueError(f"data.margin_limit must be > 0 and data.margin_keep >= 0 (symbol "
                         f"heights), got {limit} and {keep}")
    if gray.size == 0 or gray.max() == gray.min():
        return gray
    stats = _components(gray)
    symbol = _symbol_height(stats)
    solid = stats[(stats[:, cv2.CC_STAT_HEIGHT] >= 3) | (stats[:, cv2.CC_STAT_WIDTH] >= 3)]
    if symbol is None or not len(solid):
        return gray
    left, top = solid[:, cv2.CC_STAT_LEFT].min(), solid[:, cv2.CC_STAT_TOP].min()
    right = (solid[:, cv2.CC_STAT_LEFT] + solid[:, cv2.CC_STAT_WIDTH]).max()
    bottom = (solid[:, cv2.CC_STAT_TOP] + solid[:, cv2.CC_STAT_HEIGHT]).max()
    limit, keep = limit * symbol, max(2, round(keep * symbol))
    h, w = gray.shape
    y0 = top - keep if top > limit else 0
    x0 = left - keep if left > limit else 0
    y1 = bottom + keep if h - bottom > limit else h
    x1 = right + keep if w - right > limit else w
    return gray if (y0, x0, y1, x1) == (0, 0, h, w) else gray[y0:y1, x0:x1]


def normalises_ink(cfg: DataConfig) -> bool:
    """Whether preprocessing may resize an image by its measured symbol height, so its
    model-input size depends on its pixels and not just on its width and height."""
    return cfg.size_mode == "scale" and cfg.ink_height > 0


def normalise_ink(gray: np.ndarray, cfg: DataConfig) -> np.ndarray:
    """Under scale mode with ``ink_height`` set, resize an ink-bright image whose symbols
    are far from the training size (more than ``ink_tolerance`` x off) to that size.

    Rendered CROHME ink has per-image symbol heights within about 0.7-1.3x of their
    median; a tolerance of 2 leaves every such image as it is and still catches a photo
    or a 300-dpi scan, whose symbols can be 3-10x larger. Printed renderings come at
    random font sizes and use 1: every image is brought to the one symbol size."""
    if not normalises_ink(cfg) or gray.max() == gray.min():
        return gray
    measured = ink_height(gray)
    tol = max(cfg.ink_tolerance, 1.0)
    if measured is None or 1 / tol < cfg.ink_height / measured < tol:
        return gray
    f = cfg.ink_height / measured
    size = (max(1, round(gray.shape[1] * f)), max(1, round(gray.shape[0] * f)))
    return cv2.resize(gray, size, interpolation=cv2.INTER_AREA if f < 1 else cv2.INTER_LINEAR)


def input_settings(cfg: DataConfig) -> dict[str, object]:
    """The data settings that decide what a model's input looks like: two models, or a
    model and the data it is trained on next, should agree on them."""
    keys = ("size_mode", "height", "width", "scale", "max_width", "ink_height",
            "ink_tolerance", "margin_limit", "margin_keep")
    return {k: getattr(cfg, k) for k in keys}


def view_config(cfg: DataConfig, factor: float) -> DataConfig:
    """The input settings of a test-time view ``factor`` times the model's input size: in
    ``scale`` mode the scale (the height cap stays), else the height (and a fixed width)."""
    if factor <= 0:
        raise ValueError(f"a view's size factor must be positive, not {factor}")
    if cfg.size_mode == "scale":
        return replace(cfg, scale=cfg.scale * factor)
    width = round(cfg.width * factor) if cfg.size_mode == "fixed" else cfg.width
    return replace(cfg, height=max(8, round(cfg.height * factor)), width=width)


def preprocess(gray: np.ndarray, cfg: DataConfig) -> np.ndarray:
    """uint8 gray (any polarity, any size) -> uint8 (H, W'), ink bright."""
    gray = stretch_tones(ink_bright(gray))
    gray = normalise_ink(crop_margins(gray, cfg.margin_limit, cfg.margin_keep), cfg)
    h, w = target_size(*gray.shape, cfg)
    interp = cv2.INTER_AREA if h < gray.shape[0] else cv2.INTER_LINEAR
    return cv2.resize(gray, (w, h), interpolation=interp)


def build_augment(cfg: AugmentConfig) -> A.Compose | None:
    if not cfg.enabled:
        return None
    return A.Compose([
        A.Affine(rotate=(-cfg.rotate_deg, cfg.rotate_deg), scale=cfg.scale,
                 shear=(-cfg.shear_deg, cfg.shear_deg), fill=0, p=cfg.p_affine),
        A.OneOf([A.Morphological(scale=(2, 2), operation="dilation"),
                 A.Morphological(scale=(2, 2), operation="erosion")], p=cfg.p_morph),
        A.GaussianBlur(blur_limit=(3, 3), p=cfg.p_blur),
        A.GaussNoise(std_range=(0.02, 0.08), p=cfg.p_noise),
    ])


def _margin(img: np.ndarray, max_px: int, **_: object) -> np.ndarray:
    rng = np.random.default_rng()
    border = np.concatenate([img[0], img[-1], img[:, 0], img[:, -1]])
    top, bottom, left, right = (int(v) for v in rng.integers(0, max_px + 1, size=4))
    return cv2.copyMakeBorder(img, top, bottom, left, right, cv2.BORDER_CONSTANT,
                              value=int(np.median(border)))


def _tint(img: np.ndarray, **_: object) -> np.ndarray:
    """Paper and ink moved toward each other (grey paper, grey ink: a photo, a tinted
    web page) and a linear lighting ramp; either polarity, the order of tones is kept."""
    rng = np.random.default_rng()
    lo, hi = rng.uniform(0, 90), rng.uniform(165, 255)
    out = lo + (hi - lo) * (img.astype(np.float32) / 255.0)
    h, w = img.shape[:2]
    ramp = np.linspace(1.0, rng.uniform(0.8, 1.0), w if rng.random() < 0.5 else h)
    out *= ramp[None, :] if ramp.size == w else ramp[:, None]
    return np.clip(out, 0, 255).astype(np.uint8)


def build_page_augment(cfg: AugmentConfig) -> A.Compose | None:
    """Augmentation of the image as loaded, before :func:`preprocess`: what screenshots and
    scans do to a formula (margins, tones, low resolution, JPEG). Before preprocessing,
    because polarity detection and ink normalisation must cope with them at inference too."""
    probs = (cfg.p_margin, cfg.p_tint, cfg.p_downscale, cfg.p_jpeg)
    if not cfg.enabled or not any(probs):
        return None
    return A.Compose([
        # Module-level functions, not lambdas: data-loader workers pickle the pipeline.
        A.Lambda(image=partial(_margin, max_px=cfg.max_margin), p=cfg.p_margin),
        A.Lambda(image=_tint, p=cfg.p_tint),
        A.Downscale(scale_range=(0.45, 0.9), p=cfg.p_downscale,
                    interpolation_pair={"downscale": cv2.INTER_AREA,
                                        "upscale": cv2.INTER_LINEAR}),
        A.ImageCompression(quality_range=(25, 90), p=cfg.p_jpeg),
    ])


def to_tensor_array(img: np.ndarray) -> np.ndarray:
    """uint8 (H, W) -> float32 (1, H, W) in [0, 1]."""
    return (img.astype(np.float32) / 255.0)[None]
