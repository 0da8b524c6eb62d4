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

    def forward(self, feat: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        """feat (B, d, H, W) -> positional map of the same shape. ``valid`` (B, 1, H, W),
        1 on real cells, matters only to encodings that pool the map (Adaptive2D)."""
        b, d, h, w = feat.shape
        half = d // 2
        rows = sinusoid(h, half, feat.device).T[:, :, None].expand(half, h, w)
        cols = sinusoid(w, half, feat.device).T[:, None, :].expand(half, h, w)
        return torch.cat([rows, cols], 0)[None].expand(b, -1, -1, -1).to(feat.dtype)


class Adaptive2D(nn.Module):
    """SATRN's adaptive 2-D encoding: p(h, w) = alpha(E) * sin(h) + beta(E) * sin(w).

    alpha and beta are per-channel scales predicted from the average-pooled feature
    map E, so the ratio of vertical to horizontal position information adapts to
    each image (tall fractions vs long flat sums).
    """

    def __init__(self, d_model: int, hidden: int | None = None):
        super().__init__()
        hidden = hidden or d_model // 2
        mlp = lambda: nn.Sequential(nn.Linear(d_model, hidden), nn.ReLU(),  # noqa: E731
                                    nn.Linear(hidden, d_model))
        self.alpha, self.beta = mlp(), mlp()

    def forward(self, feat: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        b, d, h, w = feat.shape
        if valid is None:
            pooled = feat.mean((2, 3))
        else:  # padded cells must not dilute the average of a short formula
            pooled = (feat * valid).sum((2, 3)) / valid.sum((2, 3)).clamp(min=1)
        a = torch.sigmoid(self.alpha(pooled))[:, :, None, None]
        bb = torch.sigmoid(self.beta(pooled))[:, :, None, None]
        rows = sinusoid(h, d, feat.device).T[None, :, :, None].to(feat.dtype)
        cols = sinusoid(w, d, feat.device).T[None, :, None, :].to(feat.dtype)
        return a * rows + bb * cols


class Learned2D(nn.Module):
    """A learned table of positions, cropped to the feature map's size."""

    def __init__(self, d_model: int, max_h: int = 32, max_w: int = 256):
        super().__init__()
        self.table = nn.Parameter(torch.randn(1, d_model, max_h, max_w) * 0.02)

    def forward(self, feat: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        b, d, h, w = feat.shape
        mh, mw = self.table.shape[2:]
        if h > mh or w > mw:
            raise ValueError(f"feature map {h}x{w} exceeds the learned positions {mh}x{mw}; "
                             "raise data.max_width or use pe: sine2d")
        return self.table[:, :, :h, :w].expand(b, -1, -1, -1)


class PositionalDropout(nn.Module):
    """Dropout on the positional map. ``element`` drops single values; ``position`` drops
    whole positional vectors, so the model must sometimes place a feature without knowing
    where it is and leans on content."""

    def __init__(self, p: float, mode: str = "element"):
        super().__init__()
        if mode not in ("element", "position"):
            raise ValueError(f"pe_dropout_mode must be element or position, not {mode!r}")
        self.p, self.mode = p, mode

    def forward(self, pos: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return pos
        if self.mode == "element":
            return nn.functional.dropout(pos, self.p, True)
        b, _, h, w = pos.shape
        keep = (torch.rand(b, 1, h, w, device=pos.device) >= self.p).to(pos.dtype)
        return pos * keep / (1 - self.p)


POSITIONAL = {"sine2d": Sine2D, "adaptive2d": Adaptive2D, "learned": Learned2D}
