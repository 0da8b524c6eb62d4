"""SATRN encoder: self-attention over the 2-D feature map, then a feed-forward block.

The feed-forward block is replaceable: ``linear`` (the transformer's position-wise
MLP) or ``conv`` (SATRN's locality-aware 1x1 -> depth-wise 3x3 -> 1x1 convolutions,
which need the map's height and width, hence ``hw`` in every call).
"""

from __future__ import annotations

import torch
from torch import nn

from texlens.models.attention import MultiHeadAttention


class LinearFFN(nn.Module):
    def __init__(self, d_model: int, d_ff: int, dropout: float):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(d_model, d_ff), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(d_ff, d_model))

    def forward(self, x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        return self.net(x)


class ConvFFN(nn.Module):
    """Locality-aware feed-forward (SATRN): depth-wise separable conv over the 2-D map."""

    def __init__(self, d_model: int, d_ff: int, dropout: float):
        super().__init__()
        self.expand = nn.Conv2d(d_model, d_ff, 1)
        self.depthwise = nn.Conv2d(d_ff, d_ff, 3, padding=1, groups=d_ff)
        self.project = nn.Conv2d(d_ff, d_model, 1)
        self.act = nn.GELU()
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        b, n, d = x.shape
        h, w = hw
        y = x.transpose(1, 2).reshape(b, d, h, w)
        y = self.act(self.expand(y))
        y = self.drop(self.act(self.depthwise(y)))
        return self.project(y).flatten(2).transpose(1, 2)


FFNS = {"linear": LinearFFN, "conv": ConvFFN}


class EncoderLayer(nn.Module):
    """Pre-norm transformer layer (pre-norm trains stably without long warm-up)."""

    def __init__(self, d_model: int, n_heads: int, d_ff: int, dropout: float, ffn: str):
        super().__init__()
        if ffn not in FFNS:
            raise ValueError(f"unknown ffn {ffn!r}; choose from {sorted(FFNS)}")
        self.norm1 = nn.LayerNorm(d_model)
        self.attn = MultiHeadAttention(d_model, n_heads)
        self.norm2 = nn.LayerNorm(d_model)
        self.ffn = FFNS[ffn](d_model, d_ff, dropout)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None,
                hw: tuple[int, int]) -> torch.Tensor:
        y = self.norm1(x)
        x = x + self.drop(self.attn(y, y, mask))
        return x + self.drop(self.ffn(self.norm2(x), hw))


class TransformerEncoder(nn.Module):
    def __init__(self, d_model: int, n_heads: int, d_ff: int, n_layers: int, dropout: float,
                 ffn: str = "linear"):
        super().__init__()
        self.layers = nn.ModuleList(
            EncoderLayer(d_model, n_heads, d_ff, dropout, ffn) for _ in range(n_layers))
        self.norm = nn.LayerNorm(d_model)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None,
                hw: tuple[int, int]) -> torch.Tensor:
        """x (B, H*W, d); mask (B, 1, 1, H*W) bool, True where a key is real (not padding)."""
        for layer in self.layers:
            x = layer(x, mask, hw)
        return self.norm(x)
