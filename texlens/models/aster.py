"""ASTER-style baseline (Shi et al. 2018, "ASTER: An Attentional Scene Text Recognizer with
Flexible Rectification"), without the rectification network.

Image -> shallow CNN -> pool over height -> BiLSTM -> memory (one vector per column);
memory + previous token -> LSTM decoder with additive (Bahdanau) attention -> logits.

Collapsing the height throws away the 2-D layout that fractions and scripts need, which
is what makes this a useful baseline to compare SATRN's 2-D attention against.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from texlens.config import ModelConfig
from texlens.models.cnn import ShallowCNN
from texlens.models.decoder import L2R


def _ceil_div(x: torch.Tensor, s: int) -> torch.Tensor:
    return torch.div(x + s - 1, s, rounding_mode="floor")


class AdditiveAttention(nn.Module):
    """score_i = v^T tanh(W_s s + W_h h_i); returns the softmax-weighted sum of memory."""

    def __init__(self, d_query: int, d_memory: int, d_attn: int):
        super().__init__()
        self.key = nn.Linear(d_memory, d_attn)
        self.query = nn.Linear(d_query, d_attn, bias=False)
        self.score = nn.Linear(d_attn, 1, bias=False)

    def project_keys(self, memory: torch.Tensor) -> torch.Tensor:
        """W_h h_i does not depend on the decoder state: compute it once per image."""
        return self.key(memory)

    def forward(self, query: torch.Tensor, keys: torch.Tensor, memory: torch.Tensor,
                mask: torch.Tensor | None) -> torch.Tensor:
        """query (B, dq), keys (B, N, da), memory (B, N, d), mask (B, N) True = valid."""
        scores = self.score(torch.tanh(keys + self.query(query)[:, None])).squeeze(-1)
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        weights = scores.softmax(-1)
        return torch.bmm(weights[:, None], memory).squeeze(1)


@dataclass
class AsterCache:
    """Decoder state between steps: per-layer LSTM (h, c), the last attention context
    (fed back as input), and the memory with its precomputed attention keys."""

    h: list[torch.Tensor]
    c: list[torch.Tensor]
    context: torch.Tensor
    memory: torch.Tensor
    keys: torch.Tensor
    mem_mask: torch.Tensor | None  # (B, N), True = valid
    length: int = 0

    def select(self, index: torch.Tensor) -> AsterCache:
        """Keep batch rows ``index`` (beam search reorders hypotheses)."""
        pick = lambda t: t.index_select(0, index)  # noqa: E731
        return AsterCache(
            h=[pick(t) for t in self.h], c=[pick(t) for t in self.c],
            context=pick(self.context), memory=pick(self.memory), keys=pick(self.keys),
            mem_mask=None if self.mem_mask is None else pick(self.mem_mask),
            length=self.length)


class AttentionLSTMDecoder(nn.Module):
    """Stacked LSTM cells with input feeding: the input at step t is
    [embed(y_{t-1}); context_{t-1}], and the output is Linear([s_t; context_t])."""

    def __init__(self, vocab_size: int, d_model: int, n_layers: int, dropout: float,
                 max_len: int = 256):
        super().__init__()
        if n_layers < 1:
            raise ValueError(f"the LSTM decoder needs at least 1 layer, not {n_layers}")
        self.embed = nn.Embedding(vocab_size, d_model)
        self.cells = nn.ModuleList(
            nn.LSTMCell(2 * d_model if i == 0 else d_model, d_model) for i in range(n_layers))
        self.attn = AdditiveAttention(d_model, d_model, d_model)
        self.head = nn.Linear(2 * d_model, vocab_size)
        self.drop = nn.Dropout(dropout)
        self.d_model = d_model
        # The LSTM itself has no length limit; greedy_decode reads this as its cap.
        self.max_len = max_len

    def start(self, memory: torch.Tensor, mem_mask: torch.Tensor | None,
              direction: int = L2R) -> AsterCache:
        """memory (B, N, d); mem_mask (B, 1, 1, N) as returned by ``encode``, or None."""
        if direction != L2R:
            raise ValueError("ASTER's decoder reads left to right only")
        b = memory.shape[0]
        zeros = memory.new_zeros(b, self.d_model)
        return AsterCache(
            h=[zeros] * len(self.cells), c=[zeros] * len(self.cells), context=zeros,
            memory=memory, keys=self.attn.project_keys(memory),
            mem_mask=None if mem_mask is None else mem_mask.reshape(b, -1))

    def _advance(self, tokens: torch.Tensor, cache: AsterCache) -> torch.Tensor:
        """One decoding step for tokens (B,): updates ``cache`` and returns logits (B, V).
        Both the teacher-forced and the incremental path go through here, so they agree."""
        x = torch.cat([self.drop(self.embed(tokens)), cache.context], -1)
        hs, cs = [], []
        for i, cell in enumerate(self.cells):
            h, c = cell(x, (cache.h[i], cache.c[i]))
            hs.append(h)
            cs.append(c)
            x = self.drop(h)
        context = self.attn(h, cache.keys, cache.memory, cache.mem_mask)
        cache.h, cache.c, cache.context = hs, cs, context
        cache.length += 1
        return self.head(self.drop(torch.cat([h, context], -1)))

    def forward(self, tokens: torch.Tensor, memory: torch.Tensor,
                mem_mask: torch.Tensor | None, direction: int = L2R) -> torch.Tensor:
        """Teacher-forced logits: tokens (B, T) -> (B, T, V); left to right only."""
        cache = self.start(memory, mem_mask, direction)
        return torch.stack([self._advance(tokens[:, t], cache)
                            for t in range(tokens.shape[1])], 1)

    def step(self, tokens: torch.Tensor, cache: AsterCache) -> torch.Tensor:
        """Feed the newest token of tokens (B, >=1); returns logits (B, V), updates ``cache``."""
        return self._advance(tokens[:, -1], cache)


class ASTER(nn.Module):
    def __init__(self, cfg: ModelConfig, vocab_size: int):
        super().__init__()
        if cfg.enc_layers < 1:
            raise ValueError(f"the BiLSTM encoder needs at least 1 layer, not {cfg.enc_layers}")
        if cfg.bidirectional:
            raise ValueError("model.bidirectional needs model.arch satrn (the transformer "
                             "decoder); ASTER's LSTM decoder reads left to right only")
        d = cfg.d_model
        self.cfg = cfg
        self.cnn = ShallowCNN(1, d, cfg.downsample, cfg.cnn_width)
        # Zero columns appended on the right before the CNN. Its padded convolutions reach
        # past the last real column (up to 2 strides - 2 when the width is not a multiple of
        # the stride); past the margin they would see the conv's implicit zero padding alone
        # but BN/ReLU outputs of blank paper in a padded batch. With the margin a padded
        # image encodes exactly as it does alone, so batched and single-image inference agree.
        self.margin = 2 * self.cnn.stride
        self.rnn = nn.LSTM(d, d, num_layers=cfg.enc_layers, batch_first=True,
                           bidirectional=True, dropout=cfg.dropout if cfg.enc_layers > 1 else 0.0)
        self.proj = nn.Linear(2 * d, d)
        self.drop = nn.Dropout(cfg.dropout)
        self.decoder = AttentionLSTMDecoder(vocab_size, d, cfg.dec_layers, cfg.dropout,
                                            cfg.max_len)

    def encode(self, images: torch.Tensor, mask: torch.Tensor | None = None
               ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """images (B, 1, H, W) float; mask (B, H, W) bool, True on real pixels (top-left
        aligned, as ``collate`` pads). Returns memory (B, w, d) with w = ceil(W / stride)
        and its key mask (B, 1, 1, w), or None when nothing is padded."""
        s = self.cnn.stride
        n = -(-images.shape[-1] // s)
        images = F.pad(images, (0, self.margin))
        # Columns past an image are blank paper, alone too (the margin above); rows below
        # it are not: alone the CNN sees its implicit zero padding there, so in a batch of
        # different heights the CNN zeroes the padded rows at every resolution instead.
        rows = None if mask is None else mask.any(2)  # (B, H): rows holding the image
        row_mask = (None if rows is None or bool(rows.all())
                    else rows[:, :, None].expand(-1, -1, images.shape[-1]))
        feat = self.cnn(images, row_mask)[..., :n]  # (B, d, h, n)
        if mask is None or bool(mask.all()):
            out, _ = self.rnn(feat.mean(2).transpose(1, 2))
            return self.proj(self.drop(out)), None
        h = feat.shape[2]
        rows = _ceil_div(mask.any(2).sum(1), s).clamp(1, h)
        cols = _ceil_div(mask.any(1).sum(1), s).clamp(1, n)
        # Mean over the real rows only, so a shorter image in the batch is not diluted.
        row_ok = torch.arange(h, device=feat.device) < rows[:, None]
        seq = (feat * row_ok[:, None, :, None]).sum(2) / rows[:, None, None]
        # Packing stops the backward direction from starting in the padding.
        packed = pack_padded_sequence(seq.transpose(1, 2), cols.cpu(), batch_first=True,
                                      enforce_sorted=False)
        out, _ = pad_packed_sequence(self.rnn(packed)[0], batch_first=True, total_length=n)
        mem_mask = torch.arange(n, device=feat.device) < cols[:, None]
        return self.proj(self.drop(out)), mem_mask[:, None, None, :]

    def forward(self, images: torch.Tensor, mask: torch.Tensor | None,
                tgt_in: torch.Tensor, direction: int = L2R) -> torch.Tensor:
        memory, mem_mask = self.encode(images, mask)
        return self.decoder(tgt_in, memory, mem_mask, direction)

    def start(self, memory: torch.Tensor, mem_mask: torch.Tensor | None,
              direction: int = L2R) -> AsterCache:
        return self.decoder.start(memory, mem_mask, direction)

    def step(self, tokens: torch.Tensor, cache: AsterCache) -> torch.Tensor:
        return self.decoder.step(tokens, cache)
