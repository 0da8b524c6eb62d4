"""Transformer decoder with a key/value cache for incremental (greedy/beam) decoding.

``forward`` runs teacher-forced over a whole target sequence; ``step`` feeds one new
token per sequence and reuses the keys/values of earlier steps, which turns decoding
from O(T^2) layer passes into O(T). Both paths share the same modules, so a test
can check they give identical tokens.

With ``directions=2`` (``model.bidirectional``) one decoder reads both ways, as in BTTR
(Zhao et al. 2021): a learned direction vector is added to every input position, and the
right-to-left direction is trained on the reversed token sequence. A direction is chosen
when decoding starts (``start``) and kept in the cache.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from texlens.models.attention import MultiHeadAttention
from texlens.models.posenc import sinusoid
from texlens.tokens import Vocab

L2R, R2L = 0, 1  # reading directions of a bidirectional decoder (rows of its direction_embed)


def reverse_sequences(ids: torch.Tensor) -> torch.Tensor:
    """What the right-to-left direction reads: rows (B, T) of <sos> tokens <eos> <pad>...
    with the tokens between <sos> and <eos> reversed, everything else in place
    (``<sos> a b c <eos> <pad>`` -> ``<sos> c b a <eos> <pad>``), so padding stays at the
    end and the same loss masks apply to both directions."""
    n = (ids != Vocab.pad_id).sum(1, keepdim=True) - 2  # tokens between <sos> and <eos>
    pos = torch.arange(ids.shape[1], device=ids.device).expand_as(ids)
    inside = (pos >= 1) & (pos <= n)
    return ids.gather(1, torch.where(inside, n + 1 - pos, pos))


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
    direction: int = L2R

    def select(self, index: torch.Tensor) -> DecoderCache:
        """Keep batch rows ``index`` (beam search reorders hypotheses)."""
        pick = lambda kv: (kv[0].index_select(0, index), kv[1].index_select(0, index))  # noqa: E731
        return DecoderCache(
            cross=[pick(kv) for kv in self.cross],
            mem_mask=None if self.mem_mask is None else self.mem_mask.index_select(0, index),
            self_kv=[None if kv is None else pick(kv) for kv in self.self_kv],
            length=self.length, direction=self.direction)


class TransformerDecoder(nn.Module):
    def __init__(self, vocab_size: int, d_model: int, n_heads: int, d_ff: int, n_layers: int,
                 dropout: float, max_len: int = 256, directions: int = 1):
        super().__init__()
        if directions not in (1, 2):
            raise ValueError(f"a decoder reads in 1 or 2 directions, not {directions}")
        self.embed = nn.Embedding(vocab_size, d_model)
        # Embeddings are scaled by sqrt(d) below; initialised at std d^-0.5 they then have
        # unit scale like the sinusoids. nn.Embedding's default std 1 would make them
        # sqrt(d) times larger and drown out the positions the decoder needs to align.
        nn.init.normal_(self.embed.weight, std=d_model ** -0.5)
        self.directions = directions
        # Only a bidirectional decoder has this parameter, so a one-way model's state dict
        # (and every checkpoint written before it existed) is unchanged. Scaled and
        # initialised like the token embeddings; "embed" in its name keeps weight decay off.
        self.direction_embed = nn.Embedding(2, d_model) if directions == 2 else None
        if self.direction_embed is not None:
            nn.init.normal_(self.direction_embed.weight, std=d_model ** -0.5)
        self.register_buffer("pos", sinusoid(max_len, d_model), persistent=False)
        self.layers = nn.ModuleList(
            DecoderLayer(d_model, n_heads, d_ff, dropout) for _ in range(n_layers))
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab_size)
        self.drop = nn.Dropout(dropout)
        self.scale = d_model ** 0.5
        self.max_len = max_len

    def direction_bias(self, direction: int) -> torch.Tensor | None:
        """The vector added to every input position when reading in ``direction`` (d,);
        None for a one-way decoder, which reads left to right only."""
        if self.direction_embed is None:
            if direction != L2R:
                raise ValueError("this decoder reads left to right only "
                                 "(train it with model.bidirectional: true)")
            return None
        return self.direction_embed.weight[direction] * self.scale

    def _inputs(self, tokens: torch.Tensor, offset: int, direction: int = L2R) -> torch.Tensor:
        t = tokens.shape[1]
        if offset + t > self.max_len:
            raise ValueError(f"sequence of {offset + t} tokens exceeds max_len {self.max_len}")
        x = self.embed(tokens) * self.scale + self.pos[offset:offset + t]
        bias = self.direction_bias(direction)
        return self.drop(x if bias is None else x + bias)

    def forward(self, tokens: torch.Tensor, memory: torch.Tensor,
                mem_mask: torch.Tensor | None, direction: int = L2R) -> torch.Tensor:
        """Teacher-forced logits: tokens (B, T) -> (B, T, V)."""
        return self.teacher_forced(tokens, self.start(memory, mem_mask, direction))

    def teacher_forced(self, tokens: torch.Tensor, cache: DecoderCache) -> torch.Tensor:
        """Teacher-forced logits (B, T, V) from a fresh cache's cross keys/values and
        direction; the cache is not extended. Rescoring reuses beam search's projections."""
        x = self._inputs(tokens, 0, cache.direction)
        for layer, cross in zip(self.layers, cache.cross, strict=True):
            x = layer(x, layer.self_attn.project_kv(layer.norm1(x)), cross, cache.mem_mask,
                      causal=True)
        return self.head(self.norm(x))

    def start(self, memory: torch.Tensor, mem_mask: torch.Tensor | None,
              direction: int = L2R) -> DecoderCache:
        self.direction_bias(direction)  # a one-way decoder refuses R2L here, not mid-search
        return DecoderCache(cross=[layer.cross_attn.project_kv(memory) for layer in self.layers],
                            mem_mask=mem_mask, self_kv=[None] * len(self.layers),
                            direction=direction)

    def step(self, tokens: torch.Tensor, cache: DecoderCache) -> torch.Tensor:
        """Feed the newest token (B, 1); returns logits (B, V) and extends ``cache``."""
        x = self._inputs(tokens, cache.length, cache.direction)
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
