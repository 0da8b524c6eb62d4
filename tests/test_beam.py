"""Beam search: beam 1 is greedy, wider beams find higher-scoring outputs, guards work."""

from __future__ import annotations

import pytest
import torch

from texlens.config import ModelConfig
from texlens.decoding import _blocked, beam_search, greedy_decode, length_limits
from texlens.models.satrn import build_model
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
    x = torch.zeros(2, 1, 48, 480)
    mask = torch.ones(2, 48, 480, dtype=torch.bool)
    mask[1, :, 96:] = False
    lim = length_limits(mask, x, max_len=500, tokens_per_height=8.0, floor=10)
    assert lim.tolist() == [90, 26]
    m = model(6)
    out = beam_search(m, x, mask, beam=2, max_len=500, tokens_per_height=8.0, max_repeats=0)
    assert all(len(h.ids) < 26 + 24 for h in out[1])


def test_repetition_guard_blocks_a_fourth_repeat():
    hyp = [5, 6, 7, 5, 6, 7, 5, 6, 7, 5, 6]
    assert _blocked(hyp, 3, 3) == {7}
    assert _blocked(hyp, 3, 4) == set()
    assert _blocked([5, 6], 4, 1) == set()
