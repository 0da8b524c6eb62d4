"""Positional encodings: 1-D sinusoid for the decoder, 2-D sinusoid for the encoder."""

from __future__ import annotations

import math

import torch
from torch import nn


def sinusoid(length: int, dim: int, device: torch.device | None = None) -> torch.Tensor:
    """(length, dim) table of Vaswani et al.'s sines and cosines."""
    pos = torch.arange(length, device=device, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, device=device, dtype=torch.float32)
                     * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim, device=device)
    table[:, 0::2] = torch.sin(pos * freq)
    table[:, 1::2] = torch.cos(pos * freq[: dim // 2])
    return table


class Sine2D(nn.Module):
    """Half the channels encode the row, half the column (SATRN's plain 2-D encoding)."""

    def __init__(self, d_model: int):
        super().__init__()
        if d_model % 4:
            raise ValueError(f"d_model must be divisible by 4 for 2-D sinusoids, got {d_model}")
        self.d_model = d_model

    def forward(self, feat: torch.Tensor) -> torch.Tensor:
        """feat (B, d, H, W) -> positional map of the same shape."""
        b, d, h, w = feat.shape
        half = d // 2
        rows = sinusoid(h, half, feat.device).T[:, :, None].expand(half, h, w)
        cols = sinusoid(w, half, feat.device).T[:, None, :].expand(half, h, w)
        return torch.cat([rows, cols], 0)[None].expand(b, -1, -1, -1).to(feat.dtype)
