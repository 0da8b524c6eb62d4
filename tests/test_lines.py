"""Multi-line formulas read line by line (texlens/lines.py, Recognizer.read_lines)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from texlens.config import Config
from texlens.data.synth.tex import render_tex, tex_missing
from texlens.lines import alignment_point, cut_lines, cut_pieces, join_lines, line_rows
from texlens.recognizer import Lines, Recognizer
from texlens.tokens import Vocab

MISSING = tex_missing()
needs_tex = pytest.mark.skipif(MISSING is not None, reason=str(MISSING))


def page(boxes: list[tuple[int, int, int, int]], shape=(120, 300)) -> np.ndarray:
    """Black ink boxes (top, left, height, width) on white paper."""
    img = np.full(shape, 255, np.uint8)
    for t, left, h, w in boxes:
        img[t:t + h, left:left + w] = 0
    return img


def glyphs(top: int, left: int, n: int, size: int = 14) -> list[tuple[int, int, int, int]]:
    """A row of n symbol-like boxes of the given height."""
    return [(top, left + k * (size + 4), size, size - 4) for k in range(n)]


def test_two_lines_apart_are_two_lines_and_cut_to_their_ink():
    img = page(glyphs(20, 30, 10) + glyphs(60, 90, 6))
    assert line_rows(img) == [(20, 34), (60, 74)]
    first, second = cut_lines(img)
    assert first.shape[0] < img.shape[0] and second.shape[1] < first.shape[1]
    assert (first < 128).any() and (second < 128).any()


def test_bars_limits_and_close_rows_stay_one_line():
    line = glyphs(52, 30, 10)
    # A fraction's bar between two rows, well apart: thin, so it joins them both.
    assert len(line_rows(page(glyphs(20, 30, 10) + [(42, 30, 2, 172)] + line))) == 1
    # A sum's limit: a narrow group close above a wide line.
    assert len(line_rows(page(glyphs(40, 60, 1, 10) + line))) == 1
    # Rows nearer than a third of a symbol: one line (a subscript row, say).
    assert len(line_rows(page(glyphs(20, 30, 10) + glyphs(38, 30, 10)))) == 1
    # Blank and single-line images come back whole.
    blank = np.full((40, 80), 255, np.uint8)
    assert line_rows(blank) == [(0, 40)] and cut_lines(blank)[0] is blank


def test_white_on_black_is_read_alike():
    img = page(glyphs(20, 30, 10) + glyphs(60, 90, 6))
    assert line_rows(255 - img) == line_rows(img)


def test_rows_are_aligned_at_their_first_relation():
    assert alignment_point(["x", "=", "\\frac", "{", "a", "=", "b", "}", "{", "2", "}"]) == 1
    assert alignment_point(["\\frac", "{", "a", "=", "b", "}", "{", "2", "}", "\\leq", "y"]) == 9
    assert alignment_point(["=", "0"]) == 0
    assert alignment_point(["a", "+", "b"]) is None
    toks, probs = join_lines([(["a", "=", "b"], [0.9, 0.8, 0.7]), (["=", "c"], [0.6, 0.5]),
                              (["+", "d"], [0.4, 0.3])])
    assert " ".join(toks) == "\\begin{aligned} a & = b \\\\ & = c \\\\ + d \\end{aligned}"
    assert probs == [1.0, 0.9, 1.0, 0.8, 0.7, 1.0, 1.0, 0.6, 0.5, 1.0, 0.4, 0.3, 1.0]


@needs_tex
def test_typeset_aligned_blocks_split_and_single_lines_do_not():
    multi = [r"\begin{aligned} a &= b + c \\ &= \frac{d}{e} \\ f &= g \end{aligned}",
             r"\begin{aligned} x^2 + y^2 &= 1 \\ x - y &\leq 3 \end{aligned}"]
    single = [r"\sum_{i=1}^{n} \frac{1}{i^2} = \frac{\pi^2}{6}", r"\frac{a}{b}",
              r"\bigcup_{i \in I} U_i", r"\left( \begin{matrix} 1 & 2 \\ 3 & 4 \end{matrix}"
              r" \right)", r"\hat{x} + \bar{y} = \int_0^1 f(t) \, dt",
              r"\frac{f(x)}{x} = \sin \frac{1}{x}"]
    for font in ("cm", "times"):
        imgs = render_tex(multi + single, font=font, dpi=150)
        assert [len(line_rows(i)) for i in imgs] == [3, 2] + [1] * len(single), font


class Lookup(torch.nn.Module):
    """A model whose reading depends on the image's width only: wide reads "a = b", narrow
    "= c" (per batch row), to see how Recognizer joins the lines."""

    def __init__(self):
        super().__init__()
        self.decoder = torch.nn.Module()
        self.decoder.max_len = 50

    def encode(self, images, mask):
        widths = mask.any(1).sum(1) if mask is not None else torch.full(
            (images.shape[0],), images.shape[-1])
        return widths.float()[:, None, None], None

    def start(self, memory, mem_mask):
        return {"wide": (memory[:, 0, 0] > 100).tolist(), "t": 0}

    def step(self, tokens, cache):
        seqs = {True: [5, 6, 7], False: [6, 8]}  # vocab below: a = b / = c
        logits = torch.full((len(cache["wide"]), 12), -1e9)
        for row, wide in enumerate(cache["wide"]):
            seq = seqs[wide]
            logits[row, seq[cache["t"]] if cache["t"] < len(seq) else Vocab.eos_id] = 0.0
        cache["t"] += 1
        return logits


def test_recognizer_reads_lines_apart_and_joins_them():
    vocab = Vocab(["x", "a", "=", "b", "c", "\\begin{aligned}", "\\end{aligned}", "&", "\\\\"])
    cfg = Config()
    cfg.data.size_mode, cfg.data.height, cfg.data.max_width = "height", 32, 512
    rec = Recognizer(Lookup(), cfg, vocab)
    assert rec.read_lines
    img = page(glyphs(20, 10, 14) + glyphs(60, 150, 4))
    prepared = rec.prepare(img)
    assert isinstance(prepared, Lines) and len(prepared) == 2
    [pred] = rec.predict_arrays([prepared])
    assert pred.latex == "\\begin{aligned} a & = b \\\\ & = c \\end{aligned}"
    # A vocabulary without the aligned block reads the image whole.
    assert not Recognizer(Lookup(), cfg, Vocab(["a", "=", "b", "c"])).read_lines


def strip(widths_gaps: list[tuple[int, int]], height: int = 32) -> np.ndarray:
    """A model input (1, H, W), bright ink: glyph blocks of the given widths, each
    followed by the given blank gap."""
    total = sum(w + g for w, g in widths_gaps) + 8
    a = np.zeros((1, height, total), np.float32)
    x = 4
    for w, g in widths_gaps:
        a[0, 9:23, x:x + w] = 1.0
        x += w + g
    return a


def test_long_lines_are_cut_at_their_widest_blank_columns():
    # Words of glyphs 2 px apart, words 9 px apart (the symbols are 14 px high).
    word = [(8, 2)] * 9 + [(8, 9)]
    a = strip(word * 8)  # 8 words of 107 px: 864 px, cut once in the middle
    pieces = cut_pieces(a, width=450)
    assert len(pieces) == 2 and all(p.shape[-1] <= 450 + 8 for p in pieces)
    assert all(p.shape[-1] % 8 == 0 and p.shape[:2] == a.shape[:2] for p in pieces)
    assert sum(p.sum() for p in pieces) == a.sum()  # no ink lost or doubled
    assert len(cut_pieces(a, width=150)) == 8
    # No blank column wide enough: the line stays whole.
    assert len(cut_pieces(strip([(8, 2)] * 90), width=400)) == 1


class WidthReader(torch.nn.Module):
    """Reads "a" surely from inputs up to 400 px wide, and "b b" barely from wider ones."""

    def __init__(self):
        super().__init__()
        self.decoder = torch.nn.Module()
        self.decoder.max_len = 50

    def encode(self, images, mask):
        return mask.any(1).sum(1).float()[:, None, None], None

    def start(self, memory, mem_mask):
        return {"wide": (memory[:, 0, 0] > 400).tolist(), "t": 0}

    def step(self, tokens, cache):
        logits = torch.full((len(cache["wide"]), 12), -1e9)
        for row, wide in enumerate(cache["wide"]):
            seq = [5, 5] if wide else [4]
            if cache["t"] < len(seq):
                logits[row, 4:] = 0.0  # wide: a guess among 8 tokens
                logits[row, seq[cache["t"]]] = 0.1 if wide else 20.0
            else:
                logits[row, Vocab.eos_id] = 0.0
        cache["t"] += 1
        return logits


def test_recognizer_reads_a_long_line_it_cannot_read_whole_in_pieces():
    vocab = Vocab(["a", "b", "c", "d", "\\begin{aligned}", "\\end{aligned}", "&", "\\\\"])
    cfg = Config()
    rec = Recognizer(WidthReader(), cfg, vocab)
    word = [(8, 2)] * 9 + [(8, 9)]
    [pred] = rec.predict_arrays([strip(word * 6)])  # 650 px: two pieces
    assert pred.tokens == ["a", "a"] and pred.confidence > 0.9
    rec.read_lines = False
    [whole] = rec.predict_arrays([strip(word * 6)])
    assert whole.tokens == ["b", "b"] and whole.confidence < 0.02


@needs_tex
@pytest.mark.parametrize("tta", [False, True])
def test_printed_base_reads_a_typeset_aligned_block_line_by_line(tta):
    # Read whole, printed-base wrote this block with its second row twice (2026-12-05).
    [img] = render_tex([r"\begin{aligned} x &= a + b \\ y &= 2 c \end{aligned}"], font="cm",
                       dpi=160)
    rec = Recognizer.load("printed-base", backend="torch", tta=tta)
    lines, line = rec.predict([255 - img, 255 - img[:20]])  # with test-time views, each line
    assert lines.latex == "\\begin{aligned} x & = a + b \\\\ y & = 2 c \\end{aligned}"
    assert line.latex == "x = a + b"
