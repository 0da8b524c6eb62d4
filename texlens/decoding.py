"""Autoregressive decoding. Greedy uses the decoder's key/value cache by default;
``use_cache=False`` re-runs the decoder over the whole prefix each step (the
reference the cached path is tested against)."""

from __future__ import annotations

import torch
from torch import nn

from texlens.tokens import Vocab


@torch.no_grad()
def greedy_decode(model: nn.Module, images: torch.Tensor, mask: torch.Tensor | None,
                  max_len: int = 150, use_cache: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns token ids (B, T) without <sos> (padded with <pad> after <eos>) and the
    mean log-probability of each sequence's chosen tokens, a confidence in (-inf, 0]."""
    memory, mem_mask = model.encode(images, mask)
    b = images.shape[0]
    max_len = min(max_len, model.decoder.max_len - 1)
    seq = torch.full((b, 1), Vocab.sos_id, dtype=torch.long, device=images.device)
    done = torch.zeros(b, dtype=torch.bool, device=images.device)
    logp_sum = torch.zeros(b, device=images.device)
    length = torch.zeros(b, device=images.device)
    cache = model.start(memory, mem_mask) if use_cache else None
    for _ in range(max_len):
        if cache is not None:
            logits = model.step(seq[:, -1:], cache)
        else:
            logits = model.decoder(seq, memory, mem_mask)[:, -1]
        logp = logits.float().log_softmax(-1)
        best, nxt = logp.max(-1)
        nxt = torch.where(done, torch.full_like(nxt, Vocab.pad_id), nxt)
        logp_sum += torch.where(done, torch.zeros_like(best), best)
        length += (~done).float()
        seq = torch.cat([seq, nxt[:, None]], 1)
        done |= nxt == Vocab.eos_id
        if bool(done.all()):
            break
    return seq[:, 1:], logp_sum / length.clamp(min=1)
