"""Transformer decoder with a key/value cache for incremental (greedy/beam) decoding.

``forward`` runs teacher-forced over a whole target sequence; ``step`` feeds one new
token per sequence and reuses the keys/values of earlier steps, which turns decoding
from O(T^2) layer passes into O(T). Both paths share the same modules, so a test
can check they give identical tokens.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from texlens.models.attention import MultiHeadAttention
from texlens.models.posenc import sinusoid


class DecoderLayer(nn.Module):
    def __init__(self, d_model: int, n_heads: int, d_ff: int, dropout: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(d_model)
        self.self_attn = MultiHeadAttention(d_model, n_heads)
        self.norm2 = nn.LayerNorm(d_model)
        self.cross_attn = MultiHeadAttention(d_model, n_heads)
        self.norm3 = nn.LayerNorm(d_model)
        self.ffn = nn.Sequential(nn.Linear(d_model, d_ff), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(d_ff, d_model))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, self_kv: tuple[torch.Tensor, torch.Tensor],
                cross_kv: tuple[torch.Tensor, torch.Tensor], mem_mask: torch.Tensor | None,
                causal: bool) -> torch.Tensor:
        y = self.norm1(x)
        x = x + self.drop(self.self_attn.attend(y, *self_kv, causal=causal))
        x = x + self.drop(self.cross_attn.attend(self.norm2(x), *cross_kv, mask=mem_mask))
        return x + self.drop(self.ffn(self.norm3(x)))


@dataclass
class DecoderCache:
    """Per-layer self-attention keys/values so far, and cross-attention keys/values."""

    cross: list[tuple[torch.Tensor, torch.Tensor]]
    mem_mask: torch.Tensor | None
    self_kv: list[tuple[torch.Tensor, torch.Tensor] | None] = field(default_factory=list)
    length: int = 0

    def select(self, index: torch.Tensor) -> DecoderCache:
        """Keep batch rows ``index`` (beam search reorders hypotheses)."""
        pick = lambda kv: (kv[0].index_select(0, index), kv[1].index_select(0, index))  # noqa: E731
        return DecoderCache(
            cross=[pick(kv) for kv in self.cross],
            mem_mask=None if self.mem_mask is None else self.mem_mask.index_select(0, index),
            self_kv=[None if kv is None else pick(kv) for kv in self.self_kv],
            length=self.length)


class TransformerDecoder(nn.Module):
    def __init__(self, vocab_size: int, d_model: int, n_heads: int, d_ff: int, n_layers: int,
                 dropout: float, max_len: int = 256):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, d_model)
        # Embeddings are scaled by sqrt(d) below; initialised at std d^-0.5 they then have
        # unit scale like the sinusoids. nn.Embedding's default std 1 would make them
        # sqrt(d) times larger and drown out the positions the decoder needs to align.
        nn.init.normal_(self.embed.weight, std=d_model ** -0.5)
        self.register_buffer("pos", sinusoid(max_len, d_model), persistent=False)
        self.layers = nn.ModuleList(
            DecoderLayer(d_model, n_heads, d_ff, dropout) for _ in range(n_layers))
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab_size)
        self.drop = nn.Dropout(dropout)
        self.scale = d_model ** 0.5
        self.max_len = max_len

    def _inputs(self, tokens: torch.Tensor, offset: int) -> torch.Tensor:
        t = tokens.shape[1]
        if offset + t > self.max_len:
            raise ValueError(f"sequence of {offset + t} tokens exceeds max_len {self.max_len}")
        return self.drop(self.embed(tokens) * self.scale + self.pos[offset:offset + t])

    def forward(self, tokens: torch.Tensor, memory: torch.Tensor,
                mem_mask: torch.Tensor | None) -> torch.Tensor:
        """Teacher-forced logits: tokens (B, T) -> (B, T, V)."""
        x = self._inputs(tokens, 0)
        for layer in self.layers:
            x = layer(x, layer.self_attn.project_kv(layer.norm1(x)),
                      layer.cross_attn.project_kv(memory), mem_mask, causal=True)
        return self.head(self.norm(x))

    def start(self, memory: torch.Tensor, mem_mask: torch.Tensor | None) -> DecoderCache:
        return DecoderCache(cross=[layer.cross_attn.project_kv(memory) for layer in self.layers],
                            mem_mask=mem_mask, self_kv=[None] * len(self.layers))

    def step(self, tokens: torch.Tensor, cache: DecoderCache) -> torch.Tensor:
        """Feed the newest token (B, 1); returns logits (B, V) and extends ``cache``."""
        x = self._inputs(tokens, cache.length)
        for i, layer in enumerate(self.layers):
            k, v = layer.self_attn.project_kv(layer.norm1(x))
            if cache.self_kv[i] is not None:
                k = torch.cat([cache.self_kv[i][0], k], 2)
                v = torch.cat([cache.self_kv[i][1], v], 2)
            cache.self_kv[i] = (k, v)
            # The single new query may attend to every cached key: no causal mask needed.
            x = layer(x, (k, v), cache.cross[i], cache.mem_mask, causal=False)
        cache.length += tokens.shape[1]
        return self.head(self.norm(x[:, -1]))
