"""SATRN encoder: self-attention over the 2-D feature map, then a feed-forward block.

Variants from the experiment log, each a constructor flag:
- ``ffn``: ``linear`` (the transformer's position-wise MLP) or ``conv`` (SATRN's
  locality-aware 1x1 -> depth-wise 3x3 -> 1x1 convolutions, which need the map's
  height and width, hence ``hw`` in every call);
- ``channel_attention``: a CBAM channel gate before self-attention;
- untied positions (TUPE): the caller passes ``pos_bias``, a positional term added to
  every layer's attention logits, instead of adding positions to the features.
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

    def forward(self, x: torch.Tensor, hw: tuple[int, int],
                valid: torch.Tensor | None = None) -> torch.Tensor:
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

    def forward(self, x: torch.Tensor, hw: tuple[int, int],
                valid: torch.Tensor | None = None) -> torch.Tensor:
        b, n, d = x.shape
        h, w = hw
        y = self.act(self.expand(x.transpose(1, 2).reshape(b, d, h, w)))
        if valid is not None:
            # The 3x3 must see zeros on padding, as its implicit padding gives an image
            # alone; the expansion's bias makes blank cells non-zero, hence zero after it.
            y = y * valid.view(b, 1, h, w).to(y.dtype)
        y = self.drop(self.act(self.depthwise(y)))
        return self.project(y).flatten(2).transpose(1, 2)


FFNS = {"linear": LinearFFN, "conv": ConvFFN}


class ChannelAttention(nn.Module):
    """CBAM's channel gate: a shared MLP on average- and max-pooled channels, summed,
    through a sigmoid. Pooling skips padded positions so blank padding does not dilute
    the statistics of short formulas."""

    def __init__(self, d_model: int, reduction: int = 8):
        super().__init__()
        hidden = max(d_model // reduction, 4)
        self.mlp = nn.Sequential(nn.Linear(d_model, hidden), nn.ReLU(),
                                 nn.Linear(hidden, d_model))

    def forward(self, x: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        if valid is None:
            avg, mx = x.mean(1), x.amax(1)
        else:
            v = valid[:, :, None]
            avg = (x * v).sum(1) / v.sum(1).clamp(min=1)
            mx = x.masked_fill(~v, float("-inf")).amax(1)
        gate = torch.sigmoid(self.mlp(avg) + self.mlp(mx))
        return x * gate[:, None, :]


class EncoderLayer(nn.Module):
    """Pre-norm transformer layer (pre-norm trains stably without long warm-up)."""

    def __init__(self, d_model: int, n_heads: int, d_ff: int, dropout: float, ffn: str,
                 channel_attention: bool = False):
        super().__init__()
        if ffn not in FFNS:
            raise ValueError(f"unknown ffn {ffn!r}; choose from {sorted(FFNS)}")
        self.channel = ChannelAttention(d_model) if channel_attention else None
        self.norm1 = nn.LayerNorm(d_model)
        self.attn = MultiHeadAttention(d_model, n_heads)
        self.norm2 = nn.LayerNorm(d_model)
        self.ffn = FFNS[ffn](d_model, d_ff, dropout)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None, hw: tuple[int, int],
                pos_bias: torch.Tensor | None = None) -> torch.Tensor:
        valid = None if mask is None else mask[:, 0, 0]
        if self.channel is not None:
            x = self.channel(x, valid)
        y = self.norm1(x)
        # The untied positional term already carries the padding mask (-inf on padded keys).
        x = x + self.drop(self.attn(y, y, pos_bias if pos_bias is not None else mask))
        return x + self.drop(self.ffn(self.norm2(x), hw, valid))


class TransformerEncoder(nn.Module):
    def __init__(self, d_model: int, n_heads: int, d_ff: int, n_layers: int, dropout: float,
                 ffn: str = "linear", channel_attention: bool = False):
        super().__init__()
        self.layers = nn.ModuleList(
            EncoderLayer(d_model, n_heads, d_ff, dropout, ffn, channel_attention)
            for _ in range(n_layers))
        self.norm = nn.LayerNorm(d_model)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None, hw: tuple[int, int],
                pos_bias: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, H*W, d); mask (B, 1, 1, H*W) bool, True where a key is real (not padding);
        pos_bias (B, heads, H*W, H*W) float, the untied positional logits, or None."""
        for layer in self.layers:
            x = layer(x, mask, hw, pos_bias)
        return self.norm(x)


class UntiedPositionBias(nn.Module):
    """TUPE (Ke et al. 2020): positional attention logits from separate projections of the
    positional map, (P Uq)(P Uk)^T / sqrt(d_head), computed once and shared by every layer;
    the features themselves carry no position."""

    def __init__(self, d_model: int, n_heads: int):
        super().__init__()
        self.h, self.dk = n_heads, d_model // n_heads
        self.q = nn.Linear(d_model, self.h * self.dk)
        self.k = nn.Linear(d_model, self.h * self.dk)

    def forward(self, pos: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """pos (B, N, d) -> additive logits (B, heads, N, N), -inf on padded keys."""
        b, n, _ = pos.shape
        q = self.q(pos).view(b, n, self.h, self.dk).transpose(1, 2)
        k = self.k(pos).view(b, n, self.h, self.dk).transpose(1, 2)
        bias = q @ k.transpose(-1, -2) / self.dk ** 0.5
        if mask is not None:
            bias = bias.masked_fill(~mask, float("-inf"))
        return bias
