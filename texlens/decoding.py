"""Autoregressive decoding: greedy (key/value cache), batched beam search, ensembles.

Greedy uses the decoder's key/value cache by default; ``use_cache=False`` re-runs the
decoder over the whole prefix each step (the reference the cached path is tested
against). Beam search and ensembles share one stepping interface, ``Ensemble``: a
single model is an ensemble of one, so every path averages per-step
log-probabilities the same way.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

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


class Ensemble:
    """Several models decoded as one: per-step log-probabilities are averaged.

    The models must share the vocabulary (the caller checks; ids would not line up
    otherwise) but may differ in architecture and input size policy only if the same
    preprocessed images suit all of them.
    """

    def __init__(self, models: Sequence[nn.Module]):
        if not models:
            raise ValueError("an ensemble needs at least one model")
        self.models = list(models)
        self.max_len = min(m.decoder.max_len for m in self.models) - 1

    def start(self, images: torch.Tensor, mask: torch.Tensor | None) -> list:
        return [m.start(*m.encode(images, mask)) for m in self.models]

    def step(self, tokens: torch.Tensor, caches: list) -> torch.Tensor:
        logps = [m.step(tokens, c).float().log_softmax(-1) for m, c in zip(self.models, caches,
                                                                           strict=True)]
        return logps[0] if len(logps) == 1 else torch.stack(logps).mean(0)

    @staticmethod
    def select(caches: list, index: torch.Tensor) -> list:
        return [c.select(index) for c in caches]


@dataclass
class Hypothesis:
    ids: list[int]  # without <sos> and <eos>
    score: float  # length-normalised log-probability
    logprob: float  # total log-probability


def length_limits(mask: torch.Tensor | None, images: torch.Tensor, max_len: int,
                  tokens_per_height: float = 8.0, floor: int = 24) -> torch.Tensor:
    """Per-image token budget from its width: a formula W pixels wide at height H holds
    at most about ``tokens_per_height * W / H`` tokens. Stops runaway loops early."""
    h = images.shape[2]
    widths = (mask[:, 0].sum(-1) if mask is not None
              else torch.full((images.shape[0],), images.shape[3], device=images.device))
    limit = (widths.float() / h * tokens_per_height).ceil().long() + floor
    return limit.clamp(max=max_len)


def _blocked(hyp: list[int], n: int, max_repeats: int) -> set[int]:
    """Tokens that would complete an n-gram already seen ``max_repeats`` times."""
    if len(hyp) < n - 1:
        return set()
    prefix = tuple(hyp[len(hyp) - n + 1:])
    counts: dict[int, int] = {}
    for i in range(len(hyp) - n + 1):
        if tuple(hyp[i:i + n - 1]) == prefix:
            nxt = hyp[i + n - 1]
            counts[nxt] = counts.get(nxt, 0) + 1
    return {t for t, c in counts.items() if c >= max_repeats}


@torch.no_grad()
def beam_search(models: nn.Module | Sequence[nn.Module], images: torch.Tensor,
                mask: torch.Tensor | None, beam: int = 5, max_len: int = 150,
                alpha: float = 1.0, nbest: int | None = None, repeat_ngram: int = 4,
                max_repeats: int = 3, tokens_per_height: float | None = 8.0
                ) -> list[list[Hypothesis]]:
    """Batched beam search; returns for each image its ``nbest`` hypotheses, best first.

    Scores are log P / length**alpha (alpha=0: raw log-probability, which favours
    short outputs). ``repeat_ngram``/``max_repeats`` forbid a token that would complete
    an n-gram already generated ``max_repeats`` times (0 disables the guard), the usual
    failure of an under-trained decoder. ``tokens_per_height`` ties the length limit
    to the image width (None: only ``max_len``). With beam=1 and the guard off the
    result equals greedy decoding.
    """
    ens = Ensemble(models if isinstance(models, Sequence) else [models])
    b, k = images.shape[0], beam
    nbest = nbest or k
    dev = images.device
    rows = torch.arange(b, device=dev).repeat_interleave(k)
    caches = ens.start(images, mask)
    caches = ens.select(caches, rows)
    limit = torch.full((b,), min(max_len, ens.max_len), device=dev, dtype=torch.long)
    if tokens_per_height is not None:
        limit = length_limits(mask, images, int(limit[0]), tokens_per_height)
    limit = limit.repeat_interleave(k)
    scores = torch.full((b, k), float("-inf"), device=dev)
    scores[:, 0] = 0.0  # all beams start identical: keep one so top-k does not pick copies
    seqs = torch.full((b * k, 1), Vocab.sos_id, dtype=torch.long, device=dev)
    done = torch.zeros(b * k, dtype=torch.bool, device=dev)
    for t in range(int(limit.max())):
        logp = ens.step(seqs[:, -1:], caches)  # (B*K, V)
        v = logp.shape[-1]
        # Finished beams may only extend with <pad>, at no cost, so their score is frozen.
        frozen = torch.full_like(logp, float("-inf"))
        frozen[:, Vocab.pad_id] = 0.0
        logp = torch.where(done[:, None], frozen, logp)
        active = ~done
        over = active & (t >= limit - 1)  # out of budget: close with <eos>
        if bool(over.any()):
            forced = torch.full_like(logp, float("-inf"))
            forced[:, Vocab.eos_id] = 0.0
            logp = torch.where(over[:, None], forced, logp)
        if max_repeats and repeat_ngram > 1:
            hyps = seqs[:, 1:].tolist()
            for i in torch.nonzero(active & ~over).flatten().tolist():
                for tok in _blocked(hyps[i], repeat_ngram, max_repeats):
                    logp[i, tok] = float("-inf")
        cand = (scores.view(b * k, 1) + logp).view(b, k * v)
        top, idx = cand.topk(k, dim=-1)
        src = (idx // v + torch.arange(b, device=dev)[:, None] * k).flatten()
        tok = (idx % v).flatten()
        seqs = torch.cat([seqs[src], tok[:, None]], 1)
        done = done[src] | (tok == Vocab.eos_id)
        scores = top
        caches = ens.select(caches, src)
        if bool(done.all()):
            break
    out: list[list[Hypothesis]] = []
    seq_list = seqs[:, 1:].tolist()
    flat_scores = scores.flatten().tolist()
    for i in range(b):
        hyps = []
        for j in range(i * k, (i + 1) * k):
            if math.isinf(flat_scores[j]):
                continue
            ids = [x for x in seq_list[j] if x not in (Vocab.pad_id, Vocab.eos_id)]
            length = len(ids) + 1  # the <eos> is a prediction too
            hyps.append(Hypothesis(ids, flat_scores[j] / length ** alpha, flat_scores[j]))
        hyps.sort(key=lambda h: h.score, reverse=True)
        out.append(hyps[:nbest])
    return out
