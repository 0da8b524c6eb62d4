"""Tests for the ASTER baseline: shapes, cached vs teacher-forced decoding, padding and
masking invariance, cache reordering, and that it can fit a tiny set.

Models are tiny (d_model 32, 32x64 images) and single-threaded so the tests stay cheap.
"""

import pytest
import torch
from conftest import randomize_norms

from texlens.config import ModelConfig
from texlens.decoding import greedy_decode
from texlens.models.aster import ASTER
from texlens.models.satrn import build_model
from texlens.tokens import Vocab
from texlens.train.module import sequence_loss

torch.set_num_threads(1)

VOCAB = 12
H, W = 32, 64
STRIDE = 4


def make_model(seed: int = 0, **overrides) -> ASTER:
    torch.manual_seed(seed)
    kw = dict(arch="aster", d_model=32, enc_layers=2, dec_layers=2, dropout=0.1, cnn_width=8,
              downsample=STRIDE, max_len=24)
    kw.update(overrides)
    return ASTER(ModelConfig(**kw), VOCAB).eval()


def batch(widths: list[int], seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Random 'ink' of the given widths, zero-padded to W, with the collate-style mask."""
    g = torch.Generator().manual_seed(seed)
    images = torch.zeros(len(widths), 1, H, W)
    mask = torch.zeros(len(widths), H, W, dtype=torch.bool)
    for i, w in enumerate(widths):
        images[i, :, :, :w] = torch.rand(1, H, w, generator=g)
        mask[i, :, :w] = True
    return images, mask


def tokens(b: int, t: int, seed: int = 2) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    out = torch.randint(4, VOCAB, (b, t), generator=g)
    out[:, 0] = Vocab.sos_id
    return out


def step_logits(model: ASTER, memory, mem_mask, tgt: torch.Tensor) -> torch.Tensor:
    cache = model.start(memory, mem_mask)
    return torch.stack([model.step(tgt[:, :t + 1], cache) for t in range(tgt.shape[1])], 1)


def test_registered_in_build_model():
    cfg = ModelConfig(arch="aster", d_model=32, cnn_width=8, downsample=STRIDE)
    assert isinstance(build_model(cfg, VOCAB), ASTER)


@torch.no_grad()
def test_shapes():
    model = make_model()
    images, mask = batch([W, 40])
    memory, mem_mask = model.encode(images, mask)
    assert memory.shape == (2, W // STRIDE, 32)
    assert mem_mask.shape == (2, 1, 1, W // STRIDE) and mem_mask.dtype == torch.bool
    assert mem_mask[0].all() and mem_mask[1].sum() == 40 // STRIDE
    assert not mem_mask[1, 0, 0, 40 // STRIDE:].any()

    memory_full, none_mask = model.encode(images, None)
    assert memory_full.shape == (2, W // STRIDE, 32) and none_mask is None

    tgt = tokens(2, 5)
    assert model(images, mask, tgt).shape == (2, 5, VOCAB)
    cache = model.start(memory, mem_mask)
    assert model.step(tgt[:, :1], cache).shape == (2, VOCAB)
    # The step stored what the next one needs: one state per layer and the fed-back context.
    assert cache.length == 1 and len(cache.h) == len(cache.c) == 2
    assert cache.context.shape == (2, 32) and cache.context.abs().sum() > 0
    assert model.decoder.max_len == 24


@pytest.mark.parametrize("dec_layers", [1, 2])
@torch.no_grad()
def test_teacher_forced_equals_step_by_step(dec_layers):
    model = make_model(dec_layers=dec_layers)
    images, mask = batch([W, 40])
    memory, mem_mask = model.encode(images, mask)
    tgt = tokens(2, 7)
    forced = model.decoder(tgt, memory, mem_mask)
    stepped = step_logits(model, memory, mem_mask, tgt)
    assert torch.allclose(forced, stepped, atol=1e-5)


@torch.no_grad()
def test_greedy_cache_matches_no_cache():
    model = make_model()
    # Push <eos> down so both decodes run many steps rather than stopping at once.
    model.decoder.head.bias[Vocab.eos_id] -= 3.0
    images, mask = batch([W, 40, 24])
    out_c, score_c = greedy_decode(model, images, mask, max_len=15, use_cache=True)
    out_n, score_n = greedy_decode(model, images, mask, max_len=15, use_cache=False)
    assert out_c.shape[1] > 5
    assert torch.equal(out_c, out_n)
    assert torch.equal(score_c, score_n)


@torch.no_grad()
def test_padding_invariance():
    model = make_model()
    randomize_norms(model)
    images, mask = batch([40, W])
    alone = images[:1, :, :, :40]
    tgt = tokens(1, 6)

    mem_alone, mask_alone = model.encode(alone, None)
    mem_pad, mask_pad = model.encode(images, mask)
    assert mask_alone is None
    n = 40 // STRIDE
    assert torch.allclose(mem_alone[0], mem_pad[0, :n], atol=1e-5)

    logits_alone = model(alone, None, tgt)
    logits_pad = model(images, mask, tgt.expand(2, -1))[:1]
    assert torch.allclose(logits_alone, logits_pad, atol=1e-5)

    greedy_alone, _ = greedy_decode(model, alone, None, max_len=12)
    greedy_pad, _ = greedy_decode(model, images, mask, max_len=12)
    t = greedy_alone.shape[1]
    assert torch.equal(greedy_alone[0], greedy_pad[0, :t])
    assert (greedy_pad[0, t:] == Vocab.pad_id).all()


@torch.no_grad()
def test_attention_ignores_masked_memory():
    model = make_model()
    images, mask = batch([W, 40])
    memory, mem_mask = model.encode(images, mask)
    tgt = tokens(2, 6)
    ref = model.decoder(tgt, memory, mem_mask)

    valid = mem_mask[:, 0, 0]
    noisy = memory.clone()
    noisy[~valid] = torch.randn(int((~valid).sum()), memory.shape[-1]) * 10
    assert torch.allclose(model.decoder(tgt, noisy, mem_mask), ref, atol=1e-6)

    # The same perturbation at valid positions must matter, or the check above is vacuous.
    noisy_valid = memory.clone()
    noisy_valid[1, 0] += 10
    assert not torch.allclose(model.decoder(tgt, noisy_valid, mem_mask)[1], ref[1], atol=1e-3)


@torch.no_grad()
def test_cache_select_reorders_rows():
    model = make_model()
    images, mask = batch([W, 40])
    tgt = tokens(2, 6)
    swap = torch.tensor([1, 0])
    ref = model(images[swap], mask[swap], tgt[swap])

    cache = model.start(*model.encode(images, mask))
    for t in range(3):
        model.step(tgt[:, :t + 1], cache)
    cache = cache.select(swap)
    tail = torch.stack([model.step(tgt[swap][:, :t + 1], cache) for t in range(3, 6)], 1)
    assert torch.allclose(tail, ref[:, 3:], atol=1e-5)

    # Keeping a single row works the same way (beam search drops finished hypotheses).
    cache = model.start(*model.encode(images, mask))
    model.step(tgt[:, :1], cache)
    kept = cache.select(torch.tensor([1]))
    assert torch.allclose(model.step(tgt[1:, :2], kept), ref[:1, 1], atol=1e-5)


def test_overfits_tiny_set():
    model = make_model(seed=3, dropout=0.0).train()
    images, mask = batch([W, 48, 32, 56], seed=4)
    g = torch.Generator().manual_seed(5)
    ids = torch.full((4, 8), Vocab.pad_id)
    for i, n in enumerate([3, 6, 4, 5]):
        ids[i, 0] = Vocab.sos_id
        ids[i, 1:n + 1] = torch.randint(4, VOCAB, (n,), generator=g)
        ids[i, n + 1] = Vocab.eos_id
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        loss = sequence_loss(model(images, mask, ids[:, :-1]), ids[:, 1:])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses
