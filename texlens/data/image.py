"""Image loading: every entry point goes through ``load_image`` so errors always name the file."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif")


class ImageError(ValueError):
    """An image could not be read; the message names its source."""


def load_image(src: str | Path | bytes | np.ndarray | Image.Image, name: str | None = None
               ) -> np.ndarray:
    """Any image source -> grayscale uint8 (H, W). Raises ImageError naming the file."""
    label = name or (str(src) if isinstance(src, (str, Path)) else "<image>")
    if isinstance(src, np.ndarray):
        arr = src
        if arr.ndim == 3:
            arr = arr[..., :3].mean(-1) if arr.shape[-1] >= 3 else arr[..., 0]
        if arr.ndim != 2 or arr.size == 0:
            raise ImageError(f"{label}: expected a 2-D or HxWxC array, got shape {src.shape}")
        if arr.dtype != np.uint8:
            arr = np.asarray(arr, np.float32)
            if arr.max() <= 1.0:
                arr = arr * 255.0
            arr = np.clip(arr, 0, 255).astype(np.uint8)
        return np.ascontiguousarray(arr)
    try:
        if isinstance(src, Image.Image):
            img = src
        else:
            img = Image.open(io.BytesIO(src) if isinstance(src, bytes) else src)
        img.load()  # decode now: truncated files fail here, not later mid-epoch
        if img.mode in ("RGBA", "LA", "P"):
            # Transparent formula renders are ink on nothing: composite onto white.
            rgba = img.convert("RGBA")
            bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            img = Image.alpha_composite(bg, rgba)
        arr = np.asarray(img.convert("L"), dtype=np.uint8)
    except FileNotFoundError:
        raise ImageError(f"{label}: file not found") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise ImageError(f"{label}: not a readable image ({e})") from None
    if arr.size == 0:
        raise ImageError(f"{label}: empty image")
    return arr


def image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) from the file header without decoding the pixels."""
    try:
        with Image.open(path) as img:
            return img.size
    except FileNotFoundError:
        raise ImageError(f"{path}: file not found") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise ImageError(f"{path}: not a readable image ({e})") from None
