"""Convolutional backbones: (B, C, H, W) -> (B, d_model, ceil(H/sh), ceil(W/sw)).

Besides SATRN's :class:`~texlens.models.cnn.ShallowCNN` there are two deeper
feature extractors to compare against:

* :class:`DenseNetBackbone`, the DenseNet-B/C used by WAP, DWAP, BTTR and CoMER for
  handwritten formula recognition (the competition baseline's encoder);
* :class:`ResNetBackbone`, a ResNet-18/34 with a lighter stem and configurable,
  optionally anisotropic per-stage strides, as text recognisers often keep more
  horizontal than vertical resolution.

Every backbone rounds sizes up (``ceil``), like ShallowCNN: the last partial row or
column of cells still sees its pixels instead of being dropped. Every backbone
ends with a 1x1 convolution to ``d_model`` and exposes its total stride as ``.stride``.
Every backbone takes ``forward(x, mask)`` and zeroes padded cells before each spatial
convolution or pooling (see texlens/models/cnn.py), so padding does not leak into the
image's features.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from texlens.models.cnn import ShallowCNN, Stride, blank, cell_mask, shrink


def _pair(s: Stride) -> tuple[int, int]:
    return (s, s) if isinstance(s, int) else (int(s[0]), int(s[1]))


def _compact(sh: int, sw: int) -> Stride:
    # An int for square strides, like ShallowCNN; F.max_pool2d accepts either form.
    return sh if sh == sw else (sh, sw)


# --- DenseNet --------------------------------------------------------------------------


class DenseLayer(nn.Module):
    """BN-ReLU-Conv1x1(4k)-BN-ReLU-Conv3x3(k): emits ``growth`` new channels (DenseNet-B)."""

    def __init__(self, in_channels: int, growth: int, bottleneck: bool = True,
                 dropout: float = 0.0):
        super().__init__()
        mid = 4 * growth if bottleneck else in_channels
        # Without the bottleneck the 1x1 stage is skipped entirely (plain DenseNet layer).
        self.reduce = nn.Sequential(
            nn.BatchNorm2d(in_channels), nn.ReLU(inplace=True),
            nn.Conv2d(in_channels, mid, 1, bias=False),
        ) if bottleneck else nn.Identity()
        self.conv = nn.Sequential(
            nn.BatchNorm2d(mid), nn.ReLU(inplace=True),
            nn.Conv2d(mid, growth, 3, padding=1, bias=False),
        )
        self.dropout = dropout

    def forward(self, x: torch.Tensor, m: torch.Tensor | None = None) -> torch.Tensor:
        """m (B, 1, H, W): 1 on real cells, or None. The 1x1 stage is per cell; only the
        3x3 reads neighbours, so its input (BN-ReLU output, non-zero on blank cells) is
        zeroed on padding."""
        norm, relu, conv = self.conv
        y = conv(blank(relu(norm(self.reduce(x))), m))
        return F.dropout(y, self.dropout, self.training) if self.dropout > 0 else y


class DenseBlock(nn.Module):
    """Each layer sees the concatenation of the block input and all earlier layer outputs."""

    def __init__(self, in_channels: int, n_layers: int, growth: int, bottleneck: bool = True,
                 dropout: float = 0.0):
        super().__init__()
        self.layers = nn.ModuleList(
            DenseLayer(in_channels + i * growth, growth, bottleneck, dropout)
            for i in range(n_layers))
        self.out_channels = in_channels + n_layers * growth
        self.stride = 1

    def forward(self, x: torch.Tensor, m: torch.Tensor | None = None) -> torch.Tensor:
        features = [x]
        for layer in self.layers:
            features.append(layer(torch.cat(features, 1), m))
        return torch.cat(features, 1)


class Transition(nn.Module):
    """BN-ReLU-Conv1x1 that shrinks the channels (DenseNet-C), then optionally AvgPool 2x2."""

    def __init__(self, in_channels: int, out_channels: int, pool: bool = True):
        super().__init__()
        self.norm = nn.BatchNorm2d(in_channels)
        self.conv = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        # ceil_mode keeps a trailing odd row/column instead of dropping it.
        self.pool = nn.AvgPool2d(2, ceil_mode=True) if pool else nn.Identity()
        self.stride = 2 if pool else 1

    def forward(self, x: torch.Tensor, m: torch.Tensor | None = None) -> torch.Tensor:
        x = self.conv(F.relu(self.norm(x)))
        if m is None or self.stride == 1:
            return self.pool(x)
        # Average over real cells only: alone, a window cut by the image edge averages
        # only its in-image cells (the pool ignores cells past the tensor's edge).
        return self.pool(x * m) / self.pool(m).clamp(min=1e-6)


class DenseNetBackbone(nn.Module):
    """DenseNet-B/C feature extractor as in WAP/DWAP/CoMER.

    Stem: 7x7 stride-2 conv (``2 * growth`` channels), BN, ReLU, 2x2 max-pool -> 1/4.
    Then dense blocks separated by compressing transitions. With ``downsample=16`` the
    two transitions each halve the resolution (the WAP layout); with ``downsample=8``
    the last transition does not pool, so the costly first blocks still run at low
    resolution and only the final block runs at 1/8 instead of 1/16.
    WAP and CoMER use ``block_layers=(16, 16, 16)``; the default is halved for CPU.
    """

    def __init__(self, in_channels: int = 1, d_model: int = 256, growth: int = 24,
                 block_layers: Sequence[int] = (8, 8, 8), bottleneck: bool = True,
                 compression: float = 0.5, dropout: float = 0.0, downsample: int = 8):
        super().__init__()
        if downsample not in (8, 16):
            raise ValueError(f"downsample must be 8 or 16, not {downsample}")
        if len(block_layers) < 2 and downsample == 16:
            raise ValueError("downsample=16 needs at least two dense blocks")
        if not 0.0 < compression <= 1.0:
            raise ValueError(f"compression must be in (0, 1], not {compression}")
        channels = 2 * growth
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, channels, 7, stride=2, padding=3, bias=False),
            nn.BatchNorm2d(channels), nn.ReLU(inplace=True),
            nn.MaxPool2d(2, ceil_mode=True),
        )
        n_pools = int(math.log2(downsample)) - 2  # the stem already gives 1/4
        n_transitions = len(block_layers) - 1
        stages: list[nn.Module] = []
        for i, n_layers in enumerate(block_layers):
            block = DenseBlock(channels, n_layers, growth, bottleneck, dropout)
            stages.append(block)
            channels = block.out_channels
            if i < n_transitions:
                out = int(channels * compression)
                # Pool in the first transitions so the remaining ones run at low resolution.
                stages.append(Transition(channels, out, pool=i < n_pools))
                channels = out
        self.blocks = nn.Sequential(*stages)
        # DenseNet's final BN-ReLU: block outputs are concatenations of un-normalised maps.
        self.norm = nn.BatchNorm2d(channels)
        self.proj = nn.Conv2d(channels, d_model, 1)
        self.out_channels = channels
        self.stride = downsample

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """mask (B, H, W) bool, True on real pixels; the output is zero on padded cells."""
        m = cell_mask(mask, x)
        conv, norm, relu, pool = self.stem
        x = relu(norm(conv(blank(x, m))))
        m = shrink(m, 2)
        # Zeros stand in for the cells the pool skips past the edge: inputs are >= 0 (ReLU).
        x = pool(blank(x, m))
        m = shrink(m, 2)
        for stage in self.blocks:
            x = stage(x, m)
            m = shrink(m, stage.stride)
        return blank(self.proj(F.relu(self.norm(x))), m)


# --- ResNet ----------------------------------------------------------------------------


class BasicBlock(nn.Module):
    """Two 3x3 convs with a shortcut (identity, or 1x1 conv + BN when the shape changes)."""

    def __init__(self, in_channels: int, out_channels: int, stride: Stride = 1):
        super().__init__()
        stride = _pair(stride)
        self.stride = stride
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        # Zero gamma makes each block start as the identity, which trains deep
        # ResNets from scratch more stably (Goyal et al. 2017; timm's zero_init_last).
        nn.init.zeros_(self.bn2.weight)
        self.shortcut: nn.Module = nn.Identity()
        if stride != (1, 1) or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                nn.BatchNorm2d(out_channels))

    def forward(self, x: torch.Tensor, m: torch.Tensor | None = None) -> torch.Tensor:
        """m (B, 1, H, W): 1 on real cells of ``x``, or None. The 1x1 shortcut reads one
        cell, so only the 3x3 convs need zeroed inputs."""
        y = F.relu(self.bn1(self.conv1(blank(x, m))), inplace=True)
        y = self.bn2(self.conv2(blank(y, shrink(m, self.stride))))
        return F.relu(y + self.shortcut(x), inplace=True)


RESNET_LAYERS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}


class ResNetBackbone(nn.Module):
    """ResNet-18/34 of BasicBlocks with a 3x3 stride-2 stem (no 7x7 conv or max-pool).

    Stage ``i`` has ``width * 2**i`` channels and starts with ``strides[i]``, which is
    either an int (same stride for height and width) or an ``(h, w)`` pair, e.g.
    ``((2, 2), (2, 2), (2, 1), (1, 1))`` halves the width one time less than the height.
    ``.stride`` is the total stride including the stem: an int when height and width
    strides agree, else an ``(sh, sw)`` tuple. The default (2, 2, 2, 1) gives 16.
    """

    def __init__(self, in_channels: int = 1, d_model: int = 256, depth: int = 18,
                 width: int = 32, strides: Sequence[Stride] = (2, 2, 2, 1)):
        super().__init__()
        if depth not in RESNET_LAYERS:
            raise ValueError(f"depth must be one of {sorted(RESNET_LAYERS)}, not {depth}")
        if len(strides) != 4:
            raise ValueError(f"strides needs one entry per stage (4), got {strides!r}")
        pairs = [_pair(s) for s in strides]
        if any(s not in (1, 2) for p in pairs for s in p):
            raise ValueError(f"each stride must be 1 or 2, got {strides!r}")
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(width), nn.ReLU(inplace=True))
        stages: list[nn.Module] = []
        cin = width
        for i, (n_blocks, stride) in enumerate(zip(RESNET_LAYERS[depth], pairs, strict=True)):
            cout = width * 2 ** i
            blocks = [BasicBlock(cin, cout, stride)]
            blocks += [BasicBlock(cout, cout) for _ in range(n_blocks - 1)]
            stages.append(nn.Sequential(*blocks))
            cin = cout
        self.stages = nn.Sequential(*stages)
        self.proj = nn.Conv2d(cin, d_model, 1)
        self.stride = _compact(2 * math.prod(p[0] for p in pairs),
                               2 * math.prod(p[1] for p in pairs))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """mask (B, H, W) bool, True on real pixels; the output is zero on padded cells."""
        m = cell_mask(mask, x)
        x = self.stem(blank(x, m))
        m = shrink(m, 2)
        for stage in self.stages:
            for block in stage:
                x = block(x, m)
                m = shrink(m, block.stride)
        return blank(self.proj(x), m)


def resnet_strides(downsample: int) -> tuple[int, int, int, int]:
    """Per-stage strides for a square total stride: the earliest stages downsample, so
    the wide late stages run at low resolution but not below 1/``downsample``."""
    if downsample not in (2, 4, 8, 16, 32):
        raise ValueError(f"downsample must be a power of two from 2 to 32, not {downsample}")
    n = int(math.log2(downsample)) - 1  # the stem contributes one factor of 2
    return tuple(2 if i < n else 1 for i in range(4))  # type: ignore[return-value]


# --- registry --------------------------------------------------------------------------

BackboneFactory = Callable[[int, int, int, int], nn.Module]


def _shallow(in_channels: int, d_model: int, downsample: int, width: int) -> nn.Module:
    return ShallowCNN(in_channels, d_model, downsample, width)


def _densenet(in_channels: int, d_model: int, downsample: int, width: int) -> nn.Module:
    # ``width`` is the growth rate, the knob that scales a DenseNet (the baseline uses 24).
    return DenseNetBackbone(in_channels, d_model, growth=width, downsample=downsample)


def _resnet(depth: int) -> BackboneFactory:
    def make(in_channels: int, d_model: int, downsample: int, width: int) -> nn.Module:
        return ResNetBackbone(in_channels, d_model, depth, width, resnet_strides(downsample))
    return make


BACKBONES: dict[str, BackboneFactory] = {
    "shallow": _shallow,
    "densenet": _densenet,
    "resnet18": _resnet(18),
    "resnet34": _resnet(34),
}


def build_backbone(name: str, d_model: int, downsample: int, width: int,
                   in_channels: int = 1) -> nn.Module:
    """Build a backbone by name; ``width`` is the base channel count (DenseNet: growth rate)."""
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; choose from {sorted(BACKBONES)}")
    return BACKBONES[name](in_channels, d_model, downsample, width)
