"""Image loading: every entry point goes through ``load_image`` so errors always name the file.

Anything that is not a usable formula image becomes an :class:`ImageError` whose
message names the source and says what is wrong, so a batch job can report the file
and go on (a server can answer 4xx). The limits are explicit rather than Pillow's:
its decompression-bomb check only raises beyond 179 Mpx, and warns (then decodes
gigabytes) below that.
"""

from __future__ import annotations

import io
import re
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

# .pgm (raw 8-bit graymap): the form benchmarks/pack_for_device.py ships datasets in, since
# xz over raw pixels is smaller than over PNG files.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".pgm")

# 40 Mpx is a 300-dpi A4 page twice over (an 8-bit page decodes to 40 MB, RGBA to 160 MB);
# no formula needs more. Checked from the header, before any pixel is decoded.
MAX_PIXELS = 40_000_000
# A one-line formula of 100 symbols is about 30:1; 100:1 leaves room and rejects strips
# that would shrink to a line of noise at the model's input height.
MAX_ASPECT = 100.0

# We enforce the stricter MAX_PIXELS ourselves, so Pillow's warning for 89-179 Mpx
# images would only be noise before our error.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


class ImageError(ValueError):
    """An image could not be read; the message names its source.

    ``reason`` is a short machine-readable kind: ``not_found``, ``empty``,
    ``not_image``, ``corrupt``, ``too_large``, ``aspect`` or ``shape``.
    """

    def __init__(self, message: str, reason: str = "not_image"):
        super().__init__(message)
        self.reason = reason


def _too_large(label: str, size: str, max_pixels: int) -> ImageError:
    return ImageError(f"{label}: image too large: {size}, over the limit of "
                      f"{max_pixels / 1e6:g} Mpx (a decompression bomb?)", "too_large")


def _bomb(label: str, e: Exception, max_pixels: int) -> ImageError:
    """Pillow refuses over 179 Mpx before we see the size; its message has the count."""
    found = re.search(r"\((\d+) pixels\)", str(e))
    size = f"{int(found[1]) / 1e6:.1f} Mpx" if found else str(e)
    return _too_large(label, size, max_pixels)


def check_size(width: int, height: int, label: str, max_pixels: int = MAX_PIXELS) -> None:
    """Raise ImageError for an empty, too large or absurdly elongated image."""
    if width <= 0 or height <= 0:
        raise ImageError(f"{label}: empty image ({width}x{height} pixels)", "empty")
    if width * height > max_pixels:
        raise _too_large(label, f"{width}x{height} = {width * height / 1e6:.1f} Mpx", max_pixels)
    ratio = max(width / height, height / width)
    if ratio > MAX_ASPECT:
        raise ImageError(f"{label}: aspect ratio {ratio:.0f}:1 ({width}x{height}) is over "
                         f"{MAX_ASPECT:g}:1; not a formula image", "aspect")


def _array_to_gray(arr: np.ndarray, label: str) -> np.ndarray:
    src_shape = arr.shape
    if arr.ndim == 3:
        arr = arr[..., :3].mean(-1) if arr.shape[-1] >= 3 else arr[..., 0]
    if arr.ndim != 2 or arr.size == 0:
        raise ImageError(f"{label}: expected a 2-D or HxWxC array, got shape {src_shape}",
                         "shape")
    if arr.dtype == np.uint16:  # 16-bit scans: scale, do not clip to white
        arr = (arr.astype(np.uint32) * 255 + 32767) // 65535
    if arr.dtype != np.uint8:
        arr = np.asarray(arr, np.float32)
        if arr.max() <= 1.0:
            arr = arr * 255.0
        arr = np.clip(arr, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(arr)


def _high_depth_to_gray(img: Image.Image) -> np.ndarray:
    """16-bit and 32-bit grayscale modes -> uint8, scaled rather than clipped.

    Pillow's convert("L") clips I;16 values to 255, which turns a 16-bit scan white.
    """
    arr = np.asarray(img)
    if img.mode == "F":
        arr = arr.astype(np.float64)
        top = 1.0 if arr.max() <= 1.0 else 255.0
        return np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
    arr = arr.astype(np.int64)
    # Mode "I" holds 8-, 16- or 32-bit data; PNG and TIFF 16-bit fit in 0..65535.
    top = 255 if img.mode == "I" and arr.max() <= 255 else 65535
    if arr.max() > 65535:
        top = int(arr.max())
    return np.clip((arr * 255 + top // 2) // top, 0, 255).astype(np.uint8)


def _to_gray(img: Image.Image) -> np.ndarray:
    if img.mode in ("I", "F") or img.mode.startswith("I;16"):
        return _high_depth_to_gray(img)
    if img.mode in ("RGBA", "LA", "PA", "La", "RGBa") or (
            img.mode == "P" and "transparency" in img.info):
        # Transparent formula renders are ink on nothing: composite onto white.
        rgba = img.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(bg, rgba)
    elif img.mode == "CMYK":
        img = img.convert("RGB")  # Pillow has no direct CMYK -> L
    return np.asarray(img.convert("L"), dtype=np.uint8)


def load_image(src: str | Path | bytes | np.ndarray | Image.Image, name: str | None = None,
               max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Any image source -> grayscale uint8 (H, W). Raises ImageError naming the file.

    16-bit images are scaled to 8 bits, transparency is composited on white, CMYK
    and palette images are converted, and an animated image gives its first frame.
    """
    label = name or (str(src) if isinstance(src, (str, Path)) else "<image>")
    if isinstance(src, np.ndarray):
        arr = _array_to_gray(src, label)
        check_size(arr.shape[1], arr.shape[0], label, max_pixels)
        return arr
    if isinstance(src, (bytes, bytearray)) and len(src) == 0:
        raise ImageError(f"{label}: empty file (0 bytes)", "empty")
    try:
        if isinstance(src, (str, Path)) and Path(src).is_file() and Path(src).stat().st_size == 0:
            raise ImageError(f"{label}: empty file (0 bytes)", "empty")
        if isinstance(src, Image.Image):
            img = src
        else:
            img = Image.open(io.BytesIO(src) if isinstance(src, (bytes, bytearray)) else src)
        check_size(*img.size, label, max_pixels)  # from the header, before decoding
        if getattr(img, "n_frames", 1) > 1:
            img.seek(0)  # animated GIF/PNG/WebP: the first frame
        img.load()  # decode now: truncated files fail here, not later mid-epoch
        arr = _to_gray(img)
    except FileNotFoundError:
        raise ImageError(f"{label}: file not found", "not_found") from None
    except IsADirectoryError:
        raise ImageError(f"{label}: is a directory, not an image file", "not_found") from None
    except Image.DecompressionBombError as e:
        raise _bomb(label, e, max_pixels) from None
    except UnidentifiedImageError:
        raise ImageError(f"{label}: not a readable image (not a known image format)",
                         "not_image") from None
    except (OSError, ValueError, SyntaxError, EOFError) as e:
        if isinstance(e, ImageError):
            raise
        raise ImageError(f"{label}: not a readable image (truncated or corrupt data: {e})",
                         "corrupt") from None
    if arr.size == 0:
        raise ImageError(f"{label}: empty image", "empty")
    return arr


def image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) from the file header without decoding the pixels."""
    try:
        with Image.open(path) as img:
            return img.size
    except FileNotFoundError:
        raise ImageError(f"{path}: file not found", "not_found") from None
    except Image.DecompressionBombError as e:
        raise _bomb(str(path), e, MAX_PIXELS) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise ImageError(f"{path}: not a readable image ({e})") from None
