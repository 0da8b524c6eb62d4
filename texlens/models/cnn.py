"""Shallow CNN backbone (SATRN): a few conv-BN-ReLU stages that reduce the resolution.

SATRN's point is that the transformer encoder does the heavy lifting, so the CNN
only turns pixels into a 1/4 or 1/8 resolution feature map cheaply. Each stage
downsamples with a stride-2 convolution rather than conv + max-pool: on CPU the
full-resolution activations (BN, ReLU, pooling) dominated the step time, and a
strided first convolution never materialises them.
"""

from __future__ import annotations

import torch
from torch import nn


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
        self.stride = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)
