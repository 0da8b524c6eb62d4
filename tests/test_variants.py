"""The SATRN variants of the experiment log do what their papers say, not only the shapes."""

from __future__ import annotations

import pytest
import torch

from texlens.config import ModelConfig
from texlens.decoding import greedy_decode
from texlens.models.encoder import ChannelAttention, ConvFFN, LinearFFN, UntiedPositionBias
from texlens.models.posenc import Adaptive2D, Learned2D, PositionalDropout, sinusoid
from texlens.models.satrn import build_model

torch.manual_seed(0)


def tiny(**kw) -> ModelConfig:
    base = dict(d_model=32, n_heads=2, enc_layers=1, dec_layers=1, enc_ff=64, dec_ff=64,
                cnn_width=8, dropout=0.0)
    return ModelConfig(**{**base, **kw})


def test_conv_ffn_is_local_and_linear_ffn_is_pointwise():
    h, w, d = 5, 7, 16
    x = torch.randn(1, h * w, d)
    x2 = x.clone()
    x2[0, 2 * w + 3] += 1.0  # perturb position (2, 3)
    for ffn, radius in ((ConvFFN(d, 32, 0.0), 1), (LinearFFN(d, 32, 0.0), 0)):
        ffn.eval()
        diff = (ffn(x2, (h, w)) - ffn(x, (h, w))).abs().sum(-1).view(h, w)
        changed = {(i, j) for i in range(h) for j in range(w) if diff[i, j] > 1e-6}
        expect = {(i, j) for i in range(2 - radius, 3 + radius) for j in range(3 - radius,
                                                                              4 + radius)}
        assert changed == expect


def test_conv_ffn_ignores_padding_through_its_3x3():
    h, w, d = 3, 6, 8
    ffn = ConvFFN(d, 16, 0.0).eval()
    x = torch.randn(1, h * w, d)
    valid = torch.ones(1, h, w, dtype=torch.bool)
    valid[:, :, 4:] = False
    noisy = x.clone().view(1, h, w, d)
    noisy[:, :, 4:] += 5.0
    v = valid.flatten(1)
    a = ffn(x, (h, w), v).view(1, h, w, d)[:, :, :4]
    b = ffn(noisy.view(1, h * w, d), (h, w), v).view(1, h, w, d)[:, :, :4]
    assert torch.allclose(a, b, atol=1e-6)


def test_adaptive_pe_scales_row_and_column_sinusoids():
    d = 16
    pe = Adaptive2D(d)
    with torch.no_grad():  # alpha -> 1, beta -> 0: only the row sinusoid remains
        for mlp, bias in ((pe.alpha, 30.0), (pe.beta, -30.0)):
            mlp[2].weight.zero_()
            mlp[2].bias.fill_(bias)
    feat = torch.randn(2, d, 3, 5)
    rows = sinusoid(3, d).T[:, :, None].expand(d, 3, 5)
    assert torch.allclose(pe(feat)[0], rows, atol=1e-6)


def test_adaptive_pe_depends_on_the_image():
    pe = Adaptive2D(16)
    a, b = torch.randn(1, 16, 3, 5), torch.randn(1, 16, 3, 5) * 3
    assert not torch.allclose(pe(a), pe(b))


def test_learned_pe_crops_and_rejects_too_large_maps():
    pe = Learned2D(8, max_h=4, max_w=10)
    out = pe(torch.zeros(2, 8, 3, 6))
    assert torch.equal(out[1], pe.table[0, :, :3, :6])
    with pytest.raises(ValueError, match="exceeds"):
        pe(torch.zeros(1, 8, 3, 11))


@pytest.mark.parametrize("mode", ["element", "position"])
def test_pe_dropout_modes(mode):
    drop = PositionalDropout(0.5, mode).train()
    pos = torch.ones(4, 32, 6, 8)
    out = drop(pos)
    zero = out == 0
    whole = zero.all(1) | (~zero).all(1)  # per position: all channels dropped or none
    if mode == "position":
        assert bool(whole.all())
        assert torch.allclose(out[~zero], torch.tensor(2.0))
    else:
        assert not bool(whole.all())
    assert torch.equal(drop.eval()(pos), pos)


def test_channel_attention_gates_channels_and_ignores_padding():
    ca = ChannelAttention(16, reduction=4)
    x = torch.randn(2, 10, 16)
    valid = torch.ones(2, 10, dtype=torch.bool)
    valid[:, 7:] = False
    y = ca(x, valid)
    gate = y / x
    assert bool(((gate > 0) & (gate < 1)).all())
    assert torch.allclose(gate[:, :1], gate[:, 5:6], atol=1e-5)  # one gate per channel
    x2 = x.clone()
    x2[:, 7:] = 100.0
    assert torch.allclose(ca(x2, valid)[:, :7], y[:, :7], atol=1e-6)


def test_untied_bias_masks_padded_keys():
    bias = UntiedPositionBias(16, 2)(torch.randn(1, 6, 16),
                                     torch.tensor([True] * 4 + [False] * 2)[None, None, None])
    assert bool(torch.isinf(bias[..., 4:]).all()) and bool(torch.isfinite(bias[..., :4]).all())


def test_untied_with_zero_positional_term_equals_plain_attention():
    torch.manual_seed(1)
    untied = build_model(tiny(pe_mode="untied"), 20).eval()
    plain = build_model(tiny(pe_mode="add"), 20).eval()
    plain.load_state_dict(untied.state_dict(), strict=False)
    with torch.no_grad():
        for lin in (untied.untied.q, untied.untied.k):
            lin.weight.zero_()
            lin.bias.zero_()
    plain.pe.forward = lambda feat, valid=None: torch.zeros_like(feat)  # no positions
    x = torch.rand(2, 1, 32, 64)
    mask = torch.ones(2, 32, 64, dtype=torch.bool)
    mask[1, :, 40:] = False
    m_u, _ = untied.encode(x, mask)
    m_p, _ = plain.encode(x, mask)
    assert torch.allclose(m_u, m_p, atol=1e-5)
    # With a real positional term the outputs differ, yet the encoder input stays PE-free.
    with torch.no_grad():
        untied.untied.q.weight.normal_()
        untied.untied.k.weight.normal_()
    seen = {}

    def grab(module, args):
        seen["x"] = args[0]

    untied.encoder.register_forward_pre_hook(grab)
    assert not torch.allclose(untied.encode(x, mask)[0], m_p, atol=1e-4)
    cnn = untied.cnn(x, mask).flatten(2).transpose(1, 2)
    assert torch.allclose(seen["x"], cnn, atol=1e-6)


@pytest.mark.parametrize("kw", [dict(ffn="conv"), dict(pe="adaptive2d"), dict(pe="learned"),
                                dict(pe_mode="untied"), dict(channel_attention=True),
                                dict(pe_dropout=0.2, pe_dropout_mode="position")])
def test_every_variant_decodes_the_same_with_and_without_cache(kw):
    model = build_model(tiny(**kw), 20).eval()
    x = torch.rand(3, 1, 32, 80)
    mask = torch.ones(3, 32, 80, dtype=torch.bool)
    mask[2, :, 48:] = False
    a, _ = greedy_decode(model, x, mask, 12, use_cache=True)
    b, _ = greedy_decode(model, x, mask, 12, use_cache=False)
    assert torch.equal(a, b)


def test_unknown_variant_names_are_clear_errors():
    with pytest.raises(ValueError, match="model.pe "):
        build_model(tiny(pe="spiral"), 20)
    with pytest.raises(ValueError, match="pe_mode"):
        build_model(tiny(pe_mode="mixed"), 20)
