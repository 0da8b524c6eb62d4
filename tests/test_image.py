"""load_image on every kind of bad or unusual file, each generated here."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from texlens.data.image import MAX_ASPECT, MAX_PIXELS, ImageError, load_image


def ink_array(h: int = 20, w: int = 60) -> np.ndarray:
    """White page, a black bar: the minimum that tells ink from paper."""
    arr = np.full((h, w), 255, np.uint8)
    arr[8:12, 10:50] = 0
    return arr


def png_bytes(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=kw.pop("format", "PNG"), **kw)
    return buf.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(
        ">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def blank_bitmap_png(width: int, height: int) -> bytes:
    """A valid 1-bit PNG of any size, compressed row by row: a 30000x30000 one is ~100 KB
    on disk (a decompression bomb) and never exists in memory."""
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit grayscale
    row = b"\x00" + b"\xff" * ((width + 7) // 8)  # filter byte + white pixels
    comp = zlib.compressobj(9)
    idat = b"".join(comp.compress(row) for _ in range(height)) + comp.flush()
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(
        b"IEND", b"")


def test_decompression_bomb_is_an_image_error():
    bomb = blank_bitmap_png(30000, 30000)
    assert len(bomb) < 1_000_000
    with pytest.raises(ImageError, match=r"bomb\.png: image too large: "
                                         r"900\.0 Mpx, over the limit of 40 Mpx") as e:
        load_image(bomb, name="bomb.png")
    assert e.value.reason == "too_large"


def test_pixel_limit_is_ours_not_pillows(tmp_path):
    # 64 Mpx: under Pillow's own error threshold (179 Mpx), over ours.
    path = tmp_path / "big.png"
    path.write_bytes(blank_bitmap_png(8000, 8000))
    with pytest.raises(ImageError, match=r"big\.png: image too large: 8000x8000"):
        load_image(path)
    assert load_image(path, max_pixels=100_000_000).shape == (8000, 8000)
    ok = blank_bitmap_png(4000, 2000)  # 8 Mpx: fine
    assert MAX_PIXELS > 4000 * 2000 and load_image(ok).shape == (2000, 4000)


def test_truncated_png(tmp_path):
    data = png_bytes(Image.fromarray(np.random.default_rng(0).integers(
        0, 255, (200, 300), dtype=np.uint8)))
    path = tmp_path / "cut.png"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match=r"cut\.png: not a readable image \(truncated") as e:
        load_image(path)
    assert e.value.reason == "corrupt"


def test_empty_file(tmp_path):
    (tmp_path / "zero.png").write_bytes(b"")
    with pytest.raises(ImageError, match=r"zero\.png: empty file \(0 bytes\)"):
        load_image(tmp_path / "zero.png")
    with pytest.raises(ImageError, match=r"upload: empty file"):
        load_image(b"", name="upload")


def test_not_an_image(tmp_path):
    (tmp_path / "notes.png").write_text("\\frac{1}{2}\n")
    with pytest.raises(ImageError, match=r"notes\.png: not a readable image \(not a known") as e:
        load_image(tmp_path / "notes.png")
    assert e.value.reason == "not_image"


def test_16_bit_png_is_scaled_not_clipped(tmp_path):
    arr16 = ink_array().astype(np.uint16) * 257  # 0 / 65535
    arr16[0, 0] = 32768  # mid-grey
    path = tmp_path / "deep.png"
    Image.fromarray(arr16).save(path)
    assert Image.open(path).mode.startswith("I")
    gray = load_image(path)
    assert gray.dtype == np.uint8
    assert np.array_equal(gray[1:], ink_array()[1:])  # ink stays black, paper white
    assert abs(int(gray[0, 0]) - 128) <= 1
    assert np.array_equal(load_image(arr16)[1:], ink_array()[1:])  # the array path too


def test_alpha_is_composited_on_white():
    rgba = np.zeros((20, 60, 4), np.uint8)  # transparent black...
    rgba[8:12, 10:50, 3] = 255  # ...with opaque black ink
    gray = load_image(png_bytes(Image.fromarray(rgba, "RGBA")))
    assert np.array_equal(gray, ink_array())
    la = Image.fromarray(rgba[..., [0, 3]], "LA")
    assert np.array_equal(load_image(png_bytes(la)), ink_array())


@pytest.mark.parametrize("fmt", ["JPEG", "TIFF"])
def test_cmyk(fmt):
    cmyk = Image.new("CMYK", (60, 20), (0, 0, 0, 0))  # no ink: white
    cmyk.paste((0, 0, 0, 255), (10, 8, 50, 12))  # black (K) bar
    img = Image.open(io.BytesIO(png_bytes(cmyk, format=fmt)))
    assert img.mode == "CMYK"
    gray = load_image(png_bytes(cmyk, format=fmt))
    assert gray[2, 2] > 230 and gray[10, 30] < 30  # JPEG: lossy, roughly


def test_palette_with_and_without_transparency():
    pal = Image.fromarray(ink_array()).convert("P")
    assert np.array_equal(load_image(png_bytes(pal)), ink_array())
    # Transparent palette entry as the background: composited on white, not black.
    p = Image.new("P", (60, 20), 0)
    p.putpalette([0, 0, 0, 10, 10, 10] + [0] * 762)
    p.paste(1, (10, 8, 50, 12))
    gray = load_image(png_bytes(p, transparency=0))
    assert gray[2, 2] == 255 and gray[10, 30] == 10


def test_animated_gif_gives_the_first_frame():
    first = Image.fromarray(ink_array()).convert("P")
    second_arr = np.full((20, 60), 255, np.uint8)
    second_arr[:, :5] = 0
    second = Image.fromarray(second_arr).convert("P")
    data = png_bytes(first, format="GIF", save_all=True, append_images=[second], duration=100)
    img = Image.open(io.BytesIO(data))
    assert img.n_frames == 2
    assert np.array_equal(load_image(data), ink_array())


@pytest.mark.parametrize("shape", [(4, 4000), (4000, 4)])
def test_huge_aspect_ratio(shape):
    arr = np.full(shape, 255, np.uint8)
    with pytest.raises(ImageError, match=rf"strip: aspect ratio 1000:1 .* over "
                                         rf"{MAX_ASPECT:g}:1") as e:
        load_image(png_bytes(Image.fromarray(arr)), name="strip")
    assert e.value.reason == "aspect"
    with pytest.raises(ImageError, match="aspect ratio"):
        load_image(arr)
    assert load_image(np.full((20, 1500), 255, np.uint8)).shape == (20, 1500)  # 75:1 is fine


@pytest.mark.parametrize("side", [7000, 100000])
def test_header_claiming_huge_size_fails_before_decoding(side):
    # A header and no pixel data: the size is refused from the header alone (a decoder
    # would fail on the missing data otherwise, with another message).
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    fake = (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", b"")
            + _chunk(b"IEND", b""))
    with pytest.raises(ImageError, match=rf"fake\.png: image too large: .*{side * side / 1e6:.1f} "
                                         rf"Mpx, over the limit of 40 Mpx"):
        load_image(fake, name="fake.png")


def test_loading_the_augmentations_asks_no_network():
    """texlens works offline: importing the preprocessing (and albumentations with it)
    must not look up any host. A fresh interpreter, with DNS made to fail and record."""
    import os
    import subprocess
    import sys

    probe = (
        "import socket\n"
        "asked = []\n"
        "def refuse(*a, **k):\n"
        "    asked.append(a[0] if a else k)\n"
        "    raise OSError('no network in this test')\n"
        "socket.getaddrinfo = refuse\n"
        "socket.create_connection = refuse\n"
        "import texlens.data.transforms\n"
        "import threading, time\n"
        "[t.join(5) for t in threading.enumerate() if t is not threading.main_thread()]\n"
        "print('ASKED', asked)\n")
    env = {k: v for k, v in os.environ.items() if k != "NO_ALBUMENTATIONS_UPDATE"}
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "ASKED []" in out.stdout, out.stdout + out.stderr
