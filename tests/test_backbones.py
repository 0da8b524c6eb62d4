"""Tests for texlens.models.backbones. Tiny models and images: keep them cheap on a busy CPU."""

import math

import pytest
import torch
import torch.nn.functional as F
from conftest import randomize_norms

from texlens.models.backbones import (
    BACKBONES,
    DenseBlock,
    DenseNetBackbone,
    ResNetBackbone,
    Transition,
    build_backbone,
    resnet_strides,
)
from texlens.models.cnn import ShallowCNN

torch.set_num_threads(1)

D = 16  # d_model for the tests
# (name, downsample) pairs each backbone supports.
CASES = [("shallow", 4), ("shallow", 8), ("densenet", 8), ("densenet", 16),
         ("resnet18", 8), ("resnet18", 16), ("resnet34", 16)]


def n_params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


# --- shapes and strides -----------------------------------------------------------------


@pytest.mark.parametrize("name,ds", CASES)
@pytest.mark.parametrize("hw", [(32, 64), (37, 71)])  # even, and odd sizes that do not divide
def test_output_shape_is_ceil_of_input_over_stride(name, ds, hw):
    m = build_backbone(name, D, ds, 8).eval()
    assert m.stride == ds
    h, w = hw
    with torch.no_grad():
        y = m(torch.rand(2, 1, h, w))
    assert y.shape == (2, D, math.ceil(h / ds), math.ceil(w / ds))


def test_registry_names():
    assert sorted(BACKBONES) == ["densenet", "resnet18", "resnet34", "shallow"]
    assert isinstance(build_backbone("shallow", D, 8, 8), ShallowCNN)
    assert isinstance(build_backbone("densenet", D, 8, 8), DenseNetBackbone)
    r34 = build_backbone("resnet34", D, 8, 8)
    assert isinstance(r34, ResNetBackbone)
    assert [len(s) for s in r34.stages] == [3, 4, 6, 3]
    assert [len(s) for s in build_backbone("resnet18", D, 8, 8).stages] == [2, 2, 2, 2]


def test_unknown_backbone_lists_choices():
    with pytest.raises(ValueError, match="unknown backbone 'vgg'") as e:
        build_backbone("vgg", D, 8, 8)
    for name in BACKBONES:
        assert name in str(e.value)


@pytest.mark.parametrize("make", [
    lambda: DenseNetBackbone(d_model=D, growth=4, downsample=4),
    lambda: ResNetBackbone(d_model=D, depth=50),
    lambda: ResNetBackbone(d_model=D, strides=(2, 2, 3, 1)),
    lambda: ResNetBackbone(d_model=D, strides=(2, 2, 2)),
    lambda: resnet_strides(12),
])
def test_bad_arguments_raise(make):
    with pytest.raises(ValueError):
        make()


def test_resnet_strides_from_downsample():
    # The stem contributes 2; the earliest stages take the remaining factors.
    assert resnet_strides(4) == (2, 1, 1, 1)
    assert resnet_strides(8) == (2, 2, 1, 1)
    assert resnet_strides(16) == (2, 2, 2, 1)
    assert resnet_strides(32) == (2, 2, 2, 2)


def test_resnet_anisotropic_strides_keep_width_resolution():
    m = ResNetBackbone(d_model=D, width=8, strides=((2, 2), (2, 2), (2, 1), (1, 1))).eval()
    assert m.stride == (16, 8)
    with torch.no_grad():
        y = m(torch.rand(1, 1, 37, 71))
    assert y.shape == (1, D, math.ceil(37 / 16), math.ceil(71 / 8))
    # The tuple stride works directly for pooling a pixel mask onto the feature grid.
    mask = torch.ones(1, 1, 37, 71)
    assert F.max_pool2d(mask, m.stride, m.stride, ceil_mode=True).shape[-2:] == y.shape[-2:]


def test_resnet_square_pair_strides_report_an_int():
    m = ResNetBackbone(d_model=D, width=8, strides=((2, 2), 2, (1, 1), 1))
    assert m.stride == 8


# --- parameter counts -------------------------------------------------------------------


def test_parameter_counts_are_plausible():
    shallow = n_params(build_backbone("shallow", 256, 8, 32))
    dense = n_params(build_backbone("densenet", 256, 16, 24))
    r18 = n_params(build_backbone("resnet18", 256, 16, 32))
    r34 = n_params(build_backbone("resnet34", 256, 16, 32))
    r18_full = n_params(build_backbone("resnet18", 256, 16, 64))
    assert 1e5 < shallow < 1e6
    assert 3e5 < dense < 3e6
    # ResNet-18 at width 64 has ~11.2M parameters without its classifier; width 32 ~1/4.
    assert 10e6 < r18_full < 12e6
    assert 2e6 < r18 < 4e6
    assert r34 > 1.5 * r18
    assert shallow < dense < r18


def test_densenet_baseline_size_grows_with_depth():
    small = n_params(DenseNetBackbone(d_model=D, block_layers=(8, 8, 8)))
    wap = n_params(DenseNetBackbone(d_model=D, block_layers=(16, 16, 16), downsample=16))
    assert small < wap


# --- DenseNet channel arithmetic ---------------------------------------------------------


def test_densenet_channels_grow_by_layers_times_growth():
    growth, layers, comp = 6, (3, 4, 2), 0.5
    m = DenseNetBackbone(d_model=D, growth=growth, block_layers=layers, compression=comp)
    seen: list[tuple[str, int, int]] = []

    def hook(mod, inputs, output):
        seen.append((type(mod).__name__, inputs[0].shape[1], output.shape[1]))

    for mod in m.modules():
        if isinstance(mod, (DenseBlock, Transition)):
            mod.register_forward_hook(hook)
    with torch.no_grad():
        m.eval()(torch.rand(1, 1, 32, 64))

    c = 2 * growth  # stem
    expected = []
    for i, n in enumerate(layers):
        expected.append(("DenseBlock", c, c + n * growth))
        c += n * growth
        if i < len(layers) - 1:
            expected.append(("Transition", c, int(c * comp)))
            c = int(c * comp)
    assert seen == expected
    assert m.out_channels == c
    blocks = [mod for mod in m.modules() if isinstance(mod, DenseBlock)]
    assert [b.out_channels for b in blocks] == [out for kind, _, out in expected
                                                if kind == "DenseBlock"]


def test_densenet_downsample_8_pools_in_first_transition_only():
    m = DenseNetBackbone(d_model=D, growth=4, downsample=8)
    pools = [not isinstance(t.pool, torch.nn.Identity)
             for t in m.modules() if isinstance(t, Transition)]
    assert pools == [True, False]
    m16 = DenseNetBackbone(d_model=D, growth=4, downsample=16)
    assert [not isinstance(t.pool, torch.nn.Identity)
            for t in m16.modules() if isinstance(t, Transition)] == [True, True]


def test_densenet_without_bottleneck_and_with_dropout_runs():
    m = DenseNetBackbone(d_model=D, growth=4, block_layers=(2, 2), bottleneck=False,
                         dropout=0.2)
    y = m(torch.rand(2, 1, 32, 64))
    assert y.shape == (2, D, 4, 8)


# --- gradients ---------------------------------------------------------------------------


def _first_conv(m: torch.nn.Module) -> torch.nn.Conv2d:
    return next(mod for mod in m.modules() if isinstance(mod, torch.nn.Conv2d))


@pytest.mark.parametrize("name,ds", [("shallow", 8), ("densenet", 16), ("resnet18", 8),
                                     ("resnet34", 16)])
def test_gradient_reaches_first_conv(name, ds):
    m = build_backbone(name, D, ds, 8).train()
    y = m(torch.rand(2, 1, 32, 64))
    # A random projection, not a plain sum: BN makes the sum of its outputs constant.
    (y * torch.randn_like(y)).sum().backward()
    g = _first_conv(m).weight.grad
    assert g is not None and torch.isfinite(g).all() and g.abs().sum() > 0


# --- padding -----------------------------------------------------------------------------


@pytest.mark.parametrize("name,ds", CASES)
def test_padded_image_with_mask_encodes_as_alone(name, ds):
    m = build_backbone(name, D, ds, 8).eval()
    randomize_norms(m)
    h, w = 37, 45  # neither a multiple of the stride, so windows straddle the edge
    image = torch.rand(1, 1, h, w)
    padded = torch.zeros(1, 1, 70, 100)
    padded[..., :h, :w] = image
    mask = torch.zeros(1, 70, 100, dtype=torch.bool)
    mask[:, :h, :w] = True
    with torch.no_grad():
        alone = m(image)
        y = m(padded, mask)
        unmasked = m(padded)
    ha, wa = math.ceil(h / ds), math.ceil(w / ds)
    assert torch.allclose(y[..., :ha, :wa], alone, atol=1e-5)
    assert not y[..., ha:, :].any() and not y[..., wa:].any()  # padded cells are zero
    # Without the mask, blank padding does reach the image's cells.
    assert not torch.allclose(unmasked[..., :ha, :wa], alone, atol=1e-3)
    assert torch.equal(m(image, torch.ones(1, h, w, dtype=torch.bool)), alone)


def test_anisotropic_resnet_padding():
    m = ResNetBackbone(d_model=D, width=8, strides=((2, 2), (2, 2), (2, 1), (1, 1))).eval()
    randomize_norms(m)
    image = torch.rand(1, 1, 37, 45)
    padded = F.pad(image, (0, 30, 0, 20))
    mask = F.pad(torch.ones(1, 37, 45, dtype=torch.bool), (0, 30, 0, 20))
    with torch.no_grad():
        alone, y = m(image), m(padded, mask)
    assert torch.allclose(y[..., :math.ceil(37 / 16), :math.ceil(45 / 8)], alone, atol=1e-5)
