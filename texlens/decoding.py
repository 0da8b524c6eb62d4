"""Autoregressive decoding: greedy (key/value cache), batched beam search, ensembles.

Greedy uses the decoder's key/value cache by default; ``use_cache=False`` re-runs the
decoder over the whole prefix each step (the reference the cached path is tested
against). Beam search and ensembles share one stepping interface, ``Ensemble``: a
single model is an ensemble of one, so every path averages per-step
log-probabilities the same way. Beam search steps through a :class:`Stepper`, so the
onnxruntime backend (texlens/onnx_backend.py) runs this same search on its own graphs.

With bidirectional models (``model.bidirectional``), beam search may rescore its n-best
with the right-to-left direction (``rescore="r2l"``, BTTR's rescoring).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from texlens.models.decoder import R2L, reverse_sequences
from texlens.tokens import Vocab

RESCORERS = ("r2l",)


@torch.no_grad()
def greedy_decode(model: nn.Module, images: torch.Tensor, mask: torch.Tensor | None,
                  max_len: int = 150, use_cache: bool = True, return_probs: bool = False
                  ) -> tuple[torch.Tensor, ...]:
    """Returns token ids (B, T) without <sos> (padded with <pad> after <eos>) and the
    mean log-probability of each sequence's chosen tokens, a confidence in (-inf, 0];
    with ``return_probs`` also each chosen token's probability (B, T), 0 on padding."""
    memory, mem_mask = model.encode(images, mask)
    b = images.shape[0]
    max_len = min(max_len, model.decoder.max_len - 1)
    seq = torch.full((b, 1), Vocab.sos_id, dtype=torch.long, device=images.device)
    done = torch.zeros(b, dtype=torch.bool, device=images.device)
    logp_sum = torch.zeros(b, device=images.device)
    length = torch.zeros(b, device=images.device)
    probs = []
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
        probs.append(torch.where(done, torch.zeros_like(best), best.exp()))
        length += (~done).float()
        seq = torch.cat([seq, nxt[:, None]], 1)
        done |= nxt == Vocab.eos_id
        if bool(done.all()):
            break
    if return_probs:
        return seq[:, 1:], logp_sum / length.clamp(min=1), torch.stack(probs, 1)
    return seq[:, 1:], logp_sum / length.clamp(min=1)


RUNAWAY_REPEATS = 3  # a cycle seen this often at a cut-off is a loop, not the formula
RUNAWAY_PERIOD = 40  # longest cycle looked for, in tokens


def trim_runaway(ids: Sequence[int], min_repeats: int = RUNAWAY_REPEATS,
                 max_period: int = RUNAWAY_PERIOD) -> list[int]:
    """A reading cut off by the length budget, its trailing loop kept once.

    A decoder that never chose to stop has usually fallen into a loop (``\\, \\, \\,
    ...``, ``& & &``, ``( 0 . 7 ) ^ { 2 }`` again and again) and fills the budget with it:
    hundreds of tokens no image holds, which cost a corpus BLEU dearly. For each cycle
    length up to ``max_period``, the periodic tail of the reading is found; if it holds at
    least ``min_repeats`` cycles, the reading up to its first cycle is kept. The shortest
    such reading wins. Only for cut-off readings: a formula that ends by itself may repeat
    legitimately (``1 + 1 + 1``, matrix rows)."""
    ids = list(ids)
    keep = len(ids)
    for period in range(1, max_period + 1):
        start = len(ids) - period  # the periodic tail is ids[start:]
        while start > 0 and ids[start - 1] == ids[start - 1 + period]:
            start -= 1
        if len(ids) - start >= min_repeats * period:
            keep = min(keep, start + period)
    return ids[:keep]


@torch.no_grad()
def sequence_logprobs(model: nn.Module, images: torch.Tensor, mask: torch.Tensor | None,
                      seqs: Sequence[Sequence[int]]) -> list[torch.Tensor]:
    """Teacher-forced log-probability of each token of each given reading, its <eos>
    last: row k of ``images`` read as ``seqs[k]`` (ids without <sos>/<eos>). Scores
    readings found elsewhere (test-time views, :meth:`Recognizer.predict_arrays`)."""
    longest = max(len(q) for q in seqs) + 1
    tgt_in = torch.full((len(seqs), longest), Vocab.pad_id, dtype=torch.long)
    tgt_out = torch.full((len(seqs), longest), Vocab.pad_id, dtype=torch.long)
    for k, q in enumerate(seqs):
        tgt_in[k, :len(q) + 1] = torch.tensor([Vocab.sos_id, *q])
        tgt_out[k, :len(q) + 1] = torch.tensor([*q, Vocab.eos_id])
    logp = model(images, mask, tgt_in.to(images.device)).float().log_softmax(-1)
    picked = logp.gather(-1, tgt_out.to(images.device)[..., None])[..., 0].cpu()
    return [picked[k, :len(q) + 1] for k, q in enumerate(seqs)]


class Stepper:
    """What beam search asks of a decoder, whatever runs it: ``start`` encodes a batch
    into caches of one row per image, ``step`` gives the next token's log-probabilities
    (N, V) after each row's last token and grows the caches, ``select`` keeps the caches'
    rows ``index`` (repeats allowed), ``max_len`` bounds the tokens after <sos>."""

    max_len: int

    def start(self, images: torch.Tensor, mask: torch.Tensor | None) -> object:
        raise NotImplementedError

    def step(self, tokens: torch.Tensor, caches) -> torch.Tensor:
        raise NotImplementedError

    def select(self, caches, index: torch.Tensor) -> object:
        raise NotImplementedError


class Ensemble(Stepper):
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

    def select(self, caches: list, index: torch.Tensor) -> list:
        return [c.select(index) for c in caches]

    def sequence_logprob(self, caches: list, seqs: torch.Tensor, direction: int) -> torch.Tensor:
        """Teacher-forced log-probability (N,) of each row of ``seqs`` (N, T): <sos> tokens
        <eos> <pad>..., read in ``direction`` from fresh caches (no step taken yet) of N rows.
        Per-step log-probabilities are averaged over the models, as in ``step``."""
        tokens, target = seqs[:, :-1], seqs[:, 1:]
        logps = [m.decoder.teacher_forced(tokens, dataclasses.replace(c, direction=direction))
                 .float().log_softmax(-1) for m, c in zip(self.models, caches, strict=True)]
        logp = logps[0] if len(logps) == 1 else torch.stack(logps).mean(0)
        picked = logp.gather(-1, target[..., None]).squeeze(-1)
        return (picked * (target != Vocab.pad_id)).sum(1)


@dataclass
class Hypothesis:
    ids: list[int]  # without <sos> and <eos>
    score: float  # length-normalised log-probability (rescored: both directions', averaged)
    logprob: float  # total log-probability (left to right)
    probs: list[float] = field(default_factory=list)  # of each token in ids, then of <eos>
    r2l_logprob: float | None = None  # rescored: of the reversed tokens and <eos>, R2L
    cut_off: bool = False  # ended by the length budget, not by choosing <eos>


def is_bidirectional(model: nn.Module) -> bool:
    return getattr(getattr(model, "decoder", None), "directions", 1) == 2


def check_rescore(models: Sequence[nn.Module], beam: int, rescore: str | None) -> None:
    """Raise ValueError when ``rescore`` cannot run: an unknown rescorer, greedy decoding
    (nothing to choose from) or a model without the right-to-left direction."""
    if rescore is None:
        return
    if rescore not in RESCORERS:
        raise ValueError(f"rescore must be one of {', '.join(RESCORERS)}, not {rescore!r}")
    if beam < 2:
        raise ValueError(f"rescore {rescore} chooses among the n-best of beam search; "
                         "use a beam width of 2 or more")
    if not all(is_bidirectional(m) for m in models):
        raise ValueError(f"rescore {rescore} needs bidirectional models (trained with "
                         "model.bidirectional: true)")


def combine_r2l(hyps: Sequence[Hypothesis], r2l_logprobs: Sequence[float], alpha: float
                ) -> list[Hypothesis]:
    """BTTR's rescoring: rank by the sum of the left-to-right and right-to-left
    log-probabilities. Both directions score the same number of steps (the tokens and
    <eos>), so the sum is normalised like beam search's own score, by that length**alpha;
    it is halved so the score stays on the scale of a one-direction score (the ranking is
    the sum's). Best first; ties keep beam search's order."""
    out = [dataclasses.replace(h, r2l_logprob=r,
                               score=(h.logprob + r) / 2 / (len(h.ids) + 1) ** alpha)
           for h, r in zip(hyps, r2l_logprobs, strict=True)]
    return sorted(out, key=lambda h: h.score, reverse=True)


def rescore_r2l(ens: Ensemble, caches: list, finished: list[list[Hypothesis]], alpha: float
                ) -> list[list[Hypothesis]]:
    """Each image's finished hypotheses scored by the right-to-left direction and reranked
    (:func:`combine_r2l`); ``caches`` are the fresh ones of the images, one row each."""
    hyps = [h for hs in finished for h in hs]
    if not hyps:
        return finished
    dev = caches[0].cross[0][0].device
    seqs = torch.full((len(hyps), max(len(h.ids) for h in hyps) + 2), Vocab.pad_id,
                      dtype=torch.long, device=dev)
    for i, h in enumerate(hyps):
        seqs[i, :len(h.ids) + 2] = torch.tensor([Vocab.sos_id, *h.ids, Vocab.eos_id])
    rows = torch.tensor([img for img, hs in enumerate(finished) for _ in hs], device=dev)
    r2l = ens.sequence_logprob(ens.select(caches, rows), reverse_sequences(seqs), R2L).tolist()
    out, start = [], 0
    for hs in finished:
        out.append(combine_r2l(hs, r2l[start:start + len(hs)], alpha))
        start += len(hs)
    return out


def length_limits(mask: torch.Tensor | None, images: torch.Tensor, max_len: int,
                  tokens_per_height: float = 8.0, floor: int = 24) -> torch.Tensor:
    """Per-image token budget from its own width and height (not the padded batch's): a
    formula W pixels wide and H high holds at most about ``tokens_per_height * W / H``
    tokens. Off by default in beam search: tall formulas (fractions) and zero-width tokens
    (braces, scripts) break the rule, and greedy decoding has no such limit."""
    if mask is None:
        b, _, h, w = images.shape
        heights = torch.full((b,), h, device=images.device)
        widths = torch.full((b,), w, device=images.device)
    else:  # images sit top-left in the padded batch
        heights, widths = mask.any(2).sum(1), mask.any(1).sum(1)
    limit = (widths.float() / heights.clamp(min=1) * tokens_per_height).ceil().long() + floor
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
def beam_search(models: nn.Module | Sequence[nn.Module] | Stepper, images: torch.Tensor,
                mask: torch.Tensor | None, beam: int = 5, max_len: int = 150,
                alpha: float = 1.0, nbest: int | None = None, repeat_ngram: int = 4,
                max_repeats: int = 0, tokens_per_height: float | None = None,
                rescore: str | None = None) -> list[list[Hypothesis]]:
    """Batched beam search; returns for each image its ``nbest`` hypotheses, best first.

    Each image keeps ``beam`` live hypotheses. A hypothesis that ends with <eos> among
    the ``beam`` best candidates of a step leaves the beam for the image's list of the
    ``beam`` best finished ones, so it never takes the slot of a live one. Finished ones
    are ranked by log P / length**alpha (length counts the <eos>; alpha=0: raw
    log-probability, which favours short outputs). An image is done, and its rows leave
    the batch, once its list is full and no live hypothesis scores better than its best
    at its present length. Every image may run to the same ``max_len`` as greedy
    decoding; with beam=1 the result equals greedy decoding.

    Optional, off by default (both cost accuracy on formulas, see docs/RESULTS.md):
    ``max_repeats`` > 0 forbids a token that would complete a ``repeat_ngram``-gram
    already generated ``max_repeats`` times (formulas repeat legitimately: ``1 + 1 + 1``,
    ``x _ { 1 } , x _ { 2 } , ...``); ``tokens_per_height`` ties the length limit to the
    image's aspect ratio (:func:`length_limits`).

    ``rescore="r2l"`` (bidirectional models): the ``beam`` finished hypotheses of each
    image are reranked by left-to-right plus right-to-left log-probability
    (:func:`combine_r2l`) before the ``nbest`` are kept.
    """
    if isinstance(models, Stepper):
        ens = models
        if rescore is not None and not isinstance(ens, Ensemble):
            raise ValueError(f"rescore {rescore} runs on PyTorch models only")
    else:
        ens = Ensemble(models if isinstance(models, Sequence) else [models])
    check_rescore(getattr(ens, "models", []), beam, rescore)
    b, k = images.shape[0], beam
    nbest = min(nbest or k, k)
    dev = images.device
    never = float("-inf")  # log-probability of a pruned or forbidden token
    limit = [min(max_len, ens.max_len)] * b
    if tokens_per_height is not None:
        limit = length_limits(mask, images, limit[0], tokens_per_height).tolist()
    fresh = ens.start(images, mask)  # one row per image; kept for rescoring
    caches = ens.select(fresh, torch.arange(b, device=dev).repeat_interleave(k))
    group = list(range(b))  # the image of each group of k rows still searching
    scores = torch.full((b, k), never, device=dev)
    scores[:, 0] = 0.0  # all beams start identical: keep one so top-k does not pick copies
    seqs = torch.zeros((b * k, 0), dtype=torch.long, device=dev)  # tokens after <sos>
    seq_lp = torch.zeros((b * k, 0), device=dev)  # each token's log-probability
    last = torch.full((b * k, 1), Vocab.sos_id, dtype=torch.long, device=dev)
    finished: list[list[Hypothesis]] = [[] for _ in range(b)]
    for t in range(max(limit)):
        logp = ens.step(last, caches)  # (G*K, V)
        n, v = len(group), logp.shape[-1]
        over = torch.tensor([t >= limit[i] - 1 for i in group], device=dev).repeat_interleave(k)
        if bool(over.any()):  # out of budget: only <eos>, at the model's own price
            eos = logp[:, Vocab.eos_id].clone()
            logp[over] = never
            logp[over, Vocab.eos_id] = eos[over]
        if max_repeats and repeat_ngram > 1:
            for row, (hyp, forced) in enumerate(zip(seqs.tolist(), over.tolist(), strict=True)):
                for tok in [] if forced else _blocked(hyp, repeat_ngram, max_repeats):
                    logp[row, tok] = never
        # 2k candidates: at most k of them end with <eos>, so k live ones always remain.
        top, idx = (scores.view(n * k, 1) + logp).view(n, k * v).topk(2 * k, dim=-1)
        top_l, idx_l = top.tolist(), idx.tolist()
        prev = scores.view(n * k).tolist()  # each row's log-probability before this step
        forced = over.tolist()
        rows, toks, new_scores, kept = [], [], [], []
        for g, img in enumerate(group):
            live: list[tuple[int, int, float]] = []
            for rank, (score, flat) in enumerate(zip(top_l[g], idx_l[g], strict=True)):
                if score == never or len(live) == k:
                    break
                row, tok = g * k + flat // v, flat % v
                if tok != Vocab.eos_id:
                    live.append((row, tok, score))
                elif rank < k:  # an <eos> ranked below k live candidates is pruned
                    ids = seqs[row].tolist()
                    probs = [*seq_lp[row].exp().tolist(), math.exp(score - prev[row])]
                    done = finished[img]
                    done.append(Hypothesis(ids, score / (len(ids) + 1) ** alpha, score, probs,
                                           cut_off=forced[row]))
                    done.sort(key=lambda h: h.score, reverse=True)
                    del done[k:]
            # Done once k have finished and the best of them beats the best live one at its
            # present length (with alpha=0 exact, as scores only fall; beam=1 is greedy).
            # Not the worst of them: a wide beam's k-th is poor, and live ones would run on.
            best = finished[img][0].score if len(finished[img]) == k else never
            if not live or live[0][2] / (t + 1) ** alpha <= best:
                continue  # its rows leave the batch
            live += [(live[0][0], live[0][1], never)] * (k - len(live))  # dead slots
            kept.append(img)
            for row, tok, score in live:
                rows.append(row)
                toks.append(tok)
                new_scores.append(score)
        if not kept:
            break
        src = torch.tensor(rows, device=dev)
        last = torch.tensor(toks, device=dev)[:, None]
        seqs = torch.cat([seqs[src], last], 1)
        step_lp = [score - prev[row] for row, score in zip(rows, new_scores, strict=True)]
        seq_lp = torch.cat([seq_lp[src], torch.tensor(step_lp, device=dev)[:, None]], 1)
        scores = torch.tensor(new_scores, device=dev).view(len(kept), k)
        caches = ens.select(caches, src)
        group = kept
    if rescore == "r2l":
        finished = rescore_r2l(ens, fresh, finished, alpha)
    return [hyps[:nbest] for hyps in finished]
