"""SATRN (Lee et al. 2020, "On Recognizing Texts of Arbitrary Shapes with 2D Self-Attention").

Image -> shallow CNN -> + 2-D positional encoding -> transformer encoder -> memory;
memory + previous tokens -> transformer decoder -> next-token logits.
With ``model.bidirectional`` the decoder also reads right to left (``direction=R2L``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from texlens.config import ModelConfig
from texlens.models.backbones import build_backbone
from texlens.models.decoder import L2R, DecoderCache, TransformerDecoder
from texlens.models.encoder import TransformerEncoder, UntiedPositionBias
from texlens.models.posenc import POSITIONAL, PositionalDropout
from texlens.models.vit import ViTEncoder


class SATRN(nn.Module):
    def __init__(self, cfg: ModelConfig, vocab_size: int):
        super().__init__()
        if cfg.pe not in POSITIONAL:
            raise ValueError(f"unknown model.pe {cfg.pe!r}; choose from {sorted(POSITIONAL)}")
        if cfg.pe_mode not in ("add", "untied"):
            raise ValueError(f"model.pe_mode must be add or untied, not {cfg.pe_mode!r}")
        if cfg.encoder not in ("satrn", "vit"):
            raise ValueError(f"model.encoder must be satrn or vit, not {cfg.encoder!r}")
        self.cfg = cfg
        dec_d = cfg.dec_d_model or cfg.d_model
        self.decoder = TransformerDecoder(vocab_size, dec_d, cfg.dec_heads or cfg.n_heads,
                                          cfg.dec_ff, cfg.dec_layers, cfg.dropout, cfg.max_len,
                                          directions=2 if cfg.bidirectional else 1)
        # The decoder attends to the memory in its own width.
        self.bridge = nn.Linear(cfg.d_model, dec_d) if dec_d != cfg.d_model else None
        if cfg.encoder == "vit":
            # Positions are cropped, not stretched, so a formula's encoding does not depend on
            # the widest image in its batch; vit_grid should cover the largest input.
            self.vit = ViTEncoder(cfg.d_model, cfg.n_heads, cfg.enc_ff, cfg.enc_layers,
                                  cfg.patch, 1, cfg.vit_grid, cfg.dropout, cfg.drop_path, "crop")
            return
        self.vit = None
        self.cnn = build_backbone(cfg.backbone, cfg.d_model, cfg.downsample, cfg.cnn_width)
        self.pe = POSITIONAL[cfg.pe](cfg.d_model)
        self.pe_drop = PositionalDropout(cfg.pe_dropout, cfg.pe_dropout_mode)
        self.untied = (UntiedPositionBias(cfg.d_model, cfg.n_heads)
                       if cfg.pe_mode == "untied" else None)
        self.encoder = TransformerEncoder(cfg.d_model, cfg.n_heads, cfg.enc_ff, cfg.enc_layers,
                                          cfg.dropout, cfg.ffn, cfg.channel_attention)

    def encode(self, images: torch.Tensor, mask: torch.Tensor | None = None
               ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """images (B, 1, H, W) float; mask (B, H, W) bool, True on real pixels.

        Returns memory (B, h*w, d) and its key mask (B, 1, 1, h*w) or None.
        """
        memory, mem_mask = (self.vit(images, mask) if self.vit is not None
                            else self.encode_map(images, mask))
        return (self.bridge(memory) if self.bridge is not None else memory), mem_mask

    def encode_map(self, images: torch.Tensor, mask: torch.Tensor | None
                   ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """CNN feature map + 2-D positions -> transformer encoder (the SATRN encoder)."""
        if mask is not None and bool(mask.all()):
            mask = None  # nothing padded: the unmasked path, as for a single image
        # The backbone zeroes padded cells at every resolution, so they cannot leak in.
        feat = self.cnn(images, mask)
        b, d, h, w = feat.shape
        valid = None
        if mask is not None:
            s = self.cnn.stride  # an int or an (h, w) pair; backbones round sizes up
            valid = F.max_pool2d(mask[:, None].to(feat.dtype), s, s, ceil_mode=True)[..., :h, :w]
        pos = self.pe_drop(self.pe(feat, valid))
        if self.untied is None:
            feat = feat + pos
        x = feat.flatten(2).transpose(1, 2)
        mem_mask = None if valid is None else (valid > 0).flatten(1)[:, None, None, :]
        bias = None
        if self.untied is not None:
            bias = self.untied(pos.flatten(2).transpose(1, 2), mem_mask)
        return self.encoder(x, mem_mask, (h, w), bias), mem_mask

    def forward(self, images: torch.Tensor, mask: torch.Tensor | None,
                tgt_in: torch.Tensor, direction: int = L2R) -> torch.Tensor:
        memory, mem_mask = self.encode(images, mask)
        return self.decoder(tgt_in, memory, mem_mask, direction)

    def start(self, memory: torch.Tensor, mem_mask: torch.Tensor | None,
              direction: int = L2R) -> DecoderCache:
        return self.decoder.start(memory, mem_mask, direction)

    def step(self, tokens: torch.Tensor, cache: DecoderCache) -> torch.Tensor:
        return self.decoder.step(tokens, cache)


from texlens.models.aster import ASTER  # noqa: E402

MODELS = {"satrn": SATRN, "aster": ASTER}


def build_model(cfg: ModelConfig, vocab_size: int) -> nn.Module:
    if cfg.arch not in MODELS:
        raise ValueError(f"unknown model.arch {cfg.arch!r}; choose from {sorted(MODELS)}")
    return MODELS[cfg.arch](cfg, vocab_size)
