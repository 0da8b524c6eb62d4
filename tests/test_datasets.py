"""Dataset layouts, sample checks, batching, image loading and preprocessing."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from texlens.checkpoint import CheckpointError
from texlens.config import DataConfig
from texlens.data.datasets import (
    DatasetError,
    FormulaDataset,
    Sample,
    SizeBucketSampler,
    collate,
    read_layout,
    scan_dataset,
)
from texlens.data.image import ImageError, image_size, load_image
from texlens.data.splits import pack_formulas
from texlens.data.transforms import (
    crop_margins,
    ink_bright,
    ink_height,
    normalise_ink,
    preprocess,
    stretch_tones,
    target_size,
    to_tensor_array,
)
from texlens.evaluate import evaluate
from texlens.models.satrn import build_model
from texlens.recognizer import Recognizer
from texlens.tokens import Vocab
from texlens.train.run import shared_formulas, train


def formula_png(path: Path, w: int = 60, h: int = 20, fmt: str | None = None) -> Path:
    """A dark-on-light 'formula': white paper, a black bar in the middle."""
    arr = np.full((h, w), 255, np.uint8)
    arr[h // 3: 2 * h // 3, w // 6: 5 * w // 6] = 0
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, format=fmt)
    return path


def write_caption(root: Path, rows: list[str], name: str = "caption.txt") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    path = root / name
    path.write_text("".join(r + "\n" for r in rows), encoding="utf-8")
    return path


# -- layouts -------------------------------------------------------------------

def test_standard_layout_finds_images_everywhere(tmp_path):
    root = tmp_path / "std"
    formula_png(root / "top.png")
    formula_png(root / "images" / "sub.jpg", fmt="JPEG")
    formula_png(root / "crohme_0.bmp", fmt="BMP")
    formula_png(root / "images" / "named.png")
    write_caption(root, ["top\tx + 1", "sub\ty", "", "crohme\t\\frac { a } { b }",
                         "named.png\tz"])
    samples, problems = read_layout(root)
    assert problems == []
    by_key = {s.key: s for s in samples}
    assert by_key["top"].image == root / "top.png"
    assert by_key["sub"].image == root / "images" / "sub.jpg"
    assert by_key["crohme"].image == root / "crohme_0.bmp"
    assert by_key["named.png"].image == root / "images" / "named.png"
    assert by_key["crohme"].tokens == ["\\frac", "{", "a", "}", "{", "b", "}"]
    # Blank lines count for line numbers.
    assert by_key["crohme"].where == f"{root / 'caption.txt'}:4"
    assert by_key["top"].source is None and by_key["top"].level is None


def test_competition_layout_with_source_and_level(tmp_path):
    root = tmp_path / "comp"
    formula_png(root / "images" / "p1.png")
    formula_png(root / "h1.png")
    write_caption(root, ["p1.png\tx ^ { 2 }", "h1.png\ty"], "gt.txt")
    write_caption(root, ["p1.png\t0", "h1.png\t1"], "source.txt")
    write_caption(root, ["p1.png\t3"], "level.txt")
    write_caption(root, ["x", "y", "^", "{", "}"], "tokens.txt")
    samples, problems = read_layout(root)
    assert problems == []
    by_key = {s.key: s for s in samples}
    assert by_key["p1.png"].tokens == ["x", "^", "{", "2", "}"]
    assert (by_key["p1.png"].source, by_key["p1.png"].level) == (0, 3)
    assert (by_key["h1.png"].source, by_key["h1.png"].level) == (1, None)
    assert by_key["h1.png"].where.endswith("gt.txt:2")


def test_bad_metadata_line_names_file_and_line(tmp_path):
    root = tmp_path / "comp"
    formula_png(root / "a.png")
    write_caption(root, ["a.png\tx"], "gt.txt")
    write_caption(root, ["a.png\t0", "b.png\thandwritten"], "source.txt")
    with pytest.raises(DatasetError, match=r"source\.txt:2"):
        read_layout(root)


def test_not_a_dataset_directory(tmp_path):
    with pytest.raises(DatasetError, match="caption.txt"):
        read_layout(tmp_path)
    with pytest.raises(DatasetError, match="not a directory"):
        read_layout(tmp_path / "nope")


def test_the_fixture_dataset_scans_clean(dataset_dir):
    report = scan_dataset([dataset_dir])
    assert report.problems == [] and len(report.samples) == 12
    for s in report.samples:
        with Image.open(s.image) as im:
            assert (s.width, s.height) == im.size


# -- bad samples -------------------------------------------------------------------

@pytest.fixture
def messy_dir(tmp_path) -> Path:
    root = tmp_path / "messy"
    formula_png(root / "images" / "good1.png")
    formula_png(root / "images" / "good2.png", w=90)
    full = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (60, 200), np.uint8)).save(
        full, format="PNG")
    data = full.getvalue()
    (root / "images" / "trunc.png").write_bytes(data[: len(data) // 2])
    (root / "images" / "text.png").write_text("this is not an image")
    formula_png(root / "images" / "empty.png")
    formula_png(root / "images" / "oov.png")
    formula_png(root / "images" / "long.png")
    write_caption(root, [
        "good1\tx + 1",       # 1
        "missing\tx",         # 2
        "trunc\tx",           # 3
        "text\ty",            # 4
        "empty\t   ",         # 5
        "oov\tx \\weird",     # 6
        "good2\ty = x",       # 7
        "long\t" + " ".join(["x"] * 30),  # 8
    ])
    return root


VOCAB = Vocab(["x", "y", "+", "=", "1"])


def test_scan_reports_each_problem_with_file_and_line(messy_dir):
    report = scan_dataset([messy_dir], VOCAB, max_tokens=20)
    cap = str(messy_dir / "caption.txt")
    assert sorted(s.key for s in report.samples) == ["good1", "good2"]
    assert report.skipped == 6 == len(report.problems)
    by_line: dict[int, str] = {}
    for p in report.problems:
        assert p.startswith(cap + ":"), p
        by_line[int(p[len(cap) + 1:].split(":")[0])] = p
    assert sorted(by_line) == [2, 3, 4, 5, 6, 8]
    assert "not found" in by_line[2] and "'missing'" in by_line[2]
    assert "trunc.png" in by_line[3] and "not a readable image" in by_line[3]
    assert "text.png" in by_line[4] and "not a readable image" in by_line[4]
    assert "empty caption" in by_line[5]
    assert "outside the vocabulary" in by_line[6] and "\\weird" in by_line[6]
    assert "30 tokens" in by_line[8]
    good = {s.key: s for s in report.samples}
    assert (good["good2"].width, good["good2"].height) == (90, 20)


def test_scan_without_vocab_or_decoding(messy_dir):
    # Header-only checks: the truncated file still has a valid header.
    report = scan_dataset([messy_dir], decode_images=False)
    keys = {s.key for s in report.samples}
    assert {"good1", "good2", "trunc", "oov", "long"} == keys
    assert report.skipped == 3


def test_train_stops_before_training_on_bad_samples(messy_dir, tiny_cfg, capsys):
    cfg = replace(tiny_cfg, data=replace(tiny_cfg.data, train=[str(messy_dir)],
                                         val=[str(messy_dir)], on_error="stop"))
    with pytest.raises(DatasetError, match=r"data.train: 4 bad samples"):
        train(cfg)
    out = capsys.readouterr().out
    assert f"{messy_dir / 'caption.txt'}:3" in out  # every problem was printed
    assert not (Path(cfg.train.out_dir) / "checkpoints").exists()
    assert not (Path(cfg.train.out_dir) / "model.pt").exists()


def test_train_rejects_bad_on_error_value(tiny_cfg):
    cfg = replace(tiny_cfg, data=replace(tiny_cfg.data, on_error="ignore"))
    with pytest.raises(DatasetError, match="on_error"):
        train(cfg)


def test_train_requires_datasets(tiny_cfg):
    with pytest.raises(DatasetError, match="data.train"):
        train(tiny_cfg)


def test_evaluate_reports_undecodable_images_with_line(messy_dir, tiny_cfg):
    torch.manual_seed(0)
    model = build_model(tiny_cfg.model, len(VOCAB)).eval()
    cfg = replace(tiny_cfg, data=replace(tiny_cfg.data, max_tokens=5))
    rec = Recognizer(model, cfg, VOCAB)
    result = evaluate(rec, messy_dir)
    cap = str(messy_dir / "caption.txt")
    # One denominator: only the empty caption is left out; bad samples count as wrong.
    assert [r["key"] for r in result["rows"]] == ["good1", "missing", "trunc", "text", "oov",
                                                  "good2", "long"]
    assert any(p.startswith(f"{cap}:3:") and "trunc.png" in p for p in result["problems"])
    m = result["metrics"]
    assert (m["n"], m["n_unreadable"], m["n_oov"], m["n_empty"]) == (7, 3, 1, 1)
    with pytest.raises(DatasetError, match="bad samples"):
        evaluate(rec, messy_dir, on_error="stop")
    with pytest.raises(CheckpointError):
        Recognizer.load(messy_dir / "caption.txt")


# -- images ----------------------------------------------------------------------

def test_load_image_sources(tmp_path):
    path = formula_png(tmp_path / "f.png")
    from_path = load_image(path)
    assert from_path.dtype == np.uint8 and from_path.shape == (20, 60)
    assert np.array_equal(load_image(path.read_bytes()), from_path)
    assert np.array_equal(load_image(Image.open(path)), from_path)
    rgb = np.stack([from_path] * 3, -1)
    assert np.array_equal(load_image(rgb), from_path)
    assert np.array_equal(load_image(from_path.astype(np.float32) / 255.0), from_path)
    assert image_size(path) == (60, 20)


def test_transparent_png_is_ink_on_white(tmp_path):
    rgba = np.zeros((10, 30, 4), np.uint8)  # fully transparent...
    rgba[3:7, 5:25] = (0, 0, 0, 255)  # ...except opaque black ink
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "t.png")
    gray = load_image(tmp_path / "t.png")
    assert gray[0, 0] == 255 and gray[5, 10] == 0


def test_image_errors_name_the_file(tmp_path):
    with pytest.raises(ImageError, match=r"nope\.png: file not found"):
        load_image(tmp_path / "nope.png")
    (tmp_path / "bad.png").write_text("hello")
    with pytest.raises(ImageError, match=r"bad\.png: not a readable image"):
        load_image(tmp_path / "bad.png")
    with pytest.raises(ImageError, match="bad.png"):
        image_size(tmp_path / "bad.png")
    with pytest.raises(ImageError, match="scan.png"):
        load_image(b"garbage", name="scan.png")
    with pytest.raises(ImageError, match="shape"):
        load_image(np.zeros((2, 2, 2, 2), np.uint8))


# -- preprocessing -------------------------------------------------------------------

def test_dark_on_light_becomes_ink_bright():
    img = np.full((20, 60), 240, np.uint8)
    img[8:12, 10:50] = 10
    out = preprocess(img, DataConfig(height=20, size_mode="height"))
    assert out[0, 0] < 20 and out[10, 30] > 230
    # Already ink-bright input keeps its polarity.
    assert np.array_equal(ink_bright(255 - img), 255 - img)
    assert np.array_equal(ink_bright(img), 255 - img)


@pytest.mark.parametrize(("h", "w", "expected"), [
    (40, 100, 80),    # 100 * 32/40 = 80, a multiple of 8
    (40, 101, 88),    # 80.8 -> 81 -> rounded up to the stride
    (64, 4000, 256),  # capped at max_width
    (200, 10, 8),     # never narrower than one stride
])
def test_height_mode_sizes(h, w, expected):
    cfg = DataConfig(height=32, max_width=256, size_mode="height")
    assert target_size(h, w, cfg) == (32, expected)
    assert preprocess(np.zeros((h, w), np.uint8), cfg).shape == (32, expected)


@pytest.mark.parametrize(("h", "w", "expected"), [
    (96, 256, (48, 128)),   # the plain scale factor 0.5 keeps symbol size
    (40, 100, (24, 56)),    # 20 x 50, rounded up to the stride
    (200, 100, (64, 32)),   # too tall for height 64: shrunk to fit instead
    (50, 4000, (8, 256)),   # too wide for max_width: shrunk to fit
])
def test_scale_mode_sizes(h, w, expected):
    cfg = DataConfig(height=64, max_width=256, size_mode="scale", scale=0.5)
    assert target_size(h, w, cfg) == expected
    assert preprocess(np.zeros((h, w), np.uint8), cfg).shape == expected


def test_scale_mode_batches_pad_both_sides():
    cfg = DataConfig(height=64, max_width=256, size_mode="scale", scale=0.5)
    items = [{"image": to_tensor_array(preprocess(np.full((hw), 255, np.uint8), cfg)),
              "ids": [1, 5, 2], "index": i} for i, hw in enumerate([(96, 256), (40, 100)])]
    batch = collate(items)
    assert batch["images"].shape == (2, 1, 48, 128)
    assert batch["mask"][1].sum() == 24 * 56 and not batch["mask"][1, 24:].any()


def _ink_page(zoom: int = 1) -> np.ndarray:
    """Dark ink on white: three 'symbols' 20 px tall (one a ring with a hole), a fraction
    bar and a speck, all scaled by ``zoom``."""
    img = np.full((60 * zoom, 200 * zoom), 255, np.uint8)
    for x0 in (10, 50, 90):
        img[20 * zoom:40 * zoom, x0 * zoom:(x0 + 12) * zoom] = 0
    img[25 * zoom:35 * zoom, 53 * zoom:59 * zoom] = 255  # a hole does not split it
    img[29 * zoom:31 * zoom, 120 * zoom:190 * zoom] = 0  # flat: not a symbol height
    img[50 * zoom:51 * zoom, 5 * zoom:6 * zoom] = 0  # speck
    return img


def test_ink_height_ignores_flat_strokes_and_specks():
    assert ink_height(ink_bright(_ink_page())) == 20
    assert ink_height(ink_bright(_ink_page(3))) == 60
    assert ink_height(np.zeros((30, 30), np.uint8)) is None


def test_wide_blank_margins_are_cut_to_one_symbol_height():
    page = ink_bright(_ink_page())  # margins of at most one symbol height: kept as they are
    assert crop_margins(page, 4, 1) is page
    wide = np.full((300, 800), 255, np.uint8)
    wide[120:180, 300:500] = _ink_page()
    wide[5:7, 5:7] = 0  # a speck of dust far away does not hold the margin open
    cut = crop_margins(ink_bright(wide), 4, 1)
    # Ink spans rows 140-160 and columns 310-490 (the page's own speck is a speck too):
    # cut to 20 px (one symbol) beyond it on every side.
    assert cut.shape == (60, 220)
    assert (cut > 127).sum() == (page > 127).sum()
    assert crop_margins(np.zeros((50, 400), np.uint8), 4, 1).shape == (50, 400)  # no ink
    # A tighter policy (handwriting: CROHME's ink has margins of about 0.4 symbols).
    assert crop_margins(ink_bright(wide), 2, 0.4).shape == (36, 196)


def test_tones_are_stretched_to_black_paper_and_white_ink():
    page = ink_bright(_ink_page())
    assert stretch_tones(page) is page  # black and white already
    # Dark mode: light grey ink (212) on dark grey (30), as loaded.
    dark = np.where(_ink_page() == 0, 212, 30).astype(np.uint8)
    dark[0, 0] = 250  # one hot pixel does not set the ink's tone
    out = stretch_tones(ink_bright(dark))
    assert out[25, 15] == 255 and out[5, 100] == 0
    assert preprocess(dark, DataConfig(size_mode="height", height=60)).max() == 255
    flat = np.full((20, 20), 90, np.uint8)
    flat[5:10, 5:10] = 100  # hardly any contrast: left alone, not blown up
    assert stretch_tones(flat) is flat


def test_ink_normalisation_fixes_off_scale_inputs_only():
    cfg = DataConfig(height=96, max_width=512, size_mode="scale", scale=0.5, ink_height=20)
    base = preprocess(_ink_page(), cfg)
    assert base.shape == (32, 104)  # at the training ink size: only the plain scale
    big = preprocess(_ink_page(3), cfg)  # a 3x larger scan: back to the same size
    assert big.shape == base.shape
    assert np.abs(big.astype(int) - base.astype(int)).mean() < 8
    # Within 2x of ink_height (training renderings): left exactly as without it.
    near = ink_bright(_ink_page())
    for target in (11, 20, 39):
        assert normalise_ink(near, replace(cfg, ink_height=target)) is near
    assert normalise_ink(near, replace(cfg, ink_height=9)).shape == (27, 90)
    # Off by default, and outside scale mode.
    assert preprocess(_ink_page(3), replace(cfg, ink_height=0)).shape == (96, 304)
    assert normalise_ink(near, replace(cfg, size_mode="height")) is near


def test_ink_tolerance_one_brings_every_image_to_the_symbol_size():
    # Printed renderings come at random font sizes: tolerance 1 resizes even a 1.25x one.
    cfg = DataConfig(height=128, max_width=800, size_mode="scale", scale=1.0,
                     ink_height=16, ink_tolerance=1.0)
    near = ink_bright(_ink_page())  # symbols 20 px
    assert normalise_ink(near, replace(cfg, ink_tolerance=2.0)) is near
    assert normalise_ink(near, cfg).shape == (48, 160)
    small, large = preprocess(_ink_page(), cfg), preprocess(_ink_page(3), cfg)
    assert small.shape == large.shape == (48, 160)
    assert ink_height(large) == pytest.approx(16, abs=1)


def test_input_sizes_follow_ink_normalisation(dataset_dir, tiny_cfg):
    # Batches are cut by input size: under ink normalisation that size depends on the
    # pixels, so it must come from preprocessing, not from the image header.
    report = scan_dataset([dataset_dir])
    vocab = Vocab.build(s.tokens for s in report.samples)
    data = replace(tiny_cfg.data, size_mode="scale", scale=1.0, height=200, max_width=800,
                   ink_height=30, ink_tolerance=1.0)
    ds = FormulaDataset(report.samples, vocab, data)
    sizes = ds.input_sizes()
    assert sizes == [ds[i]["image"].shape[1:] for i in range(len(ds))]
    headers = [target_size(s.height, s.width, data) for s in report.samples]
    assert sizes != headers


def test_fixed_mode_and_unknown_mode():
    cfg = DataConfig(height=48, width=160, size_mode="fixed")
    assert preprocess(np.zeros((13, 300), np.uint8), cfg).shape == (48, 160)
    assert preprocess(np.zeros((100, 20), np.uint8), cfg).shape == (48, 160)
    with pytest.raises(ValueError, match="size_mode"):
        target_size(10, 10, DataConfig(size_mode="square"))


# -- dataset, collate, sampler -------------------------------------------------------

def test_formula_dataset_items(dataset_dir, tiny_cfg):
    report = scan_dataset([dataset_dir])
    vocab = Vocab.build(s.tokens for s in report.samples)
    ds = FormulaDataset(report.samples, vocab, tiny_cfg.data)
    sizes = ds.input_sizes()
    for i in range(len(ds)):
        item = ds[i]
        img = item["image"]
        assert img.dtype == np.float32 and img.shape == (1, *sizes[i])
        assert img.min() >= 0.0 and img.max() <= 1.0
        assert img[0, 0, 0] < 0.3  # background is dark after preprocessing
        assert vocab.decode(item["ids"]) == report.samples[i].tokens
        assert item["ids"][0] == vocab.sos_id and item["ids"][-1] == vocab.eos_id
        assert item["index"] == i


def test_augmented_dataset_keeps_shape(dataset_dir, tiny_cfg):
    report = scan_dataset([dataset_dir])
    vocab = Vocab.build(s.tokens for s in report.samples)
    data = replace(tiny_cfg.data, augment=replace(tiny_cfg.data.augment, enabled=True,
                                                  p_affine=1.0, p_noise=1.0))
    ds = FormulaDataset(report.samples, vocab, data, train=True)
    plain = FormulaDataset(report.samples, vocab, data, train=False)
    assert ds.augment is not None and plain.augment is None
    item, ref = ds[0], plain[0]
    assert item["image"].shape == ref["image"].shape
    assert not np.array_equal(item["image"], ref["image"])


def test_file_vanishing_after_scan_is_dropped(dataset_dir, tiny_cfg, capsys):
    report = scan_dataset([dataset_dir])
    vocab = Vocab.build(s.tokens for s in report.samples)
    ds = FormulaDataset(report.samples, vocab, tiny_cfg.data)
    report.samples[1].image.unlink()
    assert ds[1] is None
    assert report.samples[1].where in capsys.readouterr().out
    batch = collate([ds[0], ds[1], ds[2]])
    assert batch["index"].tolist() == [0, 2]


def test_collate_pads_images_mask_and_ids():
    items = [
        {"image": np.ones((1, 32, 40), np.float32), "ids": [1, 5, 6, 2], "index": 7},
        None,
        {"image": np.full((1, 32, 64), 0.5, np.float32), "ids": [1, 5, 2], "index": 3},
    ]
    b = collate(items)
    assert b["images"].shape == (2, 1, 32, 64)
    assert b["mask"].shape == (2, 32, 64) and b["mask"].dtype == torch.bool
    assert b["mask"][0, :, :40].all() and not b["mask"][0, :, 40:].any()
    assert b["mask"][1].all()
    assert (b["images"][0, :, :, 40:] == 0).all()  # zero padding = blank paper
    assert b["ids"].tolist() == [[1, 5, 6, 2], [1, 5, 2, Vocab.pad_id]]
    assert b["index"].tolist() == [7, 3]
    empty = collate([None])
    assert empty["images"].shape[0] == 0 and empty["ids"].shape[0] == 0


def test_collate_rounds_batch_size_up_to_a_multiple():
    items = [{"image": np.ones((1, 30, 70), np.float32), "ids": [1, 5, 2], "index": 0},
             {"image": np.ones((1, 20, 40), np.float32), "ids": [1, 2], "index": 1}]
    b = collate(items, multiple=32)
    assert b["images"].shape == (2, 1, 32, 96)
    assert b["mask"][0, :30, :70].all() and not b["mask"][0, 30:].any()
    assert not b["mask"][0, :, 70:].any() and b["mask"][1].sum() == 20 * 40
    assert collate(items, multiple=10)["images"].shape[2:] == (30, 70)  # already a multiple


def test_training_loader_pads_and_its_workers_start_after_opencv_ran_threaded(synth_master):
    # OpenCV's thread pool does not survive a fork: a loader process that touched the pool
    # settings waited forever (the first printed-base-cpu resume with workers hung at its
    # first batch). A fresh interpreter, OpenCV's pool started, then a loader with a
    # worker process; padded batch shapes come back from it.
    code = f"""
import cv2, numpy as np
cv2.setNumThreads(2)
for _ in range(3):
    cv2.resize(np.zeros((1500, 1500), np.uint8), (700, 700))
from texlens.config import Config, DataConfig
from texlens.data.datasets import FormulaDataset, scan_dataset
from texlens.tokens import Vocab
from texlens.train.run import make_loader
samples = scan_dataset([{str(synth_master)!r}]).samples
vocab = Vocab.build(s.tokens for s in samples)
cfg = Config(data=DataConfig(height=32, max_width=256, batch_size=4, num_workers=1,
                             pad_multiple=48))
shapes = {{tuple(b["images"].shape[2:]) for b in make_loader(
    FormulaDataset(samples, vocab, cfg.data), cfg, True)}}
assert shapes and all(h % 48 == 0 and w % 48 == 0 for h, w in shapes), shapes
print("loaded", len(shapes))
"""
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True,
                            cwd=Path(__file__).parents[1])
    try:
        out, err = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the hung loader process too
        proc.communicate()
        pytest.fail("the loader hung: its worker process never delivered a batch")
    assert proc.returncode == 0 and "loaded" in out, err[-2000:]


def _sampler_widths(n=42, seed=0):
    rng = np.random.default_rng(seed)
    return [int(w) for w in rng.integers(1, 100, n) * 8]


def test_sampler_covers_every_index_once_per_epoch():
    widths = _sampler_widths()
    s = SizeBucketSampler(widths, batch_size=4, shuffle=True, seed=1)
    orders = []
    for epoch in range(3):
        s.set_epoch(epoch)
        batches = list(s)
        assert len(batches) == len(s) == 11
        flat = [i for b in batches for i in b]
        assert sorted(flat) == list(range(len(widths)))
        assert all(1 <= len(b) <= 4 for b in batches)
        orders.append(batches)
    assert orders[0] != orders[1]  # reshuffled per epoch
    s.set_epoch(0)
    assert list(s) == orders[0]  # ... deterministically


def test_sampler_batches_are_width_sorted():
    # Widths 32 apart never swap under the +-8 noise: batches are exact width runs.
    rng = np.random.default_rng(3)
    widths = [int(w) for w in rng.permutation(40) * 32 + 8]
    s = SizeBucketSampler(widths, batch_size=4, shuffle=True, seed=0)
    for b in s:
        ws = sorted(widths[i] for i in b)
        assert ws[-1] - ws[0] == 3 * 32
    # Random widths: batches are much tighter than random batching would be.
    widths = _sampler_widths(200)
    spread = np.mean([np.ptp([widths[i] for i in b])
                      for b in SizeBucketSampler(widths, 8, seed=0)])
    assert spread < 0.2 * np.ptp(widths)
    ordered = list(SizeBucketSampler(widths, 8, shuffle=False))
    firsts = [widths[b[0]] for b in ordered]
    assert firsts == sorted(firsts)


def test_sampler_groups_heights_under_scale_mode():
    # Under size_mode: scale heights vary; a batch must not mix a short formula with a
    # tall one of the same width (it would be padded to the tall one's height).
    rng = np.random.default_rng(5)
    heights = [int(h) for h in rng.choice([16, 48, 96], 96)]
    widths = _sampler_widths(96, seed=5)
    batches = list(SizeBucketSampler(widths, 8, seed=0, heights=heights))
    mixed = sum(len({heights[i] for i in b}) > 1 for b in batches)
    assert mixed <= 2  # only where one height group ends and the next begins
    assert sorted(i for b in batches for i in b) == list(range(96))
    with pytest.raises(ValueError, match="heights"):
        SizeBucketSampler(widths, 8, heights=heights[:-1])


def test_sampler_ranks_get_disjoint_batches():
    widths = _sampler_widths(45)
    world = 5  # 12 batches: 10 kept so every rank runs the same number of steps
    per_rank = [list(SizeBucketSampler(widths, 4, seed=2, rank=r, world_size=world))
                for r in range(world)]
    seen: list[int] = []
    for r, batches in enumerate(per_rank):
        assert len(batches) == len(SizeBucketSampler(widths, 4, rank=r, world_size=world))
        seen += [i for b in batches for i in b]
    assert len({len(b) for b in per_rank}) == 1  # same number of steps on every rank
    assert len(seen) == len(set(seen))  # no sample on two ranks
    assert len(seen) >= len(widths) - world * 4


def test_page_augment_keeps_the_formula_readable_after_preprocessing():
    # Screenshot/scan looks are applied before preprocessing; polarity detection and ink
    # normalisation must still give an ink-bright image with the same symbol size.
    import pickle

    from texlens.config import AugmentConfig, DataConfig
    from texlens.data.transforms import build_page_augment, ink_height, preprocess

    assert build_page_augment(AugmentConfig()) is None  # off unless asked for
    pickle.dumps(build_page_augment(AugmentConfig(p_jpeg=1)))  # data-loader workers need it
    # JPEG ringing can reach 0 and 255 again, so the tone check runs without it.
    page = build_page_augment(AugmentConfig(p_margin=1, p_tint=1, p_downscale=0, p_jpeg=0))
    img = np.full((60, 200), 255, np.uint8)
    for x in range(10, 190, 20):  # a row of 'symbols' 20 px high
        img[20:40, x:x + 8] = 0
    cfg = DataConfig(size_mode="scale", scale=1.0, ink_height=10, ink_tolerance=1.0,
                     height=128, max_width=800)
    for _ in range(30):  # every draw of margins and tones must pass
        out = page(image=img)["image"]
        assert out.shape[0] >= 60 and out.shape[1] >= 200
        assert int(out.max()) - int(out.min()) < 255  # toned toward grey
        ready = preprocess(out, cfg)
        assert ready[0].mean() < 128 and ready.max() > 128  # ink bright, paper dark
        # Lighting ramps move the Otsu cut a little; the size stays near ink_height.
        assert 6 <= ink_height(ready) <= 15


def test_shared_formulas_counts_validation_lines_with_a_training_formula():
    def s(caption: str) -> Sample:
        return Sample("k", Path("k.png"), caption.split(), "caption.txt:1")
    train = [s("x + 1"), s("x ^ { 2 }")]
    val = [s("x  +  1"), s("y"), s("x ^ { 2 }"), s("x ^ 2"), s("x ^ { 3 }")]
    # spacing aside, the same formula; x ^ 2 is x ^ { 2 } spelt as canonical LaTeX was once
    assert shared_formulas(train, val) == 3
    assert shared_formulas(train, [s("y")]) == 0
    # A formula the model started from was trained on counts too.
    assert shared_formulas(train, [s("y"), s("z")], pack_formulas(["y"])) == 1
