"""Shallow CNN backbone (SATRN): a few conv-BN-ReLU stages that reduce the resolution.

SATRN's point is that the transformer encoder does the heavy lifting, so the CNN
only turns pixels into a 1/4 or 1/8 resolution feature map cheaply. Each stage
downsamples with a stride-2 convolution rather than conv + max-pool: on CPU the
full-resolution activations (BN, ReLU, pooling) dominated the step time, and a
strided first convolution never materialises them.

Padding. A batch pads images to the largest one; alone, an image's convolutions see
zeros past its edge (their implicit padding), but in a batch they would see the
features of blank paper (BN shifts and biases make them non-zero), and each 3x3
convolution carries that one cell further into the image. So every backbone takes
the pixel mask and zeroes the padded cells before each spatial convolution or
pooling, at every resolution: a padded image then encodes as it does alone. The
helpers below are shared by all backbones; with ``mask=None`` they do nothing.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

Stride = int | tuple[int, int]


def cell_mask(mask: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor | None:
    """Pixel mask (B, H, W) bool, True on real pixels -> (B, 1, H, W) in ``like``'s dtype."""
    return None if mask is None else mask[:, None].to(like.dtype)


def shrink(m: torch.Tensor | None, stride: Stride) -> torch.Tensor | None:
    """The mask of a map downsampled by ``stride``: a cell is real when its window holds a
    real cell. A 3x3/stride-2 conv (padding 1) centred on cell 2j and a 2x2 pool over
    2j..2j+1 both give ceil(W/2) cells, the first ceil(w/2) of them real."""
    if m is None or stride in (1, (1, 1)):
        return m
    return F.max_pool2d(m, stride, stride, ceil_mode=True)


def blank(x: torch.Tensor, m: torch.Tensor | None) -> torch.Tensor:
    """Zero the padded cells, as the convolution's implicit padding would be alone."""
    return x if m is None else x * m


def conv_bn_relu(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class ShallowCNN(nn.Module):
    """(B, C, H, W) -> (B, d_model, H/s, W/s) with s = ``downsample`` (4 or 8)."""

    def __init__(self, in_channels: int = 1, d_model: int = 256, downsample: int = 8,
                 width: int = 32):
        super().__init__()
        if downsample not in (4, 8):
            raise ValueError(f"downsample must be 4 or 8, not {downsample}")
        chans = [width, width * 2] + ([width * 4] if downsample == 8 else [])
        layers: list[nn.Module] = []
        cin = in_channels
        for c in chans:
            layers.append(conv_bn_relu(cin, c, stride=2))
            cin = c
        # One stride-1 conv at the final resolution widens the receptive field cheaply.
        layers += [conv_bn_relu(cin, cin), nn.Conv2d(cin, d_model, 1)]
        self.body = nn.Sequential(*layers)
        self.strides = [2] * len(chans) + [1, 1]  # of the layers of ``body``
        self.stride = downsample

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """mask (B, H, W) bool, True on real pixels; the output is zero on padded cells."""
        m = cell_mask(mask, x)
        for layer, s in zip(self.body, self.strides, strict=True):
            x = layer(blank(x, m))
            m = shrink(m, s)
        return blank(x, m)
