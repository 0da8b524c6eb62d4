"""Beam search: beam 1 is greedy, wider beams find higher-scoring outputs, finished
hypotheses leave the beam, formulas may repeat themselves, opt-in guards work."""

from __future__ import annotations

import math

import pytest
import torch

from texlens.config import Config, ModelConfig
from texlens.decoding import _blocked, beam_search, greedy_decode, length_limits, trim_runaway
from texlens.models.satrn import build_model
from texlens.recognizer import Recognizer
from texlens.tokens import Vocab


def model(seed: int = 0, vocab: int = 12) -> torch.nn.Module:
    torch.manual_seed(seed)
    cfg = ModelConfig(d_model=32, n_heads=2, enc_layers=1, dec_layers=1, enc_ff=64, dec_ff=64,
                      cnn_width=8)
    m = build_model(cfg, vocab).eval()
    with torch.no_grad():  # make <eos> likely enough that random models stop
        m.decoder.head.bias[Vocab.eos_id] += 2.0
    return m


def batch(n: int = 4, w: int = 96):
    torch.manual_seed(1)
    x = torch.rand(n, 1, 32, w)
    mask = torch.ones(n, 32, w, dtype=torch.bool)
    mask[-1, :, w // 2:] = False
    return x, mask


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_beam_one_equals_greedy(seed):
    m = model(seed)
    x, mask = batch()
    ids, _ = greedy_decode(m, x, mask, max_len=20)
    greedy = [[t for t in row if t not in (Vocab.pad_id, Vocab.eos_id)] for row in ids.tolist()]
    beams = beam_search(m, x, mask, beam=1, max_len=20, max_repeats=0, tokens_per_height=None)
    assert [b[0].ids for b in beams] == greedy


def test_wider_beam_never_scores_worse_and_returns_sorted_nbest():
    m = model(3)
    x, mask = batch()
    one = beam_search(m, x, mask, beam=1, max_len=15, alpha=0.0, max_repeats=0,
                      tokens_per_height=None)
    five = beam_search(m, x, mask, beam=5, max_len=15, alpha=0.0, max_repeats=0,
                       tokens_per_height=None)
    for a, b in zip(one, five, strict=True):
        assert b[0].logprob >= a[0].logprob - 1e-4
        assert len(b) == 5
        assert [h.score for h in b] == sorted((h.score for h in b), reverse=True)


def test_batched_beam_equals_one_image_at_a_time():
    m = model(4)
    x, mask = batch(3)
    together = beam_search(m, x, mask, beam=3, max_len=12)
    for i in range(3):
        alone = beam_search(m, x[i:i + 1], mask[i:i + 1], beam=3, max_len=12)
        assert [h.ids for h in alone[0]] == [h.ids for h in together[i]]


def test_ensemble_of_identical_models_equals_single_model():
    m = model(5)
    x, mask = batch(2)
    single = beam_search(m, x, mask, beam=3, max_len=12)
    double = beam_search([m, m], x, mask, beam=3, max_len=12)
    assert [[h.ids for h in r] for r in single] == [[h.ids for h in r] for r in double]


def test_length_limit_follows_width():
    x = torch.zeros(3, 1, 48, 480)
    mask = torch.ones(3, 48, 480, dtype=torch.bool)
    mask[1, :, 96:] = False
    mask[2, 24:] = False  # half as high: its own height counts, not the padded batch's
    lim = length_limits(mask, x, max_len=500, tokens_per_height=8.0, floor=10)
    assert lim.tolist() == [90, 26, 170]
    x, mask = x[:2], mask[:2]
    m = model(6)
    out = beam_search(m, x, mask, beam=2, max_len=500, tokens_per_height=8.0, max_repeats=0)
    assert all(len(h.ids) < 26 + 24 for h in out[1])


def test_repetition_guard_blocks_a_fourth_repeat():
    hyp = [5, 6, 7, 5, 6, 7, 5, 6, 7, 5, 6]
    assert _blocked(hyp, 3, 3) == {7}
    assert _blocked(hyp, 3, 4) == set()
    assert _blocked([5, 6], 4, 1) == set()


# -- scripted models: next-token probabilities from a table of prefixes --------------------

A, B, C, D, X = 5, 6, 7, 8, 9
EOS = Vocab.eos_id


class PrefixCache:
    def __init__(self, prefixes: list[tuple[int, ...]]):
        self.prefixes = prefixes

    def select(self, index: torch.Tensor) -> PrefixCache:
        return PrefixCache([self.prefixes[i] for i in index.tolist()])


class TableModel(torch.nn.Module):
    """``table[prefix]`` gives {token: probability}; a prefix not in it ends (<eos>)."""

    def __init__(self, table: dict[tuple[int, ...], dict[int, float]], vocab: int = 12):
        super().__init__()
        self.table, self.vocab = table, vocab
        self.decoder = torch.nn.Module()
        self.decoder.max_len = 100

    def encode(self, images, mask):
        return images.new_zeros(images.shape[0], 1, 1), None

    def start(self, memory, mem_mask):
        return PrefixCache([() for _ in range(memory.shape[0])])

    def step(self, tokens, cache):
        new = tokens[:, -1].tolist()
        cache.prefixes = [p if t == Vocab.sos_id else p + (t,)
                          for p, t in zip(cache.prefixes, new, strict=True)]
        logits = torch.full((len(new), self.vocab), -1e9)
        for row, prefix in enumerate(cache.prefixes):
            for tok, prob in self.table.get(prefix, {EOS: 1.0}).items():
                logits[row, tok] = math.log(prob)
        return logits


def greedy_ids(m: torch.nn.Module, x: torch.Tensor) -> list[list[int]]:
    ids, _ = greedy_decode(m, x, None, max_len=99)
    return [[t for t in row if t not in (Vocab.pad_id, EOS)] for row in ids.tolist()]


def test_finished_hypotheses_leave_the_beam_and_search_goes_on():
    # <eos> first is the likeliest start (greedy stops there), then "A <eos>" finishes;
    # "B C D" is far better per token but sits at rank 2 behind both. Beam 2 must keep
    # it alive although two hypotheses have already finished.
    table = {(): {EOS: 0.40, A: 0.31, B: 0.29}, (A,): {EOS: 0.5, X: 0.5},
             (B,): {C: 0.99, EOS: 0.01}, (B, C): {D: 0.99, EOS: 0.01}}
    x = torch.zeros(1, 1, 8, 8)
    assert greedy_ids(TableModel(table), x) == [[]]
    hyps = beam_search(TableModel(table), x, None, beam=2)[0]
    assert hyps[0].ids == [B, C, D] and len(hyps) == 2
    assert hyps[0].score > hyps[1].score
    assert hyps[0].logprob == pytest.approx(math.log(0.29 * 0.99 * 0.99))
    assert hyps[0].score == pytest.approx(hyps[0].logprob / 4)


@pytest.mark.parametrize("beam", [1, 2, 5])
def test_beam_reads_long_repetitive_formulas_in_tall_images(beam):
    # "1 + 1 + ... + 1" (41 tokens) in an image twice as high as wide: a repeat guard or
    # a width-tied length limit would cut it short; greedy reads it, so must the beam.
    seq = [A, B] * 20 + [A]
    table = {tuple(seq[:i]): {seq[i]: 0.9, X: 0.1} for i in range(len(seq))}
    x = torch.zeros(2, 1, 64, 32)
    assert greedy_ids(TableModel(table), x) == [seq, seq]
    out = beam_search(TableModel(table), x, None, beam=beam)
    assert [h[0].ids for h in out] == [seq, seq]
    # The opt-in guards do cut it (which is why they are off).
    guarded = beam_search(TableModel(table), x, None, beam=beam, max_repeats=3)
    assert guarded[0][0].ids != seq
    limited = beam_search(TableModel(table), x, None, beam=beam, tokens_per_height=8.0)
    assert len(limited[0][0].ids) < len(seq)


def test_trim_runaway_keeps_a_trailing_loop_once():
    assert trim_runaway([1, 2, 3, 4, 5, 4, 5, 4, 5, 4, 5]) == [1, 2, 3, 4, 5]
    assert trim_runaway([7, 8] + [9] * 30) == [7, 8, 9]
    # The shortest cut wins ("4 5 4 5" repeated is also "4 5" repeated), and the loop is
    # kept from where it starts, whatever phase the budget cut it in.
    assert trim_runaway([1] + [4, 5, 4, 5] * 4) == [1, 4, 5]
    assert trim_runaway([1, 2] + [3, 4, 5] * 5 + [3]) == [1, 2, 3, 4, 5]
    # Two copies are not a loop yet (x ^ { 2 } x ^ { 2 }), nor is a cycle longer than asked.
    assert trim_runaway([1, 2, 3, 2, 3]) == [1, 2, 3, 2, 3]
    assert trim_runaway([1, 2, 3] * 4, max_period=2) == [1, 2, 3] * 4
    assert trim_runaway([]) == []


def loop_table(prefix: list[int], cycle: list[int], n: int = 200) -> dict:
    """A model that reads ``prefix`` then repeats ``cycle`` and never stops."""
    seq = prefix + cycle * n
    return {tuple(seq[:i]): {seq[i]: 0.9, EOS: 0.1} for i in range(len(seq))}


@pytest.mark.parametrize("beam", [1, 3])
def test_beam_marks_readings_the_length_budget_ended(beam):
    x = torch.zeros(1, 1, 8, 8)
    runaway = beam_search(TableModel(loop_table([A], [B, C])), x, None, beam=beam,
                          max_len=20)[0][0]
    assert runaway.cut_off and len(runaway.ids) == 19
    table = {(): {A: 0.9, EOS: 0.1}, (A,): {EOS: 0.9, B: 0.1}}
    ended = beam_search(TableModel(table), x, None, beam=beam, max_len=20)[0][0]
    assert ended.ids == [A] and not ended.cut_off


@pytest.mark.parametrize("beam", [1, 3])
def test_recognizer_trims_a_runaway_reading(beam):
    # Greedy and beam search both hit the budget inside the loop "b c b c ...": the
    # reading keeps it once, and its confidence says it never ended.
    vocab = Vocab(list("wabcdxyz"))  # A, B, C = a, b, c
    cfg = Config()
    cfg.data.max_tokens = 40
    rec = Recognizer(TableModel(loop_table([A], [B, C])), cfg, vocab)
    [pred] = rec.predict_arrays([torch.rand(1, 32, 64).numpy()], beam=beam)
    assert pred.tokens == ["a", "b", "c"]
    assert pred.confidence < 0.5
    table = {(): {A: 0.9, EOS: 0.1}, (A,): {B: 0.9, EOS: 0.1}, (A, B): {EOS: 0.9, B: 0.1}}
    [done] = Recognizer(TableModel(table), cfg, vocab).predict_arrays(
        [torch.rand(1, 32, 64).numpy()], beam=beam)
    assert done.tokens == ["a", "b"]
