"""CROHME datasets: truth tokens, the train/val build (directory and tarball, CLI),
the offline test images for evaluation, and a check on the real files when present.

Everything except the last test uses invented InkML written here; the CROHME
files are research-only and never copied into the repository.
"""

from __future__ import annotations

import io
import itertools
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from inkml_samples import X_PLUS_1, make_inkml
from PIL import Image
from typer.testing import CliRunner

from texlens.checkpoint import save_model
from texlens.cli import app
from texlens.data.crohme import WRITERS_SPLIT, assign_splits, build_crohme, iter_inkml
from texlens.data.crohme_truth import drop_bare_groups, truth_tokens
from texlens.data.datasets import read_layout
from texlens.data.image import load_image
from texlens.data.inkml import InkmlError, read_inkml, read_writer
from texlens.data.splits import expression_split
from texlens.data.stroke_augment import StrokeAugment
from texlens.data.strokes import render_strokes
from texlens.data.synth.dataset import read_caption_file
from texlens.data.transforms import ink_bright
from texlens.models.satrn import build_model
from texlens.tokens import TokenizeError, Vocab

runner = CliRunner()
REAL = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "crohme"

# Truth strings in the styles of the different sources (strokes are the same invented ones).
TRUTHS = {
    "hamex_a": "$( x ,w)$",
    "kaist_b": r"x^{2} + y^{2} \lt 1",
    "mathbrush_c": r" { - { \mbox { t } } } ",
    "mfrdb_d": r"$\frac{{a^{3}}}{1 - x}$",
    "mfrdb_e": r"$l o g 5 + \log 4 x = 2$",
    "hamex_f": r"$t^\frac{2}{3}$",
    "em_g": r"$\frac12 + \sqrt[3]{x}$",
    "em_h": r"$a \gt b$",
    "ext_i": r"$\left| $\frac{a}{b} \right|$",
    "ext_j": r"$\sum\limits_{i=1}^{n} x_i$",
}
EXPECTED = {
    "hamex_a": "( x , w )",
    "kaist_b": "x ^ { 2 } + y ^ { 2 } < 1",
    "mathbrush_c": "- t",
    "mfrdb_d": "\\frac { a ^ { 3 } } { 1 - x }",
    "mfrdb_e": "\\log 5 + \\log 4 x = 2",
    "hamex_f": "t ^ { \\frac { 2 } { 3 } }",
    "em_g": "\\frac { 1 } { 2 } + \\sqrt [ 3 ] { x }",
    "em_h": "a > b",
    "ext_i": "| \\frac { a } { b } |",
    "ext_j": "\\sum \\limits _ { i = 1 } ^ { n } x _ { i }",
}


def escape(latex: str) -> str:
    return latex.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def write_tree(root: Path, bad: bool = True) -> Path:
    """Ten good files in two source folders, plus (``bad``) three that must be skipped."""
    for k, (key, truth) in enumerate(TRUTHS.items()):
        folder = root / ("srcA" if k % 2 else "srcB")
        folder.mkdir(parents=True, exist_ok=True)
        # Units from 0.1 to 100 per symbol; integer coordinates only where that is enough.
        doc = make_inkml(truth=escape(truth), values=2 + k % 2, integers=k % 4 >= 2,
                         scale=10.0 ** (k % 4 - 1))
        (folder / f"{key}.inkml").write_text(doc, encoding="utf-8")
    if bad:
        (root / "srcA" / "MfrDB9999.inkml").write_text(make_inkml(truth=None))
        (root / "srcA" / "empty.inkml").write_bytes(b"")
        (root / "srcB" / "badtrace.inkml").write_text(make_inkml(trace_texts={2: "1 2, x 4"}))
    (root / "srcA" / "notes.lg").write_text("not inkml")
    return root


def make_tgz(root: Path, path: Path) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        tar.add(root, arcname="TrainINKML")
    return path


def tokens(caption: str) -> list[str]:
    return caption.split(" ")


def captions(path: Path) -> dict[str, str]:
    return {k: " ".join(t) for k, t in read_caption_file(path)}


# -- truth tokens ------------------------------------------------------------------

@pytest.mark.parametrize("key", list(TRUTHS))
def test_truth_tokens_follow_the_caption_style(key):
    assert " ".join(truth_tokens(TRUTHS[key])) == EXPECTED[key]


def test_bare_groups_go_argument_groups_stay():
    toks = tokens("{ { x } ^ { { 2 } } } + \\sqrt [ { 3 } ] { { y } }")
    assert drop_bare_groups(toks) == tokens("x ^ { 2 } + \\sqrt [ 3 ] { y }")
    with pytest.raises(TokenizeError):
        truth_tokens("{x")


# -- split -------------------------------------------------------------------------

def test_split_is_the_expression_rule_and_order_free():
    keys = [f"k{i}" for i in range(400)]
    groups = {k: f"x ^ {{ {i} }}" for i, k in enumerate(keys)}
    split = assign_splits(keys, groups=groups)
    assert assign_splits(list(reversed(keys)), groups=groups) == split
    # The training side is exactly what `data synth --split train` keeps of these captions.
    assert {k for k in keys if split[k] == "train"} == {
        k for k in keys if expression_split(groups[k]) == "train"}
    assert 0.05 < sum(v == "val" for v in split.values()) / len(keys) < 0.3
    assert set(assign_splits(keys, 0.0, groups).values()) == {"train"}
    with pytest.raises(ValueError):
        assign_splits(keys, 1.0)


def test_split_by_group_keeps_each_expression_on_one_side():
    keys = [f"k{i}" for i in range(600)]
    groups = {k: f"caption {i % 120}" for i, k in enumerate(keys)}  # 120 expressions x 5
    split = assign_splits(keys, 0.2, groups=groups)
    for g in set(groups.values()):
        assert len({split[k] for k in keys if groups[k] == g}) == 1
    assert 0 < sum(v == "val" for v in split.values()) < len(keys)
    # Spacing does not make another expression.
    spaced = {k: "  ".join(v.split()) + " " for k, v in groups.items()}
    assert assign_splits(keys, 0.2, groups=spaced) == split
    ungrouped = assign_splits(keys, 0.2, groups={})  # keys without a group: alone
    assert 0 < sum(v == "val" for v in ungrouped.values()) < len(keys)


def test_writer_split_holds_out_every_file_of_some_writers():
    keys = [f"k{i}" for i in range(600)]
    groups = {k: f"caption {i % 120}" for i, k in enumerate(keys)}
    writers = {k: f"src/w{i % 40}" for i, k in enumerate(keys) if i % 10}  # 1 in 10: none
    split = assign_splits(keys, 0.2, groups, writers, 0.3)
    held = {writers[k] for k in writers if split[k] == WRITERS_SPLIT}
    assert 0 < len(held) < 40
    for k in keys:  # a held writer's every file, and nothing else, is held out
        assert (split[k] == WRITERS_SPLIT) == (writers.get(k) in held)
    # The rest follows the expression rule unchanged.
    plain = assign_splits(keys, 0.2, groups)
    assert all(split[k] == plain[k] for k in keys if split[k] != WRITERS_SPLIT)
    assert WRITERS_SPLIT not in assign_splits(keys, 0.2, groups, writers, 0.0).values()
    with pytest.raises(ValueError):
        assign_splits(keys, 0.2, groups, writers, 1.0)


def test_read_writer_reads_the_annotation_only():
    assert read_writer(make_inkml(writer="KAIST_07").encode()) == "KAIST_07"
    assert read_writer(make_inkml(writer=None).encode()) is None
    with pytest.raises(InkmlError, match="bad.inkml: not well-formed"):
        read_writer(b"<ink><trace>", "bad.inkml")


def test_build_with_writers_held_out(tmp_path):
    root = tmp_path / "ink"
    for k, (key, truth) in enumerate(TRUTHS.items()):
        folder = root / ("srcA" if k % 2 else "srcB")
        folder.mkdir(parents=True, exist_ok=True)
        # Two sources that both number their writers from 1: w1 of srcA is not w1 of srcB.
        doc = make_inkml(truth=escape(truth), writer=f"w{k % 3}" if k < 9 else None)
        (folder / f"{key}.inkml").write_text(doc, encoding="utf-8")
    (root / "srcA" / "empty.inkml").write_bytes(b"")  # still reported, not fatal
    rep = build_crohme(root, tmp_path / "out", val_fraction=0.2, workers=1, val_writers=0.5)
    held = captions(tmp_path / "out" / WRITERS_SPLIT / "caption.txt")
    train = captions(tmp_path / "out" / "train" / "caption.txt")
    val = captions(tmp_path / "out" / "val" / "caption.txt")
    assert rep.written == {"train": len(train), "val": len(val), WRITERS_SPLIT: len(held)}
    assert sum(rep.written.values()) == 10 and rep.skip_counts == {"malformed": 1}
    assert 0 < rep.held_writers <= 6 and held and "ext_j" not in held  # ext_j: no writer
    assert all((tmp_path / "out" / WRITERS_SPLIT / "images" / f"{k}.png").exists()
               for k in held)
    res = runner.invoke(app, ["data", "crohme", "--inkml", str(root), "--out",
                              str(tmp_path / "cli"), "--workers", "1", "--val-fraction", "0.2",
                              "--val-writers", "0.5"])
    assert res.exit_code == 0, res.output
    assert f"{len(held)} val-writers images of {rep.held_writers} writers" in res.output


# -- build ---------------------------------------------------------------------------

def test_build_from_directory(tmp_path):
    src = write_tree(tmp_path / "ink")
    rep = build_crohme(src, tmp_path / "out", val_fraction=0.2, seed=3, workers=1)
    split = assign_splits([*TRUTHS, "MfrDB9999", "empty", "badtrace"], 0.2,
                          groups=EXPECTED)
    n_val = sum(split[k] == "val" for k in TRUTHS)
    assert rep.written == {"train": 10 - n_val, "val": n_val}
    assert rep.skip_counts == {"no truth": 1, "malformed": 2}
    messages = " ".join(m for _, m in rep.skipped)
    assert "MfrDB9999.inkml" in messages and "empty.inkml: empty file" in messages
    assert "badtrace.inkml: trace '2'" in messages
    got = {}
    for s in ("train", "val"):
        caps = captions(tmp_path / "out" / s / "caption.txt")
        assert all(split[k] == s for k in caps)
        got.update(caps)
        samples, problems = read_layout(tmp_path / "out" / s)
        assert problems == [] and len(samples) == len(caps)
        for sample in samples:
            img = load_image(sample.image)
            assert set(np.unique(img)) == {0, 255} and img[0].max() == 0
    assert got == EXPECTED


def test_tarball_gives_the_same_dataset_with_two_workers(tmp_path):
    src = write_tree(tmp_path / "ink")
    tgz = make_tgz(src, tmp_path / "train_inkml.tar.gz")
    assert len(list(iter_inkml(tgz))) == 13  # the .lg file is not InkML
    a = build_crohme(src, tmp_path / "a", val_fraction=0.3, workers=1)
    b = build_crohme(tgz, tmp_path / "b", val_fraction=0.3, workers=2)
    assert a.written == b.written and a.skip_counts == b.skip_counts
    for s in ("train", "val"):
        files_a = sorted((tmp_path / "a" / s).rglob("*.*"))
        files_b = sorted((tmp_path / "b" / s).rglob("*.*"))
        assert [f.relative_to(tmp_path / "a") for f in files_a] == \
            [f.relative_to(tmp_path / "b") for f in files_b]
        for fa, fb in zip(files_a, files_b, strict=True):
            assert fa.read_bytes() == fb.read_bytes(), fa.name


def test_distorted_copies_of_training_keys_only(tmp_path):
    src = write_tree(tmp_path / "ink", bad=False)
    plain = build_crohme(src, tmp_path / "plain", val_fraction=0.3, workers=1)
    a = build_crohme(src, tmp_path / "a", val_fraction=0.3, workers=1, copies=2)
    build_crohme(src, tmp_path / "b", val_fraction=0.3, workers=2, copies=2)
    assert a.written == plain.written and a.copies == 2 * plain.written["train"]
    train = captions(tmp_path / "a" / "train" / "caption.txt")
    originals = {k: v for k, v in train.items() if "_aug" not in k}
    assert originals == captions(tmp_path / "plain" / "train" / "caption.txt")
    for k, v in originals.items():  # each copy keeps its expression's caption
        assert train[f"{k}_aug0"] == train[f"{k}_aug1"] == v
        img = load_image(tmp_path / "a" / "train" / "images" / f"{k}.png")
        aug = load_image(tmp_path / "a" / "train" / "images" / f"{k}_aug0.png")
        assert set(np.unique(aug)) == {0, 255}  # the same binary CROHME style
        assert img.shape != aug.shape or (img != aug).any()  # but distorted
    assert captions(tmp_path / "a" / "val" / "caption.txt") == \
        captions(tmp_path / "plain" / "val" / "caption.txt")
    for f in sorted((tmp_path / "a" / "train" / "images").iterdir()):  # seeded per key
        assert f.read_bytes() == (tmp_path / "b" / "train" / "images" / f.name).read_bytes()
    with pytest.raises(ValueError, match="copies"):
        build_crohme(src, tmp_path / "c", copies=-1)
    # The warp reaches the copies (and only them): same originals, other copy bytes.
    w = build_crohme(src, tmp_path / "w", val_fraction=0.3, workers=1, copies=2,
                     augment=StrokeAugment(warp=0.1))
    assert w.copies == a.copies
    for k in originals:
        same = f"{k}.png", f"{k}_aug0.png"
        assert (tmp_path / "w/train/images" / same[0]).read_bytes() == \
            (tmp_path / "a/train/images" / same[0]).read_bytes()
        assert (tmp_path / "w/train/images" / same[1]).read_bytes() != \
            (tmp_path / "a/train/images" / same[1]).read_bytes()


def test_captions_file_is_used_and_missing_keys_reported(tmp_path):
    src = write_tree(tmp_path / "ink", bad=False)
    cap = tmp_path / "caps.txt"
    given = {k: f"y _ {{ {i} }}" for i, k in enumerate(list(TRUTHS)[:-1])}
    cap.write_text("".join(f"{k}\t{v}\n" for k, v in given.items()), encoding="utf-8")
    rep = build_crohme(src, tmp_path / "out", captions=cap, val_fraction=0.0, workers=1)
    assert rep.written == {"train": 9, "val": 0}
    assert rep.skip_counts == {"no caption": 1}
    assert "ext_j" in rep.skipped[0][1]
    assert captions(tmp_path / "out" / "train" / "caption.txt") == given
    assert not (tmp_path / "out" / "train" / "images" / "ext_j.png").exists()


def test_compare_counts_agreement(tmp_path):
    src = write_tree(tmp_path / "ink", bad=False)
    ref = dict(EXPECTED, em_h="a \\geq b", unknown="x")
    cap = tmp_path / "ref.txt"
    cap.write_text("".join(f"{k}\t{v}\n" for k, v in ref.items()), encoding="utf-8")
    rep = build_crohme(src, tmp_path / "out", compare=cap, workers=1)
    assert (rep.agreed, rep.compared) == (9, 10)
    assert rep.disagreements == [("em_h", "a > b", "a \\geq b")]


def test_render_bound_and_duplicate_keys_are_skipped(tmp_path):
    src = tmp_path / "ink"
    (src / "a").mkdir(parents=True)
    (src / "b").mkdir()
    wide = [[(x, 0.0), (x + 0.5, 1.0)] for x in range(40)]
    (src / "a" / "wide.inkml").write_text(make_inkml(strokes=wide, symbols=[]))
    (src / "a" / "twice.inkml").write_text(make_inkml())
    (src / "b" / "twice.inkml").write_text(make_inkml())
    rep = build_crohme(src, tmp_path / "out", val_fraction=0.0, workers=1, max_side=300)
    assert rep.skip_counts == {"render bound": 1, "duplicate key": 1}
    assert "max_side=300" in " ".join(m for _, m in rep.skipped)
    assert rep.written["train"] == 1


def test_cli_data_crohme(tmp_path):
    tgz = make_tgz(write_tree(tmp_path / "ink"), tmp_path / "ink.tgz")
    ref = tmp_path / "ref.txt"
    ref.write_text("".join(f"{k}\t{v}\n" for k, v in EXPECTED.items()), encoding="utf-8")
    out = tmp_path / "out"
    res = runner.invoke(app, ["data", "crohme", "--inkml", str(tgz), "--out", str(out),
                              "--val-fraction", "0.2", "--seed", "1", "--workers", "1",
                              "--compare", str(ref)])
    assert res.exit_code == 0, res.output
    assert "3 skipped: 2 malformed, 1 no truth" in res.output
    assert "on 10 of 10 keys (100.00%)" in res.output
    assert " s\n" in res.output  # the elapsed time
    assert len((out / "skipped.txt").read_text().splitlines()) == 3
    assert (out / "compare.tsv").read_text().count("\n") == 1  # header only
    res = runner.invoke(app, ["data", "crohme", "--inkml", str(tgz), "--out", str(out),
                              "--captions", str(ref), "--compare", str(ref)])
    assert res.exit_code == 2 and "without --captions" in res.output
    res = runner.invoke(app, ["data", "crohme", "--inkml", str(tmp_path / "nope"),
                              "--out", str(out)])
    assert res.exit_code == 2 and "not a directory" in res.output


# -- offline test images -------------------------------------------------------------

def test_extract_crohme_test_then_evaluate(tmp_path, tiny_cfg):
    ink = read_inkml(make_inkml().encode(), name="k.inkml")
    tgz = tmp_path / "test_images.tar.gz"
    with tarfile.open(tgz, "w:gz") as tar:
        for key in ("k1", "k2", "extra"):
            buf = io.BytesIO()
            Image.fromarray(render_strokes(ink.traces, mode="crohme")).save(buf, format="BMP")
            info = tarfile.TarInfo(f"off_image_test/{key}_0.bmp")
            info.size = len(buf.getvalue())
            tar.addfile(info, io.BytesIO(buf.getvalue()))
        info = tarfile.TarInfo("off_image_test/readme.txt")
        tar.addfile(info, io.BytesIO(b""))
    cap = tmp_path / "caption.txt"
    cap.write_text("k1\tx + 1\nk2\tx + 1\nk3\tx\n", encoding="utf-8")
    out = tmp_path / "crohme2014"
    res = runner.invoke(app, ["data", "extract-crohme-test", "--images", str(tgz),
                              "--captions", str(cap), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "wrote 3 images and 3 captions" in res.output
    assert "1 captions without an image: k3" in res.output
    assert "1 images without a caption: extra" in res.output
    assert sorted(p.name for p in out.iterdir()) == [
        "caption.txt", "extra_0.bmp", "k1_0.bmp", "k2_0.bmp"]
    samples, problems = read_layout(out)
    assert [s.key for s in samples] == ["k1", "k2"] and len(problems) == 1
    img = load_image(samples[0].image)
    assert ink_bright(img) is img  # white on black stays as it is

    vocab = Vocab(["x", "+", "1"])
    torch.manual_seed(0)
    model = build_model(tiny_cfg.model, len(vocab)).eval()
    save_model(tmp_path / "tiny.pt", model, tiny_cfg, vocab)
    res = runner.invoke(app, ["evaluate", "--data", str(out), "--model",
                              str(tmp_path / "tiny.pt"), "--json", str(tmp_path / "m.json")])
    assert res.exit_code == 0, res.output
    assert '"n": 2' in (tmp_path / "m.json").read_text()


# -- the real files, when this machine has them ---------------------------------------

@pytest.mark.skipif(not (REAL / "train_inkml.tar.gz").is_file(),
                    reason=f"CROHME data not found at {REAL} (research-only; not shipped)")
def test_real_training_inkml_parse_tokenise_and_render():
    reference = dict(read_caption_file(REAL / "train_caption.txt"))
    n = agree = 0
    for name, data in itertools.islice(iter_inkml(REAL / "train_inkml.tar.gz"), 50):
        ink = read_inkml(data, name)
        assert ink.traces and ink.symbols, name
        toks = truth_tokens(ink.truth_latex)
        agree += toks == reference.get(ink.key)
        img = render_strokes(ink.traces, mode="crohme", strict=True)
        assert max(img.shape) <= 2000
        n += 1
    assert n == 50 and agree >= 48
    # The standard test bitmaps are white on black: preprocessing must not invert them.
    with tarfile.open(REAL / "2014" / "test_images.tar.gz", "r|gz") as tar:
        for m in itertools.islice((m for m in tar if m.name.endswith("_0.bmp")), 3):
            img = load_image(tar.extractfile(m).read(), m.name)
            assert set(np.unique(img)) <= {0, 255} and ink_bright(img) is img


def test_x_plus_1_sample_has_three_symbols():
    # Guards the helper the other tests rely on.
    assert [s.label for s in read_inkml(make_inkml().encode(), "s.inkml").symbols] == [
        label for label, _ in X_PLUS_1["symbols"]]
